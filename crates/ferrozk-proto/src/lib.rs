//! The ZooKeeper client wire protocol (jute over TCP) as ZooKeeper 3.9 speaks it.
//!
//! `jute` holds the primitive encoding, `records` every record of `zookeeper.jute` that crosses
//! the client port, `request` the opcode-tagged requests and multi records, `codes` the numeric
//! constants, `frame` the length-prefixed framing. Nothing here does I/O.

pub mod auth;
pub mod codes;
pub mod frame;
pub mod jute;
pub mod records;
pub mod request;
pub mod stats_track;

pub use codes::{CreateMode, ErrorCode};
pub use jute::{Decode, DecodeError, Encode, Reader};
pub use records::*;
pub use request::{MultiOp, MultiRequest, MultiResponse, OpResult, Request};
pub use stats_track::StatsTrack;

/// The protocol version every current client sends and expects.
pub const PROTOCOL_VERSION: i32 = 0;

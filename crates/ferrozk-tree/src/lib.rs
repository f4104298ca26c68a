//! The ZooKeeper data tree: znodes with their Stat, ACLs and children, sessions and their
//! ephemerals, containers, TTL nodes, quotas, and the one deterministic `apply` that turns an
//! ordered log of [`Txn`]s into the same tree on every server. Watches are kept here as a pure
//! data structure; the server decides who hears of a change.

pub mod acl;
pub mod path;
pub mod quota;
pub mod snapshot;
pub mod store;
pub mod tree;
pub mod txn;
pub mod watch;
pub mod zookeeper;

pub use store::{Node, NodeRef};
pub use tree::{Applied, Change, DataTree, NodeKind, Outcome, Session, StatPersisted, TreeConfig};
pub use txn::{Txn, TxnOp};
pub use watch::{ChangeKind, WatcherId, Watches};

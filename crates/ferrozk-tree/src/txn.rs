//! Log entries: what the leader stamps onto a write before it is replicated and applied.
//!
//! A `Txn` carries the request as the client sent it plus everything `apply` needs to decide it
//! the same way on every server: the session, the time, and the identities the session had
//! authenticated when it sent the request. Validation happens in `apply`, so a write that fails
//! (NONODE, BADVERSION, ...) is still an entry and still consumes a zxid, as in ZooKeeper.

use ferrozk_proto::jute::{Decode, DecodeError, DecodeResult, Encode, Reader};
use ferrozk_proto::{Acl, ErrorCode, Id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub session: i64,
    /// Milliseconds since the epoch, stamped once by the server that proposed the entry.
    pub time: i64,
    /// The identities of the session when the request was made (ip, digest, super, ...).
    pub auth: Vec<Id>,
    pub op: TxnOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    CreateSession {
        timeout: i32,
        passwd: Vec<u8>,
    },
    CloseSession,
    /// create, create2, createContainer or createTTL (`opcode` says which; `ttl` is -1 unless
    /// the request carried one).
    Create {
        opcode: i32,
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<TxnOp>),
    /// Server-issued removal of an empty container or an expired TTL node.
    DeleteContainer {
        path: String,
    },
    /// A write the server refused before proposing (e.g. an undecodable multi); it still takes
    /// a zxid, as ZooKeeper's ErrorTxn does.
    Error(ErrorCode),
    /// The ensemble's membership changed (reconfig): `/zookeeper/config` becomes `servers`
    /// (one `server.N=...` line each) followed by `version=<this zxid in hex>`.
    SetConfig {
        servers: String,
    },
}

impl TxnOp {
    fn tag(&self) -> i32 {
        match self {
            TxnOp::CreateSession { .. } => 1,
            TxnOp::CloseSession => 2,
            TxnOp::Create { .. } => 3,
            TxnOp::Delete { .. } => 4,
            TxnOp::SetData { .. } => 5,
            TxnOp::SetAcl { .. } => 6,
            TxnOp::Check { .. } => 7,
            TxnOp::Multi(_) => 8,
            TxnOp::DeleteContainer { .. } => 9,
            TxnOp::Error(_) => 10,
            TxnOp::SetConfig { .. } => 11,
        }
    }

    /// Whether this is a write that creates or changes znodes (for stats).
    pub fn is_session_op(&self) -> bool {
        matches!(self, TxnOp::CreateSession { .. } | TxnOp::CloseSession)
    }
}

impl Encode for TxnOp {
    fn encode(&self, out: &mut Vec<u8>) {
        self.tag().encode(out);
        match self {
            TxnOp::CreateSession { timeout, passwd } => {
                timeout.encode(out);
                Some(passwd.clone()).encode(out);
            }
            TxnOp::CloseSession => {}
            TxnOp::Create { opcode, path, data, acl, flags, ttl } => {
                opcode.encode(out);
                path.encode(out);
                data.encode(out);
                acl.encode(out);
                flags.encode(out);
                ttl.encode(out);
            }
            TxnOp::Delete { path, version } | TxnOp::Check { path, version } => {
                path.encode(out);
                version.encode(out);
            }
            TxnOp::SetData { path, data, version } => {
                path.encode(out);
                data.encode(out);
                version.encode(out);
            }
            TxnOp::SetAcl { path, acl, version } => {
                path.encode(out);
                acl.encode(out);
                version.encode(out);
            }
            TxnOp::Multi(ops) => ops.encode(out),
            TxnOp::DeleteContainer { path } => path.encode(out),
            TxnOp::Error(code) => code.code().encode(out),
            TxnOp::SetConfig { servers } => servers.encode(out),
        }
    }
}

impl Decode for TxnOp {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let tag = r.read_i32()?;
        Ok(match tag {
            1 => TxnOp::CreateSession { timeout: r.read_i32()?, passwd: r.read_buffer()?.unwrap_or_default() },
            2 => TxnOp::CloseSession,
            3 => TxnOp::Create {
                opcode: r.read_i32()?,
                path: String::decode(r)?,
                data: Decode::decode(r)?,
                acl: Vec::decode(r)?,
                flags: r.read_i32()?,
                ttl: r.read_i64()?,
            },
            4 => TxnOp::Delete { path: String::decode(r)?, version: r.read_i32()? },
            5 => TxnOp::SetData { path: String::decode(r)?, data: Decode::decode(r)?, version: r.read_i32()? },
            6 => TxnOp::SetAcl { path: String::decode(r)?, acl: Vec::decode(r)?, version: r.read_i32()? },
            7 => TxnOp::Check { path: String::decode(r)?, version: r.read_i32()? },
            8 => TxnOp::Multi(Vec::decode(r)?),
            9 => TxnOp::DeleteContainer { path: String::decode(r)? },
            11 => TxnOp::SetConfig { servers: String::decode(r)? },
            10 => {
                let code = r.read_i32()?;
                TxnOp::Error(ErrorCode::from_code(code).ok_or(DecodeError::BadValue("error code", code as i64))?)
            }
            other => return Err(DecodeError::BadValue("txn op", other as i64)),
        })
    }
}

impl Encode for Txn {
    fn encode(&self, out: &mut Vec<u8>) {
        self.session.encode(out);
        self.time.encode(out);
        self.auth.encode(out);
        self.op.encode(out);
    }
}

impl Decode for Txn {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Txn { session: r.read_i64()?, time: r.read_i64()?, auth: Vec::decode(r)?, op: TxnOp::decode(r)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrozk_proto::jute::to_bytes;

    #[test]
    fn txns_round_trip() {
        let t = Txn {
            session: 7,
            time: 1234,
            auth: vec![crate::acl::id("ip", "127.0.0.1")],
            op: TxnOp::Multi(vec![
                TxnOp::Create { opcode: 1, path: "/a".into(), data: None, acl: crate::acl::open_acl(), flags: 2, ttl: -1 },
                TxnOp::SetData { path: "/a".into(), data: Some(b"x".to_vec()), version: -1 },
                TxnOp::Error(ErrorCode::NoNode),
            ]),
        };
        let b = to_bytes(&t);
        assert_eq!(Txn::decode(&mut Reader::new(&b)).unwrap(), t);
    }
}

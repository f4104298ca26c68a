//! Client requests by opcode, and the multi-op records.

use crate::codes::op;
use crate::jute::{Decode, DecodeError, DecodeResult, Encode, Reader};
use crate::records::*;

/// One sub-operation of a `multi` or `multiRead`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create, create2 or createContainer (the opcode says which).
    Create(i32, CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    GetChildren(GetChildrenRequest),
    GetData(GetDataRequest),
}

impl MultiOp {
    pub fn opcode(&self) -> i32 {
        match self {
            MultiOp::Create(code, _) => *code,
            MultiOp::CreateTtl(_) => op::CREATE_TTL,
            MultiOp::Delete(_) => op::DELETE,
            MultiOp::SetData(_) => op::SET_DATA,
            MultiOp::Check(_) => op::CHECK,
            MultiOp::GetChildren(_) => op::GET_CHILDREN,
            MultiOp::GetData(_) => op::GET_DATA,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(_, r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }
}

/// A create inside a multi. ZooKeeper 3.9 cannot build one with a null ACL (its CreateOptions
/// requires one), so the whole multi is undecodable then; a single create takes null as empty.
fn decode_multi_create(r: &mut Reader<'_>) -> DecodeResult<CreateRequest> {
    let path = String::decode(r)?;
    let data = Decode::decode(r)?;
    let n = r.read_i32()?;
    if n == -1 {
        return Err(DecodeError::BadValue("null ACL in a multi create", -1));
    }
    if n < 0 || n as usize > r.remaining() {
        return Err(DecodeError::BadLength(n));
    }
    let mut acl = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        acl.push(Acl::decode(r)?);
    }
    Ok(CreateRequest { path, data, acl, flags: r.read_i32()? })
}

/// The ops of a multi, as `MultiOperationRecord` frames them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    pub ops: Vec<MultiOp>,
}

impl Decode for MultiRequest {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let mut ops = Vec::new();
        loop {
            let h = MultiHeader::decode(r)?;
            if h.done {
                return Ok(MultiRequest { ops });
            }
            let o = match h.op {
                op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => MultiOp::Create(h.op, decode_multi_create(r)?),
                op::CREATE_TTL => MultiOp::CreateTtl(CreateTtlRequest::decode(r)?),
                op::DELETE => MultiOp::Delete(DeleteRequest::decode(r)?),
                op::SET_DATA => MultiOp::SetData(SetDataRequest::decode(r)?),
                op::CHECK => MultiOp::Check(CheckVersionRequest::decode(r)?),
                op::GET_CHILDREN => MultiOp::GetChildren(GetChildrenRequest::decode(r)?),
                op::GET_DATA => MultiOp::GetData(GetDataRequest::decode(r)?),
                other => return Err(DecodeError::BadValue("multi op", other as i64)),
            };
            ops.push(o);
        }
    }
}

impl Encode for MultiRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        for o in &self.ops {
            MultiHeader { op: o.opcode(), done: false, err: -1 }.encode(out);
            match o {
                MultiOp::Create(_, r) => r.encode(out),
                MultiOp::CreateTtl(r) => r.encode(out),
                MultiOp::Delete(r) => r.encode(out),
                MultiOp::SetData(r) => r.encode(out),
                MultiOp::Check(r) => r.encode(out),
                MultiOp::GetChildren(r) => r.encode(out),
                MultiOp::GetData(r) => r.encode(out),
            }
        }
        MultiHeader { op: -1, done: true, err: -1 }.encode(out);
    }
}

/// The result of one sub-operation, as `MultiResponse` encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create(String),
    Create2(String, Stat),
    Delete,
    Check,
    SetData(Stat),
    GetChildren(Vec<String>),
    GetData(Buffer, Stat),
    Error(i32),
}

impl OpResult {
    fn opcode(&self) -> i32 {
        match self {
            OpResult::Create(_) => op::CREATE,
            OpResult::Create2(..) => op::CREATE2,
            OpResult::Delete => op::DELETE,
            OpResult::Check => op::CHECK,
            OpResult::SetData(_) => op::SET_DATA,
            OpResult::GetChildren(_) => op::GET_CHILDREN,
            OpResult::GetData(..) => op::GET_DATA,
            OpResult::Error(_) => op::ERROR,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    pub results: Vec<OpResult>,
}

impl Encode for MultiResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        for res in &self.results {
            let err = if let OpResult::Error(e) = res { *e } else { 0 };
            MultiHeader { op: res.opcode(), done: false, err }.encode(out);
            match res {
                OpResult::Create(p) => p.encode(out),
                OpResult::Create2(p, s) => {
                    p.encode(out);
                    s.encode(out);
                }
                OpResult::Delete | OpResult::Check => {}
                OpResult::SetData(s) => s.encode(out),
                OpResult::GetChildren(c) => c.encode(out),
                OpResult::GetData(d, s) => {
                    d.encode(out);
                    s.encode(out);
                }
                OpResult::Error(e) => e.encode(out),
            }
        }
        MultiHeader { op: -1, done: true, err: -1 }.encode(out);
    }
}

impl Decode for MultiResponse {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let mut results = Vec::new();
        loop {
            let h = MultiHeader::decode(r)?;
            if h.done {
                return Ok(MultiResponse { results });
            }
            results.push(match h.op {
                op::CREATE => OpResult::Create(String::decode(r)?),
                op::CREATE2 => OpResult::Create2(String::decode(r)?, Stat::decode(r)?),
                op::DELETE => OpResult::Delete,
                op::CHECK => OpResult::Check,
                op::SET_DATA => OpResult::SetData(Stat::decode(r)?),
                op::GET_CHILDREN => OpResult::GetChildren(Vec::decode(r)?),
                op::GET_DATA => OpResult::GetData(Decode::decode(r)?, Stat::decode(r)?),
                op::ERROR => OpResult::Error(r.read_i32()?),
                other => return Err(DecodeError::BadValue("multi result", other as i64)),
            });
        }
    }
}

/// A decoded client request (everything after the `RequestHeader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create, create2 or createContainer.
    Create(i32, CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    Sync(SyncRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(MultiRequest),
    MultiRead(MultiRequest),
    Reconfig(ReconfigRequest),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    Auth(AuthPacket),
    SetWatches(SetWatches2),
    Sasl(GetSaslRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    AddWatch(AddWatchRequest),
    WhoAmI,
    CloseSession,
    /// An opcode this server does not know: answered with UNIMPLEMENTED.
    Unknown(i32),
}

impl Request {
    /// Decodes the body of a request with opcode `op`.
    pub fn decode(opcode: i32, r: &mut Reader<'_>) -> DecodeResult<Request> {
        Ok(match opcode {
            op::CREATE | op::CREATE2 | op::CREATE_CONTAINER => Request::Create(opcode, CreateRequest::decode(r)?),
            op::CREATE_TTL => Request::CreateTtl(CreateTtlRequest::decode(r)?),
            op::DELETE => Request::Delete(DeleteRequest::decode(r)?),
            op::EXISTS => Request::Exists(ExistsRequest::decode(r)?),
            op::GET_DATA => Request::GetData(GetDataRequest::decode(r)?),
            op::SET_DATA => Request::SetData(SetDataRequest::decode(r)?),
            op::GET_ACL => Request::GetAcl(GetAclRequest::decode(r)?),
            op::SET_ACL => Request::SetAcl(SetAclRequest::decode(r)?),
            op::GET_CHILDREN => Request::GetChildren(GetChildrenRequest::decode(r)?),
            op::GET_CHILDREN2 => Request::GetChildren2(GetChildren2Request::decode(r)?),
            op::SYNC => Request::Sync(SyncRequest::decode(r)?),
            op::PING => Request::Ping,
            op::CHECK => Request::Check(CheckVersionRequest::decode(r)?),
            op::MULTI => Request::Multi(MultiRequest::decode(r)?),
            op::MULTI_READ => Request::MultiRead(MultiRequest::decode(r)?),
            op::RECONFIG => Request::Reconfig(ReconfigRequest::decode(r)?),
            op::CHECK_WATCHES => Request::CheckWatches(CheckWatchesRequest::decode(r)?),
            op::REMOVE_WATCHES => Request::RemoveWatches(RemoveWatchesRequest::decode(r)?),
            op::AUTH => Request::Auth(AuthPacket::decode(r)?),
            op::SET_WATCHES => {
                let w = SetWatches::decode(r)?;
                Request::SetWatches(SetWatches2 {
                    relative_zxid: w.relative_zxid,
                    data_watches: w.data_watches,
                    exist_watches: w.exist_watches,
                    child_watches: w.child_watches,
                    ..Default::default()
                })
            }
            op::SET_WATCHES2 => Request::SetWatches(SetWatches2::decode(r)?),
            op::SASL => Request::Sasl(GetSaslRequest::decode(r)?),
            op::GET_EPHEMERALS => Request::GetEphemerals(GetEphemeralsRequest::decode(r)?),
            op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber(GetAllChildrenNumberRequest::decode(r)?),
            op::ADD_WATCH => Request::AddWatch(AddWatchRequest::decode(r)?),
            op::WHO_AM_I => Request::WhoAmI,
            op::CLOSE_SESSION => Request::CloseSession,
            other => Request::Unknown(other),
        })
    }

    /// Encodes the body (what follows the header) — the client side of `decode`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Request::Create(_, r) => r.encode(out),
            Request::CreateTtl(r) => r.encode(out),
            Request::Delete(r) => r.encode(out),
            Request::Exists(r) => r.encode(out),
            Request::GetData(r) => r.encode(out),
            Request::SetData(r) => r.encode(out),
            Request::GetAcl(r) => r.encode(out),
            Request::SetAcl(r) => r.encode(out),
            Request::GetChildren(r) => r.encode(out),
            Request::GetChildren2(r) => r.encode(out),
            Request::Sync(r) => r.encode(out),
            Request::Check(r) => r.encode(out),
            Request::Multi(r) | Request::MultiRead(r) => r.encode(out),
            Request::Reconfig(r) => r.encode(out),
            Request::CheckWatches(r) => r.encode(out),
            Request::RemoveWatches(r) => r.encode(out),
            Request::Auth(r) => r.encode(out),
            Request::SetWatches(r) => r.encode(out),
            Request::Sasl(r) => r.encode(out),
            Request::GetEphemerals(r) => r.encode(out),
            Request::GetAllChildrenNumber(r) => r.encode(out),
            Request::AddWatch(r) => r.encode(out),
            Request::Ping | Request::WhoAmI | Request::CloseSession | Request::Unknown(_) => {}
        }
    }

    /// The opcode this request travels under.
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create(code, _) => *code,
            Request::CreateTtl(_) => op::CREATE_TTL,
            Request::Delete(_) => op::DELETE,
            Request::Exists(_) => op::EXISTS,
            Request::GetData(_) => op::GET_DATA,
            Request::SetData(_) => op::SET_DATA,
            Request::GetAcl(_) => op::GET_ACL,
            Request::SetAcl(_) => op::SET_ACL,
            Request::GetChildren(_) => op::GET_CHILDREN,
            Request::GetChildren2(_) => op::GET_CHILDREN2,
            Request::Sync(_) => op::SYNC,
            Request::Ping => op::PING,
            Request::Check(_) => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::Reconfig(_) => op::RECONFIG,
            Request::CheckWatches(_) => op::CHECK_WATCHES,
            Request::RemoveWatches(_) => op::REMOVE_WATCHES,
            Request::Auth(_) => op::AUTH,
            Request::SetWatches(_) => op::SET_WATCHES2,
            Request::Sasl(_) => op::SASL,
            Request::GetEphemerals(_) => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber(_) => op::GET_ALL_CHILDREN_NUMBER,
            Request::AddWatch(_) => op::ADD_WATCH,
            Request::WhoAmI => op::WHO_AM_I,
            Request::CloseSession => op::CLOSE_SESSION,
            Request::Unknown(code) => *code,
        }
    }
}

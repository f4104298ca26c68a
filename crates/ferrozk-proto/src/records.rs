//! Every record of ZooKeeper 3.9's `zookeeper.jute` that crosses the client port, field for field.

use crate::jute::{Decode, DecodeResult, Encode, Reader};

macro_rules! record {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub struct $name { $(pub $field: $ty),* }

        impl Encode for $name {
            #[allow(unused_variables)]
            fn encode(&self, out: &mut Vec<u8>) { $(self.$field.encode(out);)* }
        }

        impl Decode for $name {
            #[allow(unused_variables)]
            fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
                Ok($name { $($field: Decode::decode(r)?),* })
            }
        }
    };
}

pub type Buffer = Option<Vec<u8>>;

record!(Id { scheme: String, id: String });
record!(Acl { perms: i32, id: Id });
record!(
    /// The znode metadata clients see.
    Stat {
        czxid: i64, mzxid: i64, ctime: i64, mtime: i64, version: i32, cversion: i32,
        aversion: i32, ephemeral_owner: i64, data_length: i32, num_children: i32, pzxid: i64,
    }
);
record!(ClientInfo { auth_scheme: String, user: String });

record!(RequestHeader { xid: i32, op: i32 });
record!(ReplyHeader { xid: i32, zxid: i64, err: i32 });
record!(MultiHeader { op: i32, done: bool, err: i32 });
record!(AuthPacket { auth_type: i32, scheme: String, auth: Buffer });
record!(WatcherEvent { event_type: i32, state: i32, path: String });

record!(SetWatches {
    relative_zxid: i64, data_watches: Vec<String>, exist_watches: Vec<String>,
    child_watches: Vec<String>,
});
record!(SetWatches2 {
    relative_zxid: i64, data_watches: Vec<String>, exist_watches: Vec<String>,
    child_watches: Vec<String>, persistent_watches: Vec<String>,
    persistent_recursive_watches: Vec<String>,
});

record!(CreateRequest { path: String, data: Buffer, acl: Vec<Acl>, flags: i32 });
record!(CreateTtlRequest { path: String, data: Buffer, acl: Vec<Acl>, flags: i32, ttl: i64 });
record!(DeleteRequest { path: String, version: i32 });
record!(ExistsRequest { path: String, watch: bool });
record!(GetDataRequest { path: String, watch: bool });
record!(SetDataRequest { path: String, data: Buffer, version: i32 });
record!(GetAclRequest { path: String });
record!(SetAclRequest { path: String, acl: Vec<Acl>, version: i32 });
record!(GetChildrenRequest { path: String, watch: bool });
record!(GetChildren2Request { path: String, watch: bool });
record!(CheckVersionRequest { path: String, version: i32 });
record!(SyncRequest { path: String });
record!(ReconfigRequest { joining_servers: String, leaving_servers: String, new_members: String, cur_config_id: i64 });
record!(CheckWatchesRequest { path: String, watch_type: i32 });
record!(RemoveWatchesRequest { path: String, watch_type: i32 });
record!(GetEphemeralsRequest { prefix_path: String });
record!(GetAllChildrenNumberRequest { path: String });
record!(AddWatchRequest { path: String, mode: i32 });
record!(GetSaslRequest { token: Buffer });

record!(CreateResponse { path: String });
record!(Create2Response { path: String, stat: Stat });
record!(ExistsResponse { stat: Stat });
record!(GetDataResponse { data: Buffer, stat: Stat });
record!(SetDataResponse { stat: Stat });
record!(GetAclResponse { acl: Vec<Acl>, stat: Stat });
record!(SetAclResponse { stat: Stat });
record!(GetChildrenResponse { children: Vec<String> });
record!(GetChildren2Response { children: Vec<String>, stat: Stat });
record!(SyncResponse { path: String });
record!(ErrorResponse { err: i32 });
record!(GetEphemeralsResponse { ephemerals: Vec<String> });
record!(GetAllChildrenNumberResponse { total_number: i32 });
record!(WhoAmIResponse { client_info: Vec<ClientInfo> });
record!(SetSaslResponse { token: Buffer });

/// The handshake a client opens with. `read_only` is absent from clients older than 3.4; the
/// server remembers whether it was there and answers in the same shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Buffer,
    pub read_only: Option<bool>,
}

impl Decode for ConnectRequest {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let timeout = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer()?;
        let read_only = if r.remaining() > 0 { Some(r.read_bool()?) } else { None };
        Ok(ConnectRequest { protocol_version, last_zxid_seen, timeout, session_id, passwd, read_only })
    }
}

impl Encode for ConnectRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        self.protocol_version.encode(out);
        self.last_zxid_seen.encode(out);
        self.timeout.encode(out);
        self.session_id.encode(out);
        self.passwd.encode(out);
        if let Some(ro) = self.read_only {
            ro.encode(out);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Buffer,
    pub read_only: Option<bool>,
}

impl Encode for ConnectResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        self.protocol_version.encode(out);
        self.timeout.encode(out);
        self.session_id.encode(out);
        self.passwd.encode(out);
        if let Some(ro) = self.read_only {
            ro.encode(out);
        }
    }
}

impl Decode for ConnectResponse {
    fn decode(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let protocol_version = r.read_i32()?;
        let timeout = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = r.read_buffer()?;
        let read_only = if r.remaining() > 0 { Some(r.read_bool()?) } else { None };
        Ok(ConnectResponse { protocol_version, timeout, session_id, passwd, read_only })
    }
}

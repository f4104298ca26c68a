//! An async ZooKeeper client for tokio, speaking the ZooKeeper 3.9 wire protocol to ferrozk
//! or Apache ZooKeeper.
//!
//! ```no_run
//! use ferrozk_client::{Client, CreateMode, open_acl};
//! # async fn demo() -> Result<(), ferrozk_client::ErrorCode> {
//! let zk = Client::connect("127.0.0.1:2181,127.0.0.1:2182/app").await?;
//! zk.create("/config", b"v1", open_acl(), CreateMode::Persistent).await?;
//! let ((data, stat), changed) = zk.get_data_w("/config").await?;
//! println!("{} at version {}", String::from_utf8_lossy(&data), stat.version);
//! zk.set_data("/config", b"v2", stat.version).await?;
//! println!("watch fired: {:?}", changed.await);
//! # Ok(()) }
//! ```
//!
//! Requests are pipelined on one connection and answered in order. When a connection breaks,
//! calls in flight fail with `ConnectionLoss` and the client reconnects to the next server of
//! the connect string, re-attaching its session and restoring its auth and watches (missed
//! events fire on re-attach). Errors are ZooKeeper's own codes ([`ErrorCode`]).

mod connection;
pub mod raw;
pub mod recipes;
mod retry;
mod watches;

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ferrozk_proto::codes::{add_watch_mode, op};
pub use ferrozk_proto::codes::{event, perms, state, watcher_type};
use ferrozk_proto::*;
pub use ferrozk_proto::{Acl, CreateMode, ErrorCode, Id, OpResult, Stat};
use tokio::sync::{mpsc, oneshot, watch};

use connection::{Connection, Handle, Settings};
pub use retry::{is_retryable, RetryPolicy, Retrying};
use watches::{WatchKind, WatchOp, Watcher};

/// The state of the session, as `Watcher.Event.KeeperState` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Connecting,
    Connected,
    ConnectedReadOnly,
    /// Between servers; the session may still be alive (kazoo's SUSPENDED).
    Disconnected,
    /// The server ended the session; this client is done (kazoo's LOST).
    Expired,
    AuthFailed,
    Closed,
}

/// kazoo's `KazooState` (Curator's `ConnectionState` has the same three at heart): what a
/// recipe's holder needs to know. While `Suspended`, a lock or leadership may already be lost
/// (the session may expire meanwhile); once `Lost`, it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connected,
    Suspended,
    Lost,
}

impl From<SessionState> for ConnectionState {
    fn from(s: SessionState) -> Self {
        match s {
            SessionState::Connected | SessionState::ConnectedReadOnly => ConnectionState::Connected,
            SessionState::Connecting | SessionState::Disconnected => ConnectionState::Suspended,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed => ConnectionState::Lost,
        }
    }
}

/// A watch notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// One of [`event`]'s values.
    pub event_type: i32,
    /// One of [`state`]'s values.
    pub state: i32,
    pub path: String,
}

/// A one-shot watch: resolves when it fires (or with a `NONE` event when the session ends).
pub struct OneshotWatch(oneshot::Receiver<WatchedEvent>);

impl Future for OneshotWatch {
    type Output = Result<WatchedEvent, ErrorCode>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map_err(|_| ErrorCode::ConnectionLoss))
    }
}

/// `world:anyone` with every permission.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// `world:anyone` with READ only.
pub fn read_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::READ, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// An ACL for the identities this session authenticated (`auth` scheme).
pub fn creator_all_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "auth".into(), id: String::new() } }]
}

/// The `digest` scheme's id for `user:password`.
pub fn digest_id(user: &str, password: &str) -> String {
    ferrozk_proto::auth::digest(&format!("{user}:{password}"))
}

/// One operation of a [`Client::multi`].
#[derive(Debug, Clone)]
pub enum Op {
    Create { path: String, data: Vec<u8>, acl: Vec<Acl>, mode: CreateMode },
    Delete { path: String, version: i32 },
    SetData { path: String, data: Vec<u8>, version: i32 },
    Check { path: String, version: i32 },
}

/// Connection settings; [`Client::connect`] uses the defaults.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_string: String,
    session_timeout: Duration,
    read_only: bool,
    auth: Vec<(String, Vec<u8>)>,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// How [`Client::retry`], [`Client::retrying`] and the recipes ride through connection
    /// loss ([`RetryPolicy::default`] unless set; [`RetryPolicy::none`] to see every loss).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    pub fn session_timeout(mut self, t: Duration) -> Self {
        self.session_timeout = t;
        self
    }

    /// Accept a read-only server when no quorum can be reached (`canBeReadOnly`).
    pub fn read_only(mut self, allowed: bool) -> Self {
        self.read_only = allowed;
        self
    }

    /// Authenticates right after connecting, before any request.
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth.push((scheme.to_string(), auth.to_vec()));
        self
    }

    pub async fn connect(self) -> Result<Client, ErrorCode> {
        let (hosts, chroot) = parse_connect_string(&self.connect_string)?;
        let (mut conn, handle, cmds) = Connection::new(Settings {
            hosts: hosts.iter().map(|a| (a.ip().to_string(), a.port())).collect(),
            chroot: chroot.clone(),
            timeout_ms: self.session_timeout.as_millis() as i32,
            read_only: self.read_only,
            default_watcher: None,
            close_on_drop: true,
            reconnect_pause: Duration::from_millis(300),
        });
        let stream = conn.first_connect().await?;
        tokio::spawn(conn.run(Some(stream), cmds));
        let client = Client { handle, chroot, retry: self.retry };
        for (scheme, auth) in self.auth {
            client.add_auth(&scheme, &auth).await?;
        }
        Ok(client)
    }
}

/// ReconfigRequest with ZooKeeper's nulls for the parts not given (an empty newMembers would
/// ask for an empty ensemble).
struct ReconfigBody<'a> {
    joining: Option<&'a str>,
    leaving: Option<&'a str>,
    new_members: Option<&'a str>,
    from_config: i64,
}

impl Encode for ReconfigBody<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        for part in [self.joining, self.leaving, self.new_members] {
            match part {
                Some(s) => s.to_string().encode(out),
                None => (-1i32).encode(out),
            }
        }
        self.from_config.encode(out);
    }
}

/// Splits `host:port,host:port/chroot`; hosts are shuffled, as ZooKeeper clients do.
pub fn parse_connect_string(s: &str) -> Result<(Vec<SocketAddr>, String), ErrorCode> {
    let (hosts, chroot) = match s.find('/') {
        Some(i) => (&s[..i], s[i..].trim_end_matches('/').to_string()),
        None => (s, String::new()),
    };
    let mut addrs = Vec::new();
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let h = if h.contains(':') { h.to_string() } else { format!("{h}:2181") };
        let resolved = h.to_socket_addrs().map_err(|_| ErrorCode::BadArguments)?;
        addrs.extend(resolved.take(1));
    }
    if addrs.is_empty() {
        return Err(ErrorCode::BadArguments);
    }
    // Fisher-Yates with the thread RNG.
    for i in (1..addrs.len()).rev() {
        let j = rand::random::<usize>() % (i + 1);
        addrs.swap(i, j);
    }
    Ok((addrs, chroot))
}

/// A ZooKeeper session. Cheap to clone; the session closes when the last clone is dropped or
/// [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    handle: Handle,
    chroot: String,
    retry: RetryPolicy,
}

fn decode<T: Decode>(body: &[u8]) -> Result<T, ErrorCode> {
    T::decode(&mut Reader::new(body)).map_err(|_| ErrorCode::MarshallingError)
}

impl Client {
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.to_string(),
            session_timeout: Duration::from_secs(30),
            read_only: false,
            auth: Vec::new(),
            retry: RetryPolicy::default(),
        }
    }

    /// Connects with a 30 s session timeout.
    pub async fn connect(connect_string: &str) -> Result<Client, ErrorCode> {
        Self::builder(connect_string).connect().await
    }

    pub fn session_id(&self) -> i64 {
        self.handle.info().0
    }

    /// The timeout the server granted, in milliseconds.
    pub fn session_timeout_ms(&self) -> i32 {
        self.handle.info().2
    }

    pub fn state(&self) -> SessionState {
        self.handle.state()
    }

    /// The state as kazoo's listeners name it: connected, suspended (between servers, the
    /// session may live) or lost (the session is over, and what it held with it).
    pub fn connection_state(&self) -> ConnectionState {
        self.state().into()
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Session state changes, newest first seen.
    pub fn state_events(&self) -> watch::Receiver<SessionState> {
        self.handle.state_events()
    }

    fn server_path(&self, path: &str) -> String {
        if self.chroot.is_empty() {
            path.to_string()
        } else if path == "/" {
            self.chroot.clone()
        } else {
            format!("{}{path}", self.chroot)
        }
    }

    fn client_path(&self, path: String) -> String {
        if self.chroot.is_empty() {
            return path;
        }
        match path.strip_prefix(&self.chroot) {
            Some("") => "/".to_string(),
            Some(rest) => rest.to_string(),
            None => path,
        }
    }

    async fn call(
        &self,
        opcode: i32,
        body: &(dyn Encode + Sync),
        watch: Option<WatchOp>,
    ) -> Result<(ReplyHeader, Vec<u8>), ErrorCode> {
        let mut buf = Vec::new();
        body.encode(&mut buf);
        self.handle.call(opcode, buf, watch).await
    }

    async fn ok_call(&self, opcode: i32, body: &(dyn Encode + Sync), watch: Option<WatchOp>) -> Result<Vec<u8>, ErrorCode> {
        let (h, body) = self.call(opcode, body, watch).await?;
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap_or(ErrorCode::SystemError));
        }
        Ok(body)
    }

    /// Creates a node; returns its actual path (with the sequence suffix for sequential modes).
    pub async fn create(&self, path: &str, data: &[u8], acl: Vec<Acl>, mode: CreateMode) -> Result<String, ErrorCode> {
        Ok(self.create2(path, data, acl, mode).await?.0)
    }

    /// Creates a node and returns its path and Stat (create2 / createContainer).
    pub async fn create2(&self, path: &str, data: &[u8], acl: Vec<Acl>, mode: CreateMode) -> Result<(String, Stat), ErrorCode> {
        let opcode = if mode.is_container() { op::CREATE_CONTAINER } else { op::CREATE2 };
        let req = CreateRequest { path: self.server_path(path), data: Some(data.to_vec()), acl, flags: mode.flag() };
        let r: Create2Response = decode(&self.ok_call(opcode, &req, None).await?)?;
        Ok((self.client_path(r.path), r.stat))
    }

    /// Creates a TTL node (the server needs `extendedTypesEnabled`).
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: Vec<Acl>,
        sequential: bool,
        ttl_ms: i64,
    ) -> Result<(String, Stat), ErrorCode> {
        let mode = if sequential { CreateMode::PersistentSequentialWithTtl } else { CreateMode::PersistentWithTtl };
        let req =
            CreateTtlRequest { path: self.server_path(path), data: Some(data.to_vec()), acl, flags: mode.flag(), ttl: ttl_ms };
        let r: Create2Response = decode(&self.ok_call(op::CREATE_TTL, &req, None).await?)?;
        Ok((self.client_path(r.path), r.stat))
    }

    /// Deletes a node; `version` -1 matches any.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), ErrorCode> {
        self.ok_call(op::DELETE, &DeleteRequest { path: self.server_path(path), version }, None).await?;
        Ok(())
    }

    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, ErrorCode> {
        self.exists_inner(path, None).await
    }

    /// exists, leaving a watch for the node's creation, change or deletion.
    pub async fn exists_w(&self, path: &str) -> Result<(Option<Stat>, OneshotWatch), ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let w = Some(WatchOp::Add(WatchKind::Exists, self.server_path(path), Watcher::Once(tx)));
        Ok((self.exists_inner(path, w).await?, OneshotWatch(rx)))
    }

    async fn exists_inner(&self, path: &str, w: Option<WatchOp>) -> Result<Option<Stat>, ErrorCode> {
        let watch = w.is_some();
        let (h, body) = self.call(op::EXISTS, &ExistsRequest { path: self.server_path(path), watch }, w).await?;
        match h.err {
            0 => Ok(Some(decode::<ExistsResponse>(&body)?.stat)),
            e if e == ErrorCode::NoNode.code() => Ok(None),
            e => Err(ErrorCode::from_code(e).unwrap_or(ErrorCode::SystemError)),
        }
    }

    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), ErrorCode> {
        let body = self.ok_call(op::GET_DATA, &GetDataRequest { path: self.server_path(path), watch: false }, None).await?;
        let r: GetDataResponse = decode(&body)?;
        Ok((r.data.unwrap_or_default(), r.stat))
    }

    /// getData, leaving a watch for the node's next change or deletion.
    pub async fn get_data_w(&self, path: &str) -> Result<((Vec<u8>, Stat), OneshotWatch), ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let sp = self.server_path(path);
        let w = Some(WatchOp::Add(WatchKind::Data, sp.clone(), Watcher::Once(tx)));
        let body = self.ok_call(op::GET_DATA, &GetDataRequest { path: sp, watch: true }, w).await?;
        let r: GetDataResponse = decode(&body)?;
        Ok(((r.data.unwrap_or_default(), r.stat), OneshotWatch(rx)))
    }

    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, ErrorCode> {
        let req = SetDataRequest { path: self.server_path(path), data: Some(data.to_vec()), version };
        Ok(decode::<SetDataResponse>(&self.ok_call(op::SET_DATA, &req, None).await?)?.stat)
    }

    /// Children (sorted) and the node's Stat.
    pub async fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat), ErrorCode> {
        let body =
            self.ok_call(op::GET_CHILDREN2, &GetChildren2Request { path: self.server_path(path), watch: false }, None).await?;
        let r: GetChildren2Response = decode(&body)?;
        let mut c = r.children;
        c.sort();
        Ok((c, r.stat))
    }

    /// getChildren, leaving a watch for the next change to the children or deletion.
    pub async fn get_children_w(&self, path: &str) -> Result<((Vec<String>, Stat), OneshotWatch), ErrorCode> {
        let (tx, rx) = oneshot::channel();
        let sp = self.server_path(path);
        let w = Some(WatchOp::Add(WatchKind::Child, sp.clone(), Watcher::Once(tx)));
        let body = self.ok_call(op::GET_CHILDREN2, &GetChildren2Request { path: sp, watch: true }, w).await?;
        let r: GetChildren2Response = decode(&body)?;
        let mut c = r.children;
        c.sort();
        Ok(((c, r.stat), OneshotWatch(rx)))
    }

    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ErrorCode> {
        let r: GetAclResponse = decode(&self.ok_call(op::GET_ACL, &GetAclRequest { path: self.server_path(path) }, None).await?)?;
        Ok((r.acl, r.stat))
    }

    pub async fn set_acl(&self, path: &str, acl: Vec<Acl>, version: i32) -> Result<Stat, ErrorCode> {
        let req = SetAclRequest { path: self.server_path(path), acl, version };
        Ok(decode::<SetAclResponse>(&self.ok_call(op::SET_ACL, &req, None).await?)?.stat)
    }

    /// Makes the following reads of this session reflect every write acknowledged before it.
    pub async fn sync(&self, path: &str) -> Result<(), ErrorCode> {
        self.ok_call(op::SYNC, &SyncRequest { path: self.server_path(path) }, None).await?;
        Ok(())
    }

    /// All-or-nothing: on failure the error of the first failing op is returned with every
    /// op's result (as ZooKeeper encodes them).
    pub async fn multi(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, (ErrorCode, Vec<OpResult>)> {
        let ops = ops
            .into_iter()
            .map(|o| match o {
                Op::Create { path, data, acl, mode } => {
                    let opcode = if mode.is_container() { op::CREATE_CONTAINER } else { op::CREATE2 };
                    MultiOp::Create(
                        opcode,
                        CreateRequest { path: self.server_path(&path), data: Some(data), acl, flags: mode.flag() },
                    )
                }
                Op::Delete { path, version } => MultiOp::Delete(DeleteRequest { path: self.server_path(&path), version }),
                Op::SetData { path, data, version } => {
                    MultiOp::SetData(SetDataRequest { path: self.server_path(&path), data: Some(data), version })
                }
                Op::Check { path, version } => MultiOp::Check(CheckVersionRequest { path: self.server_path(&path), version }),
            })
            .collect();
        let body = self.ok_call(op::MULTI, &MultiRequest { ops }, None).await.map_err(|e| (e, Vec::new()))?;
        let r: MultiResponse = decode(&body).map_err(|e| (e, Vec::new()))?;
        let results: Vec<OpResult> = r
            .results
            .into_iter()
            .map(|res| match res {
                OpResult::Create(p) => OpResult::Create(self.client_path(p)),
                OpResult::Create2(p, s) => OpResult::Create2(self.client_path(p), s),
                other => other,
            })
            .collect();
        let failed = results.iter().find_map(|r| match r {
            OpResult::Error(e) if *e != 0 => Some(*e),
            _ => None,
        });
        match failed {
            Some(e) => Err((ErrorCode::from_code(e).unwrap_or(ErrorCode::SystemError), results)),
            None => Ok(results),
        }
    }

    /// Changes an ensemble's membership (the `reconfig` operation, which needs
    /// `reconfigEnabled` and in practice the super user): `joining` as
    /// `server.N=host:port:port[:role][;client]` entries separated by commas, `leaving` as ids
    /// separated by commas, or `new_members` for the whole set; `from_config` the expected
    /// config version (-1: any). Returns the new `/zookeeper/config` and its Stat.
    ///
    /// ```no_run
    /// # async fn demo(zk: ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
    /// zk.add_auth("digest", b"super:secret").await?;
    /// let (config, _) = zk.reconfig(Some("server.4=10.0.0.4:2888:3888:observer;2181"), None, None, -1).await?;
    /// println!("{}", String::from_utf8_lossy(&config));
    /// # Ok(()) }
    /// ```
    pub async fn reconfig(
        &self,
        joining: Option<&str>,
        leaving: Option<&str>,
        new_members: Option<&str>,
        from_config: i64,
    ) -> Result<(Vec<u8>, Stat), ErrorCode> {
        let req = ReconfigBody { joining, leaving, new_members, from_config };
        let r: GetDataResponse = decode(&self.ok_call(op::RECONFIG, &req, None).await?)?;
        Ok((r.data.unwrap_or_default(), r.stat))
    }

    /// Adds an identity to the session (e.g. `digest`, `user:password`).
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), ErrorCode> {
        self.handle.add_auth(scheme, Some(auth.to_vec())).await
    }

    /// A persistent watch on `path` (and, if `recursive`, everything below it); events arrive
    /// on the returned channel until the session ends.
    pub async fn add_watch(&self, path: &str, recursive: bool) -> Result<mpsc::UnboundedReceiver<WatchedEvent>, ErrorCode> {
        let (tx, rx) = mpsc::unbounded_channel();
        let sp = self.server_path(path);
        let (kind, mode) = if recursive {
            (WatchKind::PersistentRecursive, add_watch_mode::PERSISTENT_RECURSIVE)
        } else {
            (WatchKind::Persistent, add_watch_mode::PERSISTENT)
        };
        self.ok_call(op::ADD_WATCH, &AddWatchRequest { path: sp.clone(), mode }, Some(WatchOp::Add(kind, sp, Watcher::Many(tx))))
            .await?;
        Ok(rx)
    }

    /// removeWatches of one [`watcher_type`] on `path` for this session: the watches go on the
    /// server and here, and their watchers hear a "watch removed" event (`NoWatcher` if this
    /// client has none of that type there).
    pub async fn remove_watches(&self, path: &str, watcher_type: i32) -> Result<(), ErrorCode> {
        let sp = self.server_path(path);
        let remove = WatchOp::Remove { path: sp.clone(), watcher_type, local: false };
        self.ok_call(op::REMOVE_WATCHES, &RemoveWatchesRequest { path: sp, watch_type: watcher_type }, Some(remove)).await?;
        Ok(())
    }

    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>, ErrorCode> {
        let r: GetEphemeralsResponse = decode(
            &self.ok_call(op::GET_EPHEMERALS, &GetEphemeralsRequest { prefix_path: self.server_path(prefix) }, None).await?,
        )?;
        Ok(r.ephemerals.into_iter().map(|p| self.client_path(p)).collect())
    }

    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, ErrorCode> {
        let r: GetAllChildrenNumberResponse = decode(
            &self
                .ok_call(op::GET_ALL_CHILDREN_NUMBER, &GetAllChildrenNumberRequest { path: self.server_path(path) }, None)
                .await?,
        )?;
        Ok(r.total_number)
    }

    /// The identities the server knows this session by: (scheme, user).
    pub async fn who_am_i(&self) -> Result<Vec<(String, String)>, ErrorCode> {
        struct Empty;
        impl Encode for Empty {
            fn encode(&self, _: &mut Vec<u8>) {}
        }
        let r: WhoAmIResponse = decode(&self.ok_call(op::WHO_AM_I, &Empty, None).await?)?;
        Ok(r.client_info.into_iter().map(|c| (c.auth_scheme, c.user)).collect())
    }

    /// Closes the session: its ephemerals go, its watches end.
    pub async fn close(self) {
        self.handle.close(Duration::from_secs(5)).await;
    }

    /// Waits until the session state is `want` (or the session ends).
    pub async fn wait_for(&self, want: SessionState) -> SessionState {
        let mut rx = self.handle.state_events();
        loop {
            let s = *rx.borrow_and_update();
            if s == want || matches!(s, SessionState::Expired | SessionState::Closed | SessionState::AuthFailed) {
                return s;
            }
            if rx.changed().await.is_err() {
                return *rx.borrow();
            }
        }
    }
}

//! A ZooKeeper session with the Java client's semantics, which zkCli's behaviour is made of:
//! `new ZooKeeper(...)` returns at once and connects in the background (requests made meanwhile
//! wait for the connection), every watch belongs to one default watcher that hears an event once
//! however many of its watches match it, state changes are events too, `removeWatches` removes the
//! client's watches and tells the watcher, and `addAuthInfo` that the server rejects ends the
//! session's connection (AUTH_FAILED).
//!
//! One task owns the socket and the watch table; the [`Zk`] handle sends it requests. Events are
//! handed to the [`EventSink`] by that task, in the order the server sent them and before the
//! reply to any later request is delivered.
//!
//! Over 800 lines because it is a second client connection (handshake, frames, xids, pings,
//! reconnect and setWatches) beside ferrozk-client's; it is to become a delivery mode of that
//! client's connection core, and then go.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrozk_proto::codes::{event, op, state as kstate, xid};
use ferrozk_proto::frame::{check_frame, write_frame, FrameCheck};
use ferrozk_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// `ZooKeeper.States`, as zkCli's prompt shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum States {
    Connecting,
    Connected,
    ConnectedReadOnly,
    Closed,
    AuthFailed,
    NotConnected,
}

impl States {
    pub fn is_alive(self) -> bool {
        !matches!(self, States::Closed | States::AuthFailed)
    }

    pub fn name(self) -> &'static str {
        match self {
            States::Connecting => "CONNECTING",
            States::Connected => "CONNECTED",
            States::ConnectedReadOnly => "CONNECTEDREADONLY",
            States::Closed => "CLOSED",
            States::AuthFailed => "AUTH_FAILED",
            States::NotConnected => "NOT_CONNECTED",
        }
    }
}

/// A watch notification or state change, as the Java client's `WatchedEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: i32,
    pub state: i32,
    pub path: Option<String>,
}

pub fn keeper_state_name(s: i32) -> &'static str {
    match s {
        -1 => "Unknown",
        0 => "Disconnected",
        1 => "NoSyncConnected",
        3 => "SyncConnected",
        4 => "AuthFailed",
        5 => "ConnectedReadOnly",
        6 => "SaslAuthenticated",
        -112 => "Expired",
        7 => "Closed",
        _ => "Unknown",
    }
}

pub fn event_type_name(t: i32) -> &'static str {
    match t {
        -1 => "None",
        1 => "NodeCreated",
        2 => "NodeDeleted",
        3 => "NodeDataChanged",
        4 => "NodeChildrenChanged",
        5 => "DataWatchRemoved",
        6 => "ChildWatchRemoved",
        7 => "PersistentWatchRemoved",
        _ => "None",
    }
}

impl std::fmt::Display for WatchedEvent {
    /// ZooKeeper 3.8's `WatchedEvent.toString()` (3.9 appends ` zxid: N`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WatchedEvent state:{} type:{} path:{}",
            keeper_state_name(self.state),
            event_type_name(self.event_type),
            self.path.as_deref().unwrap_or("null")
        )
    }
}

pub type EventSink = Arc<dyn Fn(&WatchedEvent) + Send + Sync>;

/// A `KeeperException`: the code and the path it was thrown for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeeperError {
    pub code: i32,
    pub path: Option<String>,
}

pub fn code_message(code: i32) -> String {
    match ErrorCode::from_code(code) {
        Some(c) => c.message().to_string(),
        None => format!("Unknown error {code}"),
    }
}

impl KeeperError {
    pub fn new(code: i32, path: &str) -> KeeperError {
        KeeperError { code, path: Some(path.to_string()) }
    }

    pub fn bare(code: i32) -> KeeperError {
        KeeperError { code, path: None }
    }

    pub fn is(&self, c: ErrorCode) -> bool {
        self.code == c.code()
    }
}

impl std::fmt::Display for KeeperError {
    /// `KeeperException.getMessage()`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => write!(f, "KeeperErrorCode = {} for {p}", code_message(self.code)),
            _ => write!(f, "KeeperErrorCode = {}", code_message(self.code)),
        }
    }
}

/// Watcher types of `removeWatches` (`Watcher.WatcherType`).
pub mod wtype {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// What a successful (or, for `Exists`, NONODE) reply registers, on a client path.
#[derive(Debug, Clone)]
pub enum Reg {
    Data(String),
    Exists(String),
    Child(String),
    Persistent(String),
    PersistentRecursive(String),
    /// removeWatches: take the client's watches off `path` whatever the server said if `local`.
    Remove {
        path: String,
        wtype: i32,
        local: bool,
    },
}

/// The default watcher's watches (ZKWatchManager with one watcher): client paths.
#[derive(Default)]
struct Watches {
    data: HashSet<String>,
    exist: HashSet<String>,
    child: HashSet<String>,
    persistent: HashSet<String>,
    recursive: HashSet<String>,
}

impl Watches {
    fn register(&mut self, reg: &Reg, err: i32) {
        let ok = err == 0;
        match reg {
            Reg::Data(p) if ok => {
                self.data.insert(p.clone());
            }
            Reg::Exists(p) if ok => {
                self.data.insert(p.clone());
            }
            Reg::Exists(p) if err == ErrorCode::NoNode.code() => {
                self.exist.insert(p.clone());
            }
            Reg::Child(p) if ok => {
                self.child.insert(p.clone());
            }
            Reg::Persistent(p) if ok => {
                self.persistent.insert(p.clone());
            }
            Reg::PersistentRecursive(p) if ok => {
                self.recursive.insert(p.clone());
            }
            _ => {}
        }
    }

    /// `materialize`: whether the default watcher hears this event (it hears it once).
    fn materialize(&mut self, event_type: i32, path: &str) -> bool {
        let mut hit = false;
        match event_type {
            event::NODE_DATA_CHANGED | event::NODE_CREATED => {
                hit |= self.data.remove(path);
                hit |= self.exist.remove(path);
            }
            event::NODE_CHILDREN_CHANGED => {
                hit |= self.child.remove(path);
            }
            event::NODE_DELETED => {
                hit |= self.data.remove(path);
                hit |= self.exist.remove(path);
                hit |= self.child.remove(path);
            }
            _ => return false,
        }
        hit |= self.persistent.contains(path);
        // Every ancestor (and the path itself) may hold a recursive watch.
        let mut p = path;
        loop {
            if self.recursive.contains(p) {
                hit = true;
            }
            if p == "/" || p.is_empty() {
                break;
            }
            p = match p.rfind('/') {
                Some(0) => "/",
                Some(i) => &p[..i],
                None => break,
            };
        }
        hit
    }

    /// `removeWatcher` for the default watcher: which "watch removed" events to deliver, or the
    /// error code the call fails with.
    fn remove(&mut self, path: &str, wtype: i32, local: bool, rc: i32) -> Result<Vec<i32>, i32> {
        let contains = match wtype {
            wtype::CHILDREN => self.child.contains(path),
            wtype::DATA => self.data.contains(path) || self.exist.contains(path),
            wtype::PERSISTENT => self.persistent.contains(path),
            wtype::PERSISTENT_RECURSIVE => self.recursive.contains(path),
            _ => {
                self.child.contains(path)
                    || self.data.contains(path)
                    || self.exist.contains(path)
                    || self.persistent.contains(path)
                    || self.recursive.contains(path)
            }
        };
        if !contains {
            return Err(ErrorCode::NoWatcher.code());
        }
        if !local && rc != 0 {
            return Err(rc);
        }
        let (mut child, mut data, mut pers) = (false, false, false);
        match wtype {
            wtype::CHILDREN => child = self.child.remove(path),
            wtype::DATA => {
                data = self.data.remove(path);
                data |= self.exist.remove(path);
            }
            wtype::PERSISTENT => pers = self.persistent.remove(path),
            wtype::PERSISTENT_RECURSIVE => pers = self.recursive.remove(path),
            _ => {
                child = self.child.remove(path);
                data = self.data.remove(path);
                data |= self.exist.remove(path);
                pers = self.persistent.remove(path);
                pers |= self.recursive.remove(path);
            }
        }
        if !(child || data || pers) {
            return Err(ErrorCode::NoWatcher.code());
        }
        let mut events = Vec::new();
        if child {
            events.push(event::CHILD_WATCH_REMOVED);
        }
        if data {
            events.push(event::DATA_WATCH_REMOVED);
        }
        if pers {
            events.push(event::PERSISTENT_WATCH_REMOVED);
        }
        Ok(events)
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }
}

struct Request {
    opcode: i32,
    body: Vec<u8>,
    reg: Option<Reg>,
    reply: oneshot::Sender<(i32, Vec<u8>)>,
}

enum Cmd {
    Request(Request),
    Auth { scheme: String, auth: Option<Vec<u8>>, reply: oneshot::Sender<i32> },
    Close(oneshot::Sender<()>),
}

struct Pending {
    xid: i32,
    reg: Option<Reg>,
    reply: oneshot::Sender<(i32, Vec<u8>)>,
}

/// Where a server is: `host:port` as written, resolved when it is tried.
#[derive(Debug, Clone)]
struct HostPort {
    host: String,
    port: u16,
}

pub type HostAndPort = (String, u16);

/// `ConnectStringParser`: hosts (port 2181 when none) and an optional chroot.
pub fn parse_connect_string(s: &str) -> Result<(Vec<HostAndPort>, Option<String>), String> {
    let (hosts, chroot) = match s.find('/') {
        Some(i) => {
            let c = &s[i..];
            let chroot = if c.len() == 1 { None } else { Some(c.to_string()) };
            if let Some(c) = &chroot {
                crate::format::validate_path(c)?;
            }
            (&s[..i], chroot)
        }
        None => (s, None),
    };
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        // [v6]:port, host:port or host
        let (host, port) = if let Some(rest) = h.strip_prefix('[') {
            let end = rest.find(']').ok_or_else(|| format!("{h} starts with '[' but has no matching ']:'"))?;
            let host = &rest[..end];
            let port = match rest[end + 1..].strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| format!("For input string: \"{p}\""))?,
                None => 2181,
            };
            (host.to_string(), port)
        } else {
            match h.rfind(':') {
                Some(i) => {
                    let p = &h[i + 1..];
                    (h[..i].to_string(), p.parse::<u16>().map_err(|_| format!("For input string: \"{p}\""))?)
                }
                None => (h.to_string(), 2181),
            }
        };
        out.push((host, port));
    }
    if out.is_empty() {
        return Err("A HostProvider may not be empty!".into());
    }
    Ok((out, chroot))
}

/// A handle on a session; cheap to clone.
#[derive(Clone)]
pub struct Zk {
    tx: mpsc::UnboundedSender<Cmd>,
    state: Arc<Mutex<States>>,
    chroot: Option<String>,
    session: Arc<Mutex<(i64, i32)>>,
}

impl Zk {
    /// Starts connecting to `connect_string` and returns at once, as `new ZooKeeper()` does.
    pub fn new(connect_string: &str, timeout_ms: i32, read_only: bool, sink: EventSink) -> Result<Zk, String> {
        let (hosts, chroot) = parse_connect_string(connect_string)?;
        let mut hosts: Vec<HostPort> = hosts.into_iter().map(|(host, port)| HostPort { host, port }).collect();
        for i in (1..hosts.len()).rev() {
            let j = rand::random::<usize>() % (i + 1);
            hosts.swap(i, j);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(States::Connecting));
        let session = Arc::new(Mutex::new((0i64, 0i32)));
        let conn = Conn {
            hosts,
            next_host: 0,
            chroot: chroot.clone(),
            timeout_ms,
            read_only,
            session_id: 0,
            passwd: vec![0; 16],
            negotiated: timeout_ms,
            last_zxid: 0,
            auth: Vec::new(),
            watches: Watches::default(),
            state: state.clone(),
            session: session.clone(),
            sink,
            last_event_state: kstate::DISCONNECTED,
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            auth_pending: VecDeque::new(),
            xid: 1,
            first: true,
        };
        tokio::spawn(conn.run(rx));
        Ok(Zk { tx, state, chroot, session })
    }

    pub fn state(&self) -> States {
        *self.state.lock().unwrap()
    }

    pub fn session_id(&self) -> i64 {
        self.session.lock().unwrap().0
    }

    /// The client path as the server knows it.
    pub fn server_path(&self, path: &str) -> String {
        match &self.chroot {
            None => path.to_string(),
            Some(c) if path == "/" => c.clone(),
            Some(c) => format!("{c}{path}"),
        }
    }

    /// A path the server returned, as the client sees it.
    pub fn client_path(&self, path: &str) -> String {
        match &self.chroot {
            None => path.to_string(),
            Some(c) => path.get(c.len()..).unwrap_or("").to_string(),
        }
    }

    /// Sends one request; returns the reply's error code and body.
    pub async fn call(&self, opcode: i32, body: Vec<u8>, reg: Option<Reg>) -> (i32, Vec<u8>) {
        let (reply, rx) = oneshot::channel();
        let failed = if self.state().is_alive() { ErrorCode::ConnectionLoss } else { ErrorCode::SessionExpired };
        if self.tx.send(Cmd::Request(Request { opcode, body, reg, reply })).is_err() {
            return (failed.code(), Vec::new());
        }
        rx.await.unwrap_or((failed.code(), Vec::new()))
    }

    /// `addAuthInfo`, waiting for the server's answer (AUTH_FAILED ends the connection).
    pub async fn add_auth(&self, scheme: &str, auth: Option<Vec<u8>>) -> i32 {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Auth { scheme: scheme.to_string(), auth, reply }).is_err() {
            return ErrorCode::SessionExpired.code();
        }
        rx.await.unwrap_or(ErrorCode::ConnectionLoss.code())
    }

    /// `close()`: ends the session (if it is alive) and waits for the server's answer.
    pub async fn close(&self) {
        if !self.state().is_alive() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Waits until the session is connected or `limit` passes; whether it connected.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.state() {
                States::Connected | States::ConnectedReadOnly => return true,
                s if !s.is_alive() => return false,
                _ => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Conn {
    hosts: Vec<HostPort>,
    next_host: usize,
    chroot: Option<String>,
    timeout_ms: i32,
    read_only: bool,
    session_id: i64,
    passwd: Vec<u8>,
    negotiated: i32,
    last_zxid: i64,
    auth: Vec<(String, Option<Vec<u8>>)>,
    watches: Watches,
    state: Arc<Mutex<States>>,
    session: Arc<Mutex<(i64, i32)>>,
    sink: EventSink,
    /// The state of the last state event delivered: the same state is not told twice.
    last_event_state: i32,
    /// Requests not sent yet (made while connecting).
    queue: VecDeque<Request>,
    pending: VecDeque<Pending>,
    /// Auth packets sent, oldest first; `None` for the ones re-sent on reconnect.
    auth_pending: VecDeque<Option<oneshot::Sender<i32>>>,
    xid: i32,
    first: bool,
}

enum End {
    /// The connection broke: reconnect.
    Lost,
    /// The session is over (closed, expired, auth failed, or every handle dropped).
    Done,
}

impl Conn {
    fn set_state(&self, s: States) {
        *self.state.lock().unwrap() = s;
    }

    fn state(&self) -> States {
        *self.state.lock().unwrap()
    }

    fn state_event(&mut self, st: i32) {
        if self.last_event_state == st {
            return;
        }
        self.last_event_state = st;
        (self.sink)(&WatchedEvent { event_type: event::NONE, state: st, path: None });
    }

    fn next_xid(&mut self) -> i32 {
        if self.xid == i32::MAX {
            self.xid = 1;
        }
        let x = self.xid;
        self.xid += 1;
        x
    }

    fn fail_all(&mut self, code: i32) {
        let pending: Vec<Pending> = self.pending.drain(..).collect();
        for p in pending {
            self.finish(p.reg, code, Vec::new(), p.reply);
        }
        let queued: Vec<Request> = self.queue.drain(..).collect();
        for r in queued {
            self.finish(r.reg, code, Vec::new(), r.reply);
        }
        for a in self.auth_pending.drain(..).flatten() {
            let _ = a.send(code);
        }
    }

    /// `finishPacket`: registers or removes watches, then hands the reply over.
    fn finish(&mut self, reg: Option<Reg>, mut err: i32, body: Vec<u8>, reply: oneshot::Sender<(i32, Vec<u8>)>) {
        match &reg {
            Some(Reg::Remove { path, wtype, local }) => match self.watches.remove(path, *wtype, *local, err) {
                Ok(events) => {
                    let st = if err == ErrorCode::SessionExpired.code() || err == ErrorCode::ConnectionLoss.code() {
                        kstate::DISCONNECTED
                    } else {
                        kstate::SYNC_CONNECTED
                    };
                    for t in events {
                        (self.sink)(&WatchedEvent { event_type: t, state: st, path: Some(path.clone()) });
                    }
                    err = 0;
                }
                Err(e) => err = e,
            },
            Some(r) => self.watches.register(r, err),
            None => {}
        }
        let _ = reply.send((err, body));
    }

    fn connect_timeout(&self) -> Duration {
        let t = if self.first { self.timeout_ms } else { self.negotiated };
        Duration::from_millis((t.max(100) as u64) / self.hosts.len().max(1) as u64)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut last_heard = Instant::now();
        let mut attempt = 0u32;
        loop {
            // Connecting: keep taking commands while trying the servers in turn.
            if attempt > 0 {
                let pause = Duration::from_millis(rand::random::<u64>() % 1000);
                let until = Instant::now() + pause;
                loop {
                    tokio::select! {
                        c = rx.recv() => match c {
                            None => return,
                            Some(c) => if self.idle_cmd(c) { return },
                        },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
            }
            attempt += 1;
            let host = self.hosts[self.next_host % self.hosts.len()].clone();
            self.next_host += 1;
            let deadline = last_heard + self.connect_timeout();
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: self.last_zxid,
                timeout: self.timeout_ms,
                session_id: self.session_id,
                passwd: Some(self.passwd.clone()),
                read_only: Some(self.read_only),
            };
            let connect = try_connect(host, req, self.connect_timeout());
            tokio::pin!(connect);
            let result = loop {
                tokio::select! {
                    r = &mut connect => break Some(r),
                    c = rx.recv() => match c {
                        None => return,
                        Some(c) => if self.idle_cmd(c) { return },
                    },
                    _ = tokio::time::sleep_until(deadline) => break None,
                }
            };
            let (stream, resp) = match result {
                None => {
                    // Not connected for a connect timeout: what waits fails with CONNECTIONLOSS.
                    self.fail_all(ErrorCode::ConnectionLoss.code());
                    last_heard = Instant::now();
                    continue;
                }
                Some(Err(())) => {
                    // As the Java client: a failed attempt fails what waits for the connection.
                    self.fail_all(ErrorCode::ConnectionLoss.code());
                    last_heard = Instant::now();
                    continue;
                }
                Some(Ok(x)) => x,
            };
            if resp.timeout <= 0 {
                self.set_state(States::Closed);
                self.state_event(kstate::EXPIRED);
                self.fail_all(ErrorCode::SessionExpired.code());
                self.drain_after_end(rx).await;
                return;
            }
            self.first = false;
            attempt = 0;
            self.session_id = resp.session_id;
            self.passwd = resp.passwd.clone().unwrap_or_default();
            self.negotiated = resp.timeout;
            *self.session.lock().unwrap() = (self.session_id, self.negotiated);
            let ro = resp.read_only == Some(true);
            self.set_state(if ro { States::ConnectedReadOnly } else { States::Connected });
            self.state_event(if ro { kstate::CONNECTED_READ_ONLY } else { kstate::SYNC_CONNECTED });
            match self.serve(stream, &mut rx).await {
                End::Done => {
                    self.drain_after_end(rx).await;
                    return;
                }
                End::Lost => {
                    self.fail_all(ErrorCode::ConnectionLoss.code());
                    if self.state().is_alive() {
                        self.set_state(States::Connecting);
                        self.state_event(kstate::DISCONNECTED);
                    }
                    last_heard = Instant::now();
                }
            }
        }
    }

    /// A command while not connected; true when the session is to end.
    fn idle_cmd(&mut self, c: Cmd) -> bool {
        match c {
            Cmd::Request(r) => {
                self.queue.push_back(r);
                false
            }
            Cmd::Auth { scheme, auth, reply } => {
                // Sent with the others when the connection is made.
                self.auth.push((scheme, auth));
                let _ = reply.send(0);
                false
            }
            Cmd::Close(tx) => {
                self.set_state(States::Closed);
                self.fail_all(ErrorCode::SessionExpired.code());
                self.state_event(kstate::CLOSED);
                let _ = tx.send(());
                true
            }
        }
    }

    /// After the session ended, requests still arriving fail at once.
    async fn drain_after_end(&mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let code = if self.state() == States::AuthFailed { ErrorCode::AuthFailed } else { ErrorCode::SessionExpired };
        while let Some(c) = rx.recv().await {
            match c {
                Cmd::Request(r) => {
                    let _ = r.reply.send((code.code(), Vec::new()));
                }
                Cmd::Auth { reply, .. } => {
                    let _ = reply.send(code.code());
                }
                Cmd::Close(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn encode_request(&mut self, out: &mut Vec<u8>, r: Request) {
        let x = self.next_xid();
        write_frame(out, |b| {
            RequestHeader { xid: x, op: r.opcode }.encode(b);
            b.extend_from_slice(&r.body);
        });
        self.pending.push_back(Pending { xid: x, reg: r.reg, reply: r.reply });
    }

    fn encode_auth(out: &mut Vec<u8>, scheme: &str, auth: &Option<Vec<u8>>) {
        write_frame(out, |b| {
            RequestHeader { xid: xid::AUTH, op: op::AUTH }.encode(b);
            AuthPacket { auth_type: 0, scheme: scheme.to_string(), auth: auth.clone() }.encode(b);
        });
    }

    async fn serve(&mut self, stream: TcpStream, rx: &mut mpsc::UnboundedReceiver<Cmd>) -> End {
        let (mut rd, mut wr) = stream.into_split();
        // primeConnection: watches to restore, then the auth the session has, then what waited.
        let mut out = Vec::new();
        if !self.watches.is_empty() {
            let sp = |set: &HashSet<String>| -> Vec<String> {
                set.iter()
                    .map(|p| match &self.chroot {
                        None => p.clone(),
                        Some(c) if p == "/" => c.clone(),
                        Some(c) => format!("{c}{p}"),
                    })
                    .collect()
            };
            let sw = SetWatches2 {
                relative_zxid: self.last_zxid,
                data_watches: sp(&self.watches.data),
                exist_watches: sp(&self.watches.exist),
                child_watches: sp(&self.watches.child),
                persistent_watches: sp(&self.watches.persistent),
                persistent_recursive_watches: sp(&self.watches.recursive),
            };
            write_frame(&mut out, |b| {
                RequestHeader { xid: xid::SET_WATCHES, op: op::SET_WATCHES2 }.encode(b);
                sw.encode(b);
            });
        }
        for (scheme, auth) in &self.auth {
            Self::encode_auth(&mut out, scheme, auth);
            self.auth_pending.push_back(None);
        }
        let queued: Vec<Request> = self.queue.drain(..).collect();
        for r in queued {
            self.encode_request(&mut out, r);
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return End::Lost;
        }
        let read_timeout = Duration::from_millis((self.negotiated.max(100) as u64) * 2 / 3);
        let ping_every = read_timeout / 2;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut last_send = Instant::now();
        let mut last_recv = Instant::now();
        let mut closing: Option<oneshot::Sender<()>> = None;
        loop {
            tokio::select! {
                c = rx.recv(), if closing.is_none() => {
                    let mut out = Vec::new();
                    match c {
                        // Every handle is gone (the shell exits): leave the session to expire, as
                        // a Java process that exits without close() does.
                        None => return End::Done,
                        Some(Cmd::Request(r)) => self.encode_request(&mut out, r),
                        Some(Cmd::Auth { scheme, auth, reply }) => {
                            Self::encode_auth(&mut out, &scheme, &auth);
                            self.auth.push((scheme, auth));
                            self.auth_pending.push_back(Some(reply));
                        }
                        Some(Cmd::Close(tx)) => {
                            let x = self.next_xid();
                            write_frame(&mut out, |b| RequestHeader { xid: x, op: op::CLOSE_SESSION }.encode(b));
                            closing = Some(tx);
                        }
                    }
                    if wr.write_all(&out).await.is_err() {
                        if let Some(tx) = closing.take() {
                            self.closed(tx);
                            return End::Done;
                        }
                        return End::Lost;
                    }
                    last_send = Instant::now();
                }
                n = rd.read_buf(&mut buf) => {
                    match n {
                        Ok(0) | Err(_) => {
                            if let Some(tx) = closing.take() {
                                self.closed(tx);
                                return End::Done;
                            }
                            return End::Lost;
                        }
                        Ok(_) => {}
                    }
                    last_recv = Instant::now();
                    let mut consumed = 0;
                    loop {
                        let frame = match check_frame(&buf[consumed..], usize::MAX >> 1) {
                            FrameCheck::Complete(len) => {
                                let f = buf[consumed + 4..consumed + 4 + len].to_vec();
                                consumed += 4 + len;
                                f
                            }
                            FrameCheck::Incomplete => break,
                            FrameCheck::TooLarge(_) => return End::Lost,
                        };
                        match self.on_frame(&frame) {
                            Some(FrameEnd::Lost) => return End::Lost,
                            Some(FrameEnd::AuthFailed) => return End::Done,
                            Some(FrameEnd::Closed) => match closing.take() {
                                Some(tx) => {
                                    self.closed(tx);
                                    return End::Done;
                                }
                                None => return End::Lost,
                            },
                            None => {}
                        }
                    }
                    buf.drain(..consumed);
                }
                _ = tokio::time::sleep_until(last_send + ping_every), if closing.is_none() => {
                    let mut out = Vec::new();
                    write_frame(&mut out, |b| RequestHeader { xid: xid::PING, op: op::PING }.encode(b));
                    if wr.write_all(&out).await.is_err() {
                        return End::Lost;
                    }
                    last_send = Instant::now();
                }
                _ = tokio::time::sleep_until(last_recv + read_timeout) => {
                    if let Some(tx) = closing.take() {
                        self.closed(tx);
                        return End::Done;
                    }
                    return End::Lost;
                }
            }
        }
    }

    fn closed(&mut self, tx: oneshot::Sender<()>) {
        self.set_state(States::Closed);
        self.fail_all(ErrorCode::SessionExpired.code());
        self.state_event(kstate::CLOSED);
        let _ = tx.send(());
    }

    fn on_frame(&mut self, frame: &[u8]) -> Option<FrameEnd> {
        let mut r = Reader::new(frame);
        let Ok(h) = ReplyHeader::decode(&mut r) else { return Some(FrameEnd::Lost) };
        let body = frame[r.position()..].to_vec();
        match h.xid {
            xid::PING | xid::SET_WATCHES => None,
            xid::AUTH => {
                let waiter = self.auth_pending.pop_front().flatten();
                if h.err == ErrorCode::AuthFailed.code() {
                    self.set_state(States::AuthFailed);
                    self.state_event(kstate::AUTH_FAILED);
                    if let Some(w) = waiter {
                        let _ = w.send(h.err);
                    }
                    self.fail_all(ErrorCode::AuthFailed.code());
                    return Some(FrameEnd::AuthFailed);
                }
                if let Some(w) = waiter {
                    let _ = w.send(h.err);
                }
                None
            }
            xid::NOTIFICATION => {
                let Ok(ev) = WatcherEvent::decode(&mut Reader::new(&body)) else { return None };
                let path = match &self.chroot {
                    None => ev.path,
                    Some(c) if ev.path == *c => "/".to_string(),
                    Some(c) if ev.path.len() > c.len() => ev.path[c.len()..].to_string(),
                    Some(_) => ev.path,
                };
                if self.watches.materialize(ev.event_type, &path) {
                    (self.sink)(&WatchedEvent { event_type: ev.event_type, state: ev.state, path: Some(path) });
                }
                None
            }
            _ => {
                if h.zxid > 0 {
                    self.last_zxid = h.zxid;
                }
                let Some(p) = self.pending.pop_front() else {
                    // The answer to closeSession (it is not in `pending`).
                    return Some(FrameEnd::Closed);
                };
                if p.xid != h.xid {
                    let _ = p.reply.send((ErrorCode::ConnectionLoss.code(), Vec::new()));
                    return Some(FrameEnd::Lost);
                }
                self.finish(p.reg, h.err, body, p.reply);
                None
            }
        }
    }
}

async fn try_connect(host: HostPort, req: ConnectRequest, limit: Duration) -> Result<(TcpStream, ConnectResponse), ()> {
    let work = async {
        let addrs: Vec<_> = tokio::net::lookup_host((host.host.as_str(), host.port)).await.map_err(|_| ())?.collect();
        let addr = *addrs.first().ok_or(())?;
        let mut stream = TcpStream::connect(addr).await.map_err(|_| ())?;
        let _ = stream.set_nodelay(true);
        let mut out = Vec::new();
        write_frame(&mut out, |b| req.encode(b));
        stream.write_all(&out).await.map_err(|_| ())?;
        let mut buf = Vec::new();
        let frame = read_frame(&mut stream, &mut buf).await?;
        let resp = ConnectResponse::decode(&mut Reader::new(&frame)).map_err(|_| ())?;
        Ok((stream, resp))
    };
    tokio::time::timeout(limit, work).await.map_err(|_| ())?
}

enum FrameEnd {
    Lost,
    AuthFailed,
    Closed,
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, ()> {
    loop {
        match check_frame(buf, usize::MAX >> 1) {
            FrameCheck::Complete(len) => {
                let f = buf[4..4 + len].to_vec();
                buf.drain(..4 + len);
                return Ok(f);
            }
            FrameCheck::TooLarge(_) => return Err(()),
            FrameCheck::Incomplete => {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(|_| ())?;
                if n == 0 {
                    return Err(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

//! A ZooKeeper session as zkCli sees it, on ferrozk-client's connection core
//! ([`ferrozk_client::raw`]): `new ZooKeeper(...)` returns at once and connects in the
//! background, every watch belongs to one default watcher that hears an event once, state
//! changes are events too, and `addAuthInfo` that the server rejects ends the session's
//! connection (AUTH_FAILED). This file names what zkCli prints (states, events, errors) and
//! keeps the client paths: the core knows server paths only.

use std::sync::Arc;
use std::time::Duration;

use ferrozk_client::raw::{RawOptions, RawSession, Registration};
use ferrozk_client::SessionState;
use ferrozk_proto::ErrorCode;
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
    raw: RawSession,
    chroot: Option<String>,
}

impl Zk {
    /// Starts connecting to `connect_string` and returns at once, as `new ZooKeeper()` does.
    pub fn new(connect_string: &str, timeout_ms: i32, read_only: bool, sink: EventSink) -> Result<Zk, String> {
        let (mut hosts, chroot) = parse_connect_string(connect_string)?;
        for i in (1..hosts.len()).rev() {
            let j = rand::random::<usize>() % (i + 1);
            hosts.swap(i, j);
        }
        let default_watcher = Arc::new(move |ev: &ferrozk_client::WatchedEvent| {
            // State changes carry no path; zkCli prints them with `path:null`.
            let path = (!ev.path.is_empty()).then(|| ev.path.clone());
            sink(&WatchedEvent { event_type: ev.event_type, state: ev.state, path });
        });
        let raw = RawSession::start(RawOptions {
            hosts,
            chroot: chroot.clone().unwrap_or_default(),
            timeout_ms,
            read_only,
            default_watcher,
        });
        Ok(Zk { raw, chroot })
    }

    pub fn state(&self) -> States {
        match self.raw.state() {
            SessionState::Connecting | SessionState::Disconnected => States::Connecting,
            SessionState::Connected => States::Connected,
            SessionState::ConnectedReadOnly => States::ConnectedReadOnly,
            SessionState::Expired | SessionState::Closed => States::Closed,
            SessionState::AuthFailed => States::AuthFailed,
        }
    }

    pub fn session_id(&self) -> i64 {
        self.raw.session_id()
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

    /// Sends one request; returns the reply's error code and body. `registration` names a
    /// server path.
    pub async fn call(&self, opcode: i32, body: Vec<u8>, registration: Option<Registration>) -> (i32, Vec<u8>) {
        match self.raw.call(opcode, body, registration).await {
            Ok((h, body)) => (h.err, body),
            Err(e) => (e.code(), Vec::new()),
        }
    }

    /// `addAuthInfo`, waiting for the server's answer (AUTH_FAILED ends the connection).
    pub async fn add_auth(&self, scheme: &str, auth: Option<Vec<u8>>) -> i32 {
        match self.raw.add_auth(scheme, auth).await {
            Ok(()) => 0,
            Err(e) => e.code(),
        }
    }

    /// `close()`: ends the session (if it is alive) and waits for the server's answer.
    pub async fn close(&self) {
        self.raw.close().await;
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

//! The session without the typed API, with the Java client's semantics: for shells and tools
//! that must behave as `org.apache.zookeeper.ZooKeeper` does (`ferrozk cli` is one).
//!
//! [`RawSession::start`] returns at once and connects in the background, as `new ZooKeeper()`
//! does; calls made meanwhile wait for the connection. Requests are opcodes and encoded bodies,
//! replies the header and body as the server sent them. Every watch belongs to the session's
//! default watcher, which hears an event once however many of its watches match it, and hears
//! every state change. When every handle is gone the session is left to expire, as when a Java
//! process exits without `close()`.
//!
//! It is the same connection core as [`crate::Client`]'s (handshake, frames, pings, reconnects,
//! auth and watches restored on a new connection); only the delivery of watches differs.

use std::time::Duration;

use ferrozk_proto::{ErrorCode, ReplyHeader};

pub use crate::connection::EventSink;
use crate::connection::{Connection, Handle, Settings};
use crate::watches::{WatchKind, WatchOp, Watcher};
use crate::SessionState;

/// What a request's reply registers for the default watcher, on a server path.
#[derive(Debug, Clone)]
pub enum Registration {
    /// getData with a watch.
    Data(String),
    /// exists with a watch: on the node, or on its creation if there is none.
    Exists(String),
    Child(String),
    Persistent(String),
    PersistentRecursive(String),
    /// removeWatches of a [`crate::watcher_type`]: the default watcher's watches of that type on
    /// the path go, whatever the server answered if `local`, and it hears that they went.
    Remove {
        path: String,
        watcher_type: i32,
        local: bool,
    },
}

pub struct RawOptions {
    /// Servers in the order they are tried (shuffle them first, as the Java client does).
    pub hosts: Vec<(String, u16)>,
    /// The chroot (`""` for none); events reach the watcher without it. Request paths are
    /// the caller's to prefix.
    pub chroot: String,
    pub timeout_ms: i32,
    pub read_only: bool,
    pub default_watcher: EventSink,
}

/// A handle on a session; cheap to clone.
#[derive(Clone)]
pub struct RawSession {
    handle: Handle,
}

impl RawSession {
    /// Starts the session's task (on the current tokio runtime) and returns at once.
    pub fn start(opts: RawOptions) -> RawSession {
        let (conn, handle, cmds) = Connection::new(Settings {
            hosts: opts.hosts,
            chroot: opts.chroot,
            timeout_ms: opts.timeout_ms,
            read_only: opts.read_only,
            default_watcher: Some(opts.default_watcher),
            close_on_drop: false,
            // The Java client's pause before trying again.
            reconnect_pause: Duration::from_secs(1),
        });
        tokio::spawn(conn.run(None, cmds));
        RawSession { handle }
    }

    pub fn state(&self) -> SessionState {
        self.handle.state()
    }

    /// 0 until the first connection is made.
    pub fn session_id(&self) -> i64 {
        self.handle.info().0
    }

    /// The session timeout the server granted, in milliseconds (0 until connected).
    pub fn negotiated_timeout_ms(&self) -> i32 {
        self.handle.info().2
    }

    /// Sends one request and returns the reply's header and body; `Err` only when no reply came
    /// (the connection or the session was lost first).
    pub async fn call(
        &self,
        opcode: i32,
        body: Vec<u8>,
        registration: Option<Registration>,
    ) -> Result<(ReplyHeader, Vec<u8>), ErrorCode> {
        let watch = registration.map(|r| match r {
            Registration::Data(p) => WatchOp::Add(WatchKind::Data, p, Watcher::Default),
            Registration::Exists(p) => WatchOp::Add(WatchKind::Exists, p, Watcher::Default),
            Registration::Child(p) => WatchOp::Add(WatchKind::Child, p, Watcher::Default),
            Registration::Persistent(p) => WatchOp::Add(WatchKind::Persistent, p, Watcher::Default),
            Registration::PersistentRecursive(p) => WatchOp::Add(WatchKind::PersistentRecursive, p, Watcher::Default),
            Registration::Remove { path, watcher_type, local } => WatchOp::Remove { path, watcher_type, local },
        });
        self.handle.call(opcode, body, watch).await
    }

    /// `addAuthInfo`: waits for the server's answer if connected; an AUTH_FAILED answer ends the
    /// session's connection for good, as the Java client does.
    pub async fn add_auth(&self, scheme: &str, auth: Option<Vec<u8>>) -> Result<(), ErrorCode> {
        self.handle.add_auth(scheme, auth).await
    }

    /// `close()`: ends the session and waits for the server's answer.
    pub async fn close(&self) {
        if matches!(self.state(), SessionState::Closed | SessionState::Expired | SessionState::AuthFailed) {
            return;
        }
        self.handle.close(Duration::from_secs(3600)).await;
    }
}

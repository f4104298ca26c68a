//! The connection core: the one task behind a session, for [`crate::Client`] and for
//! [`crate::raw::RawSession`] (which `ferrozk cli` uses). It owns the socket and the watch table:
//! the handshake, frames, xids and the pending queue, pings, reconnecting across the servers of
//! the connect string while the session lives, and restoring auth and watches on a new
//! connection (`SetWatches2`).
//!
//! Watches are delivered in one of two ways, side by side: to the watcher a call registered
//! (a one-shot or a channel: `Client`'s typed API), or to the session's default watcher with the
//! Java client's semantics (`ZKWatchManager` with one watcher: an event is heard once however many
//! of its watches match it, and every state change is heard too), which zkCli's output is made of.
//!
//! Commands made while no connection is up wait, as in the Java client's outgoing queue: they go
//! out when a connection is made and fail with `ConnectionLoss` when an attempt fails.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferrozk_proto::codes::{event, op, state, xid};
use ferrozk_proto::frame::{check_frame, write_frame, FrameCheck};
use ferrozk_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::watches::{WatchKind, WatchOp, Watcher, Watches};
use crate::{SessionState, WatchedEvent};

/// The default watcher: called from the connection task, in the order the server sent events
/// and before the reply to any later request is delivered.
pub type EventSink = Arc<dyn Fn(&WatchedEvent) + Send + Sync>;

pub(crate) type Reply = oneshot::Sender<Result<(ReplyHeader, Vec<u8>), ErrorCode>>;

pub(crate) struct Call {
    pub opcode: i32,
    pub body: Vec<u8>,
    pub watch: Option<WatchOp>,
    pub reply: Reply,
}

pub(crate) enum Cmd {
    Call(Call),
    AddAuth { scheme: String, auth: Option<Vec<u8>>, reply: oneshot::Sender<Result<(), ErrorCode>> },
    Close(oneshot::Sender<()>),
}

struct Pending {
    xid: i32,
    watch: Option<WatchOp>,
    reply: Reply,
}

/// The senders behind a session's handles: commands, and what the handles read back.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<SessionState>,
    /// Session id, password, negotiated timeout.
    info: watch::Receiver<(i64, Vec<u8>, i32)>,
}

impl Handle {
    pub(crate) fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    pub(crate) fn state_events(&self) -> watch::Receiver<SessionState> {
        self.state.clone()
    }

    pub(crate) fn info(&self) -> (i64, Vec<u8>, i32) {
        self.info.borrow().clone()
    }

    pub(crate) async fn call(
        &self,
        opcode: i32,
        body: Vec<u8>,
        watch: Option<WatchOp>,
    ) -> Result<(ReplyHeader, Vec<u8>), ErrorCode> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Call(Call { opcode, body, watch, reply })).map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())?
    }

    pub(crate) async fn add_auth(&self, scheme: &str, auth: Option<Vec<u8>>) -> Result<(), ErrorCode> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::AddAuth { scheme: scheme.to_string(), auth, reply }).map_err(|_| self.ended())?;
        rx.await.map_err(|_| self.ended())?
    }

    /// Ends the session and waits (at most `limit`) for the server's answer.
    pub(crate) async fn close(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }

    /// The error a call gets once the task is gone.
    fn ended(&self) -> ErrorCode {
        match self.state() {
            SessionState::AuthFailed => ErrorCode::AuthFailed,
            _ => ErrorCode::SessionExpired,
        }
    }
}

pub(crate) struct Settings {
    /// Servers in the order they are tried; names are resolved at each try.
    pub hosts: Vec<(String, u16)>,
    /// Added to no path here; stripped from the paths of events before they are delivered.
    pub chroot: String,
    pub timeout_ms: i32,
    pub read_only: bool,
    pub default_watcher: Option<EventSink>,
    /// When every handle is gone: close the session (true), or leave it to expire as a process
    /// that exits without `close()` does.
    pub close_on_drop: bool,
    /// The longest random pause before another round of the servers after a round failed.
    pub reconnect_pause: Duration,
}

pub(crate) struct Connection {
    settings: Settings,
    session_id: i64,
    passwd: Vec<u8>,
    negotiated_ms: i32,
    connected_once: bool,
    last_zxid: i64,
    xid: i32,
    auth: Vec<(String, Option<Vec<u8>>)>,
    watches: Watches,
    state: watch::Sender<SessionState>,
    info: watch::Sender<(i64, Vec<u8>, i32)>,
    /// The state the default watcher heard last: a state is not told twice in a row.
    told_state: i32,
    next_host: usize,
    /// Calls made while no connection is up.
    queue: VecDeque<Call>,
    pending: VecDeque<Pending>,
    /// Auth packets sent, oldest first; `None` for the ones re-sent on a new connection.
    auth_pending: VecDeque<Option<oneshot::Sender<Result<(), ErrorCode>>>>,
    closing: Option<oneshot::Sender<()>>,
}

/// How a connection ended.
enum End {
    Lost,
    Expired,
    Closed,
    AuthFailed,
    /// Every handle is gone and the session is left to expire.
    Dropped,
}

impl Connection {
    /// A connection task not yet running, and the handle to it.
    pub(crate) fn new(settings: Settings) -> (Connection, Handle, mpsc::UnboundedReceiver<Cmd>) {
        let (state_tx, state_rx) = watch::channel(SessionState::Connecting);
        let (info_tx, info_rx) = watch::channel((0i64, Vec::new(), 0i32));
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Connection {
            negotiated_ms: settings.timeout_ms,
            settings,
            session_id: 0,
            passwd: vec![0; 16],
            connected_once: false,
            last_zxid: 0,
            xid: 0,
            auth: Vec::new(),
            watches: Watches::default(),
            state: state_tx,
            info: info_tx,
            told_state: state::DISCONNECTED,
            next_host: 0,
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            auth_pending: VecDeque::new(),
            closing: None,
        };
        (conn, Handle { tx, state: state_rx, info: info_rx }, rx)
    }

    fn set_state(&mut self, s: SessionState) {
        let _ = self.state.send(s);
        let told = match s {
            SessionState::Connecting => return,
            SessionState::Connected => state::SYNC_CONNECTED,
            SessionState::ConnectedReadOnly => state::CONNECTED_READ_ONLY,
            SessionState::Disconnected => state::DISCONNECTED,
            SessionState::Expired => state::EXPIRED,
            SessionState::AuthFailed => state::AUTH_FAILED,
            SessionState::Closed => state::CLOSED,
        };
        if let Some(sink) = &self.settings.default_watcher {
            if self.told_state != told {
                self.told_state = told;
                sink(&WatchedEvent { event_type: event::NONE, state: told, path: String::new() });
            }
        }
    }

    fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid >= i32::MAX - 1 { 1 } else { self.xid + 1 };
        self.xid
    }

    /// The Java client's: the session timeout shared among the servers.
    fn connect_timeout(&self) -> Duration {
        let t = if self.connected_once { self.negotiated_ms } else { self.settings.timeout_ms };
        Duration::from_millis(t.max(100) as u64 / self.settings.hosts.len().max(1) as u64)
    }

    /// One try of the next server: a connection and the server's answer to the handshake.
    fn try_next_host(&mut self) -> impl std::future::Future<Output = Result<(TcpStream, ConnectResponse), ()>> {
        let (host, port) = self.settings.hosts[self.next_host % self.settings.hosts.len()].clone();
        self.next_host += 1;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout: self.settings.timeout_ms,
            session_id: self.session_id,
            passwd: Some(self.passwd.clone()),
            read_only: Some(self.settings.read_only),
        };
        let limit = self.connect_timeout();
        let work = async move {
            let addr = tokio::net::lookup_host((host.as_str(), port)).await.map_err(|_| ())?.next().ok_or(())?;
            let mut stream = TcpStream::connect(addr).await.map_err(|_| ())?;
            let _ = stream.set_nodelay(true);
            let mut out = Vec::new();
            write_frame(&mut out, |b| req.encode(b));
            stream.write_all(&out).await.map_err(|_| ())?;
            let frame = read_frame(&mut stream).await?;
            let resp = ConnectResponse::decode(&mut Reader::new(&frame)).map_err(|_| ())?;
            Ok((stream, resp))
        };
        async move { tokio::time::timeout(limit, work).await.map_err(|_| ())? }
    }

    /// Takes the session from the server's answer; false if the session is gone.
    fn attach(&mut self, resp: &ConnectResponse) -> bool {
        if resp.timeout <= 0 {
            return false;
        }
        self.connected_once = true;
        self.session_id = resp.session_id;
        self.passwd = resp.passwd.clone().unwrap_or_default();
        self.negotiated_ms = resp.timeout;
        let _ = self.info.send((self.session_id, self.passwd.clone(), self.negotiated_ms));
        self.set_state(if resp.read_only == Some(true) { SessionState::ConnectedReadOnly } else { SessionState::Connected });
        true
    }

    /// Tries each server once, for [`crate::Client::connect`] to report failure at once.
    pub(crate) async fn first_connect(&mut self) -> Result<TcpStream, ErrorCode> {
        for _ in 0..self.settings.hosts.len() {
            if let Ok((stream, resp)) = self.try_next_host().await {
                if !self.attach(&resp) {
                    return Err(ErrorCode::SessionExpired);
                }
                return Ok(stream);
            }
        }
        Err(ErrorCode::ConnectionLoss)
    }

    /// Serves the session until it ends, connecting (again) whenever no connection is up.
    pub(crate) async fn run(mut self, mut stream: Option<TcpStream>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            let s = match stream.take() {
                Some(s) => s,
                None => match self.reconnect(&mut cmds).await {
                    Ok(s) => s,
                    Err(end) => return self.finish(end, cmds).await,
                },
            };
            match self.serve(s, &mut cmds).await {
                End::Lost => {
                    self.fail_pending(ErrorCode::ConnectionLoss);
                    self.set_state(SessionState::Disconnected);
                }
                end => return self.finish(end, cmds).await,
            }
        }
    }

    /// Tries the servers in turn until one takes the session, taking commands meanwhile.
    async fn reconnect(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) -> Result<TcpStream, End> {
        let mut attempt = 0usize;
        loop {
            if attempt > 0 && attempt % self.settings.hosts.len() == 0 {
                let max = self.settings.reconnect_pause.as_millis().max(1) as u64;
                let until = Instant::now() + Duration::from_millis(rand::random::<u64>() % max);
                loop {
                    tokio::select! {
                        c = cmds.recv() => self.idle_cmd(c)?,
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
            }
            attempt += 1;
            let connect = self.try_next_host();
            tokio::pin!(connect);
            let result = loop {
                tokio::select! {
                    r = &mut connect => break r,
                    c = cmds.recv() => self.idle_cmd(c)?,
                }
            };
            match result {
                Ok((stream, resp)) => {
                    if !self.attach(&resp) {
                        return Err(End::Expired);
                    }
                    return Ok(stream);
                }
                // As the Java client: a failed attempt fails what waits for the connection.
                Err(()) => {
                    for c in self.queue.drain(..) {
                        let _ = c.reply.send(Err(ErrorCode::ConnectionLoss));
                    }
                }
            }
        }
    }

    /// A command while no connection is up; an `End` when the session is over.
    fn idle_cmd(&mut self, c: Option<Cmd>) -> Result<(), End> {
        match c {
            None if self.settings.close_on_drop => Err(End::Closed),
            None => Err(End::Dropped),
            Some(Cmd::Call(c)) => {
                self.queue.push_back(c);
                Ok(())
            }
            Some(Cmd::AddAuth { scheme, auth, reply }) => {
                // Sent with the others when a connection is made.
                self.auth.push((scheme, auth));
                let _ = reply.send(Ok(()));
                Ok(())
            }
            Some(Cmd::Close(tx)) => {
                self.closing = Some(tx);
                Err(End::Closed)
            }
        }
    }

    fn fail_pending(&mut self, code: ErrorCode) {
        for p in self.pending.drain(..) {
            let _ = p.reply.send(Err(code));
        }
        for c in self.queue.drain(..) {
            let _ = c.reply.send(Err(code));
        }
        for a in self.auth_pending.drain(..).flatten() {
            let _ = a.send(Err(code));
        }
    }

    /// The session is over: everyone waiting or watching is told, and commands still arriving
    /// fail at once.
    async fn finish(&mut self, end: End, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let (st, watch_state, code) = match end {
            End::Dropped => return,
            End::Lost | End::Expired => (SessionState::Expired, state::EXPIRED, ErrorCode::SessionExpired),
            End::AuthFailed => (SessionState::AuthFailed, state::AUTH_FAILED, ErrorCode::AuthFailed),
            End::Closed => (SessionState::Closed, state::CLOSED, ErrorCode::SessionExpired),
        };
        self.fail_pending(code);
        self.set_state(st);
        self.watches.fail_all(watch_state);
        if let Some(tx) = self.closing.take() {
            let _ = tx.send(());
        }
        cmds.close();
        while let Some(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Call(c) => {
                    let _ = c.reply.send(Err(code));
                }
                Cmd::AddAuth { reply, .. } => {
                    let _ = reply.send(Err(code));
                }
                Cmd::Close(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn encode_call(&mut self, out: &mut Vec<u8>, c: Call) {
        let x = self.next_xid();
        write_frame(out, |b| {
            RequestHeader { xid: x, op: c.opcode }.encode(b);
            b.extend_from_slice(&c.body);
        });
        self.pending.push_back(Pending { xid: x, watch: c.watch, reply: c.reply });
    }

    fn encode_auth(out: &mut Vec<u8>, scheme: &str, auth: &Option<Vec<u8>>) {
        write_frame(out, |b| {
            RequestHeader { xid: xid::AUTH, op: op::AUTH }.encode(b);
            AuthPacket { auth_type: 0, scheme: scheme.to_string(), auth: auth.clone() }.encode(b);
        });
    }

    async fn serve(&mut self, stream: TcpStream, cmds: &mut mpsc::UnboundedReceiver<Cmd>) -> End {
        let (mut rd, mut wr) = stream.into_split();
        // primeConnection: the watches to restore, the session's auth, then what waited.
        let mut out = Vec::new();
        if let Some(sw) = self.watches.set_watches(self.last_zxid) {
            write_frame(&mut out, |b| {
                RequestHeader { xid: xid::SET_WATCHES, op: op::SET_WATCHES2 }.encode(b);
                sw.encode(b);
            });
        }
        for (scheme, auth) in &self.auth {
            Self::encode_auth(&mut out, scheme, auth);
            self.auth_pending.push_back(None);
        }
        let queued: Vec<Call> = self.queue.drain(..).collect();
        for c in queued {
            self.encode_call(&mut out, c);
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return End::Lost;
        }
        let timeout = Duration::from_millis(self.negotiated_ms.max(100) as u64);
        let read_limit = timeout * 2 / 3;
        let ping_every = read_limit / 2;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut last_send = Instant::now();
        let mut last_recv = Instant::now();
        loop {
            let closing = self.closing.is_some();
            tokio::select! {
                cmd = cmds.recv(), if !closing => {
                    let mut out = Vec::new();
                    let mut next = cmd;
                    // Every command waiting goes out in one write.
                    loop {
                        match next {
                            None if self.settings.close_on_drop => {
                                let x = self.next_xid();
                                write_frame(&mut out, |b| RequestHeader { xid: x, op: op::CLOSE_SESSION }.encode(b));
                                let _ = wr.write_all(&out).await;
                                return End::Closed;
                            }
                            None => return End::Dropped,
                            Some(Cmd::Call(c)) => self.encode_call(&mut out, c),
                            Some(Cmd::AddAuth { scheme, auth, reply }) => {
                                Self::encode_auth(&mut out, &scheme, &auth);
                                self.auth.push((scheme, auth));
                                self.auth_pending.push_back(Some(reply));
                            }
                            Some(Cmd::Close(tx)) => {
                                let x = self.next_xid();
                                write_frame(&mut out, |b| RequestHeader { xid: x, op: op::CLOSE_SESSION }.encode(b));
                                self.closing = Some(tx);
                                break;
                            }
                        }
                        if out.len() > 256 * 1024 {
                            break;
                        }
                        next = match cmds.try_recv() {
                            Ok(c) => Some(c),
                            Err(_) => break,
                        };
                    }
                    if wr.write_all(&out).await.is_err() {
                        return if self.closing.is_some() { End::Closed } else { End::Lost };
                    }
                    last_send = Instant::now();
                }
                n = rd.read_buf(&mut buf) => {
                    if matches!(n, Ok(0) | Err(_)) {
                        return if self.closing.is_some() { End::Closed } else { End::Lost };
                    }
                    last_recv = Instant::now();
                    let mut consumed = 0;
                    loop {
                        let len = match check_frame(&buf[consumed..], usize::MAX >> 1) {
                            FrameCheck::Complete(len) => len,
                            FrameCheck::Incomplete => break,
                            FrameCheck::TooLarge(_) => return End::Lost,
                        };
                        let frame = buf[consumed + 4..consumed + 4 + len].to_vec();
                        consumed += 4 + len;
                        if let Some(end) = self.on_frame(&frame) {
                            return end;
                        }
                    }
                    buf.drain(..consumed);
                }
                _ = tokio::time::sleep_until(last_send + ping_every), if !closing => {
                    let mut out = Vec::new();
                    write_frame(&mut out, |b| RequestHeader { xid: xid::PING, op: op::PING }.encode(b));
                    if wr.write_all(&out).await.is_err() {
                        return End::Lost;
                    }
                    last_send = Instant::now();
                }
                _ = tokio::time::sleep_until(last_recv + read_limit) => {
                    tracing::debug!("no answer from the server within {read_limit:?}; reconnecting");
                    return if self.closing.is_some() { End::Closed } else { End::Lost };
                }
            }
        }
    }

    /// A server path as the client knows it.
    fn client_path(&self, path: &str) -> String {
        let chroot = self.settings.chroot.as_str();
        if chroot.is_empty() {
            return path.to_string();
        }
        match path.strip_prefix(chroot) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => path.to_string(),
        }
    }

    fn tell_default(&self, ev: &WatchedEvent) {
        if let Some(sink) = &self.settings.default_watcher {
            sink(ev);
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> Option<End> {
        let mut r = Reader::new(frame);
        let Ok(mut h) = ReplyHeader::decode(&mut r) else { return Some(End::Lost) };
        let body = frame[r.position()..].to_vec();
        if h.zxid > 0 {
            self.last_zxid = self.last_zxid.max(h.zxid);
        }
        match h.xid {
            xid::NOTIFICATION => {
                if let Ok(ev) = WatcherEvent::decode(&mut Reader::new(&body)) {
                    let user = WatchedEvent { event_type: ev.event_type, state: ev.state, path: self.client_path(&ev.path) };
                    if self.watches.dispatch(&ev.path, &user) {
                        self.tell_default(&user);
                    }
                }
                None
            }
            xid::PING | xid::SET_WATCHES => None,
            xid::AUTH => {
                let waiter = self.auth_pending.pop_front().flatten();
                let result = if h.err == 0 { Ok(()) } else { Err(ErrorCode::from_code(h.err).unwrap_or(ErrorCode::AuthFailed)) };
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
                (h.err == ErrorCode::AuthFailed.code()).then_some(End::AuthFailed)
            }
            _ => {
                let Some(p) = self.pending.pop_front() else {
                    // The answer to closeSession (it is not in `pending`).
                    return Some(if self.closing.is_some() { End::Closed } else { End::Lost });
                };
                if p.xid != h.xid {
                    tracing::warn!(expected = p.xid, got = h.xid, "reply out of order; reconnecting");
                    let _ = p.reply.send(Err(ErrorCode::ConnectionLoss));
                    return Some(End::Lost);
                }
                if h.err == ErrorCode::SessionExpired.code() {
                    let _ = p.reply.send(Err(ErrorCode::SessionExpired));
                    return Some(End::Expired);
                }
                match p.watch {
                    Some(WatchOp::Add(kind, path, w))
                        if h.err == 0 || (kind == WatchKind::Exists && h.err == ErrorCode::NoNode.code()) =>
                    {
                        self.watches.add(kind, path, w, h.err == 0);
                    }
                    Some(WatchOp::Remove { path, watcher_type, local }) => {
                        match self.watches.remove(&path, watcher_type, local, h.err) {
                            Ok(removed) => {
                                let lost = h.err == ErrorCode::ConnectionLoss.code();
                                let st = if lost { state::DISCONNECTED } else { state::SYNC_CONNECTED };
                                let mut told_default: Vec<i32> = Vec::new();
                                let user_path = self.client_path(&path);
                                for (event_type, w) in removed {
                                    let ev = WatchedEvent { event_type, state: st, path: user_path.clone() };
                                    match w {
                                        Watcher::Once(tx) => {
                                            let _ = tx.send(ev);
                                        }
                                        Watcher::Many(tx) => {
                                            let _ = tx.send(ev);
                                        }
                                        // The default watcher hears each kind of removal once.
                                        Watcher::Default if !told_default.contains(&event_type) => {
                                            told_default.push(event_type);
                                            self.tell_default(&ev);
                                        }
                                        Watcher::Default => {}
                                    }
                                }
                                h.err = 0;
                            }
                            Err(code) => h.err = code,
                        }
                    }
                    _ => {}
                }
                let _ = p.reply.send(Ok((h, body)));
                None
            }
        }
    }
}

/// Reads one frame during the handshake (afterwards frames are cut from the read buffer).
async fn read_frame(stream: &mut TcpStream) -> Result<Vec<u8>, ()> {
    let mut buf = Vec::new();
    loop {
        match check_frame(&buf, usize::MAX >> 1) {
            FrameCheck::Complete(len) => return Ok(buf[4..4 + len].to_vec()),
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

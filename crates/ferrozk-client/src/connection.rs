//! The task behind a [`crate::Client`]: one TCP connection at a time, re-established across the
//! servers of the connect string while the session lives.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use ferrozk_proto::codes::{event, op, state, xid};
use ferrozk_proto::frame::{check_frame, write_frame, FrameCheck};
use ferrozk_proto::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{SessionState, WatchedEvent};

/// What a request asks to be registered when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// getData (and exists on an existing node).
    Data,
    /// exists: a data watch if the node exists, an exist watch if not.
    Exists,
    Child,
    Persistent,
    PersistentRecursive,
}

pub(crate) enum Watcher {
    Once(oneshot::Sender<WatchedEvent>),
    Many(mpsc::UnboundedSender<WatchedEvent>),
}

pub(crate) struct Call {
    pub opcode: i32,
    pub body: Vec<u8>,
    /// The server-side path the watch is for, and who to tell.
    pub watch: Option<(WatchKind, String, Watcher)>,
    pub reply: oneshot::Sender<Result<(ReplyHeader, Vec<u8>), ErrorCode>>,
}

pub(crate) enum Cmd {
    Call(Call),
    AddAuth { scheme: String, auth: Vec<u8>, reply: oneshot::Sender<Result<(), ErrorCode>> },
    Close(oneshot::Sender<()>),
}

struct Pending {
    xid: i32,
    opcode: i32,
    watch: Option<(WatchKind, String, Watcher)>,
    reply: oneshot::Sender<Result<(ReplyHeader, Vec<u8>), ErrorCode>>,
}

#[derive(Default)]
struct Watches {
    data: HashMap<String, Vec<Watcher>>,
    exist: HashMap<String, Vec<Watcher>>,
    child: HashMap<String, Vec<Watcher>>,
    persistent: HashMap<String, Vec<Watcher>>,
    recursive: HashMap<String, Vec<Watcher>>,
}

fn deliver(list: Vec<Watcher>, ev: &WatchedEvent, keep: &mut Vec<Watcher>) {
    for w in list {
        match w {
            Watcher::Once(tx) => {
                let _ = tx.send(ev.clone());
            }
            Watcher::Many(tx) => {
                if tx.send(ev.clone()).is_ok() {
                    keep.push(Watcher::Many(tx));
                }
            }
        }
    }
}

impl Watches {
    fn add(&mut self, kind: WatchKind, path: String, w: Watcher, exists: bool) {
        let map = match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Exists if exists => &mut self.data,
            WatchKind::Exists => &mut self.exist,
            WatchKind::Child => &mut self.child,
            WatchKind::Persistent => &mut self.persistent,
            WatchKind::PersistentRecursive => &mut self.recursive,
        };
        map.entry(path).or_default().push(w);
    }

    /// `ZKWatchManager.materialize`: who hears of an event. `ev` carries the server's path;
    /// watchers get it without the chroot.
    fn dispatch(&mut self, ev: &WatchedEvent, chroot: &str) {
        let path = ev.path.clone();
        let user_path = match path.strip_prefix(chroot) {
            Some("") if !chroot.is_empty() => "/".to_string(),
            Some(rest) if !chroot.is_empty() => rest.to_string(),
            _ => path.clone(),
        };
        let user_ev = WatchedEvent { path: user_path, ..ev.clone() };
        let ev = &user_ev;
        let fire = |map: &mut HashMap<String, Vec<Watcher>>, p: &str| {
            if let Some(list) = map.remove(p) {
                let mut keep = Vec::new();
                deliver(list, ev, &mut keep);
                if !keep.is_empty() {
                    map.insert(p.to_string(), keep);
                }
            }
        };
        match ev.event_type {
            event::NODE_DATA_CHANGED | event::NODE_CREATED => {
                fire(&mut self.data, &path);
                fire(&mut self.exist, &path);
            }
            event::NODE_CHILDREN_CHANGED => fire(&mut self.child, &path),
            event::NODE_DELETED => {
                fire(&mut self.data, &path);
                fire(&mut self.exist, &path);
                fire(&mut self.child, &path);
            }
            _ => {}
        }
        fire(&mut self.persistent, &path);
        if ev.event_type != event::NODE_CHILDREN_CHANGED {
            let mut p = path.as_str();
            loop {
                fire(&mut self.recursive, p);
                if p == "/" || p.is_empty() {
                    break;
                }
                p = match p.rfind('/') {
                    Some(0) => "/",
                    Some(i) => &p[..i],
                    None => break,
                };
            }
        }
    }

    /// Everyone watching learns that the session is gone.
    fn fail_all(&mut self, st: i32) {
        let ev = WatchedEvent { event_type: event::NONE, state: st, path: String::new() };
        for map in [&mut self.data, &mut self.exist, &mut self.child, &mut self.persistent, &mut self.recursive] {
            for (_, list) in map.drain() {
                deliver(list, &ev, &mut Vec::new());
            }
        }
    }

    fn set_watches(&self, relative_zxid: i64) -> Option<SetWatches2> {
        let keys = |m: &HashMap<String, Vec<Watcher>>| m.keys().cloned().collect::<Vec<_>>();
        let sw = SetWatches2 {
            relative_zxid,
            data_watches: keys(&self.data),
            exist_watches: keys(&self.exist),
            child_watches: keys(&self.child),
            persistent_watches: keys(&self.persistent),
            persistent_recursive_watches: keys(&self.recursive),
        };
        let empty = sw.data_watches.is_empty()
            && sw.exist_watches.is_empty()
            && sw.child_watches.is_empty()
            && sw.persistent_watches.is_empty()
            && sw.persistent_recursive_watches.is_empty();
        (!empty).then_some(sw)
    }
}

pub(crate) struct Settings {
    pub hosts: Vec<SocketAddr>,
    /// Stripped from the paths of events before they are delivered.
    pub chroot: String,
    pub timeout_ms: i32,
    pub read_only: bool,
}

pub(crate) struct Session {
    pub id: i64,
    pub passwd: Vec<u8>,
    pub timeout_ms: i32,
}

pub(crate) struct Connection {
    settings: Settings,
    session: Session,
    last_zxid: i64,
    xid: i32,
    auth: Vec<(String, Vec<u8>)>,
    watches: Watches,
    state: watch::Sender<SessionState>,
    session_info: watch::Sender<(i64, Vec<u8>, i32)>,
    next_host: usize,
}

enum End {
    Lost,
    Expired,
    Closed,
    AuthFailed,
}

impl Connection {
    pub(crate) fn new(
        settings: Settings,
        state: watch::Sender<SessionState>,
        session_info: watch::Sender<(i64, Vec<u8>, i32)>,
    ) -> Connection {
        Connection {
            session: Session { id: 0, passwd: vec![0; 16], timeout_ms: settings.timeout_ms },
            settings,
            last_zxid: 0,
            xid: 0,
            auth: Vec::new(),
            watches: Watches::default(),
            state,
            session_info,
            next_host: 0,
        }
    }

    /// Connects once (for `Client::connect` to report failure), then serves until the end.
    pub(crate) async fn first_connect(&mut self) -> Result<TcpStream, ErrorCode> {
        for _ in 0..self.settings.hosts.len() {
            match self.try_host().await {
                Ok(s) => return Ok(s),
                Err(ErrorCode::SessionExpired) => return Err(ErrorCode::SessionExpired),
                Err(_) => continue,
            }
        }
        Err(ErrorCode::ConnectionLoss)
    }

    async fn try_host(&mut self) -> Result<TcpStream, ErrorCode> {
        let addr = self.settings.hosts[self.next_host % self.settings.hosts.len()];
        self.next_host += 1;
        let connect_timeout = Duration::from_millis((self.settings.timeout_ms.max(1000) / 3) as u64);
        let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ErrorCode::ConnectionLoss)?
            .map_err(|_| ErrorCode::ConnectionLoss)?;
        let _ = stream.set_nodelay(true);
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout: self.settings.timeout_ms,
            session_id: self.session.id,
            passwd: Some(self.session.passwd.clone()),
            read_only: Some(self.settings.read_only),
        };
        let mut out = Vec::new();
        write_frame(&mut out, |b| req.encode(b));
        stream.write_all(&out).await.map_err(|_| ErrorCode::ConnectionLoss)?;
        let mut buf = Vec::new();
        let frame = tokio::time::timeout(connect_timeout, read_frame(&mut stream, &mut buf))
            .await
            .map_err(|_| ErrorCode::ConnectionLoss)??;
        let resp = ConnectResponse::decode(&mut Reader::new(&frame)).map_err(|_| ErrorCode::MarshallingError)?;
        if resp.timeout <= 0 {
            return Err(ErrorCode::SessionExpired);
        }
        self.session = Session { id: resp.session_id, passwd: resp.passwd.unwrap_or_default(), timeout_ms: resp.timeout };
        let _ = self.session_info.send((self.session.id, self.session.passwd.clone(), self.session.timeout_ms));
        let read_only = resp.read_only == Some(true);
        let _ = self.state.send(if read_only { SessionState::ConnectedReadOnly } else { SessionState::Connected });
        Ok(stream)
    }

    pub(crate) async fn run(mut self, mut stream: Option<TcpStream>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut closing: Option<oneshot::Sender<()>> = None;
        loop {
            let s = match stream.take() {
                Some(s) => s,
                None => {
                    // Reconnect: try each host in turn, backing off a little between rounds.
                    let mut attempt = 0u32;
                    loop {
                        match self.try_host().await {
                            Ok(s) => break s,
                            Err(ErrorCode::SessionExpired) => {
                                self.expire(&mut cmds).await;
                                return;
                            }
                            Err(_) => {
                                attempt += 1;
                                if attempt as usize % self.settings.hosts.len() == 0 {
                                    tokio::time::sleep(Duration::from_millis(50 + rand::random::<u64>() % 250)).await;
                                }
                                // Fail calls made while disconnected rather than queueing them.
                                while let Ok(cmd) = cmds.try_recv() {
                                    match cmd {
                                        Cmd::Call(c) => {
                                            let _ = c.reply.send(Err(ErrorCode::ConnectionLoss));
                                        }
                                        Cmd::AddAuth { scheme, auth, reply } => {
                                            self.auth.push((scheme, auth));
                                            let _ = reply.send(Ok(()));
                                        }
                                        Cmd::Close(tx) => {
                                            let _ = self.state.send(SessionState::Closed);
                                            let _ = tx.send(());
                                            return;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            };
            match self.serve(s, &mut cmds, &mut closing).await {
                End::Lost => {
                    let _ = self.state.send(SessionState::Disconnected);
                    let ev = WatchedEvent { event_type: event::NONE, state: state::DISCONNECTED, path: String::new() };
                    self.watches.dispatch(&ev, "");
                }
                End::Expired => {
                    self.expire(&mut cmds).await;
                    return;
                }
                End::AuthFailed => {
                    let _ = self.state.send(SessionState::AuthFailed);
                    self.watches.fail_all(state::AUTH_FAILED);
                    return;
                }
                End::Closed => {
                    let _ = self.state.send(SessionState::Closed);
                    self.watches.fail_all(state::CLOSED);
                    if let Some(tx) = closing.take() {
                        let _ = tx.send(());
                    }
                    return;
                }
            }
        }
    }

    async fn expire(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) {
        let _ = self.state.send(SessionState::Expired);
        self.watches.fail_all(state::EXPIRED);
        cmds.close();
        while let Some(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Call(c) => {
                    let _ = c.reply.send(Err(ErrorCode::SessionExpired));
                }
                Cmd::AddAuth { reply, .. } => {
                    let _ = reply.send(Err(ErrorCode::SessionExpired));
                }
                Cmd::Close(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid >= i32::MAX - 1 { 1 } else { self.xid + 1 };
        self.xid
    }

    async fn serve(
        &mut self,
        stream: TcpStream,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
        closing: &mut Option<oneshot::Sender<()>>,
    ) -> End {
        let (mut rd, mut wr) = stream.into_split();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut auth_pending: VecDeque<oneshot::Sender<Result<(), ErrorCode>>> = VecDeque::new();
        let mut out = Vec::new();
        // Restore what the session had on its last connection: auth, then watches.
        for (scheme, auth) in &self.auth {
            write_frame(&mut out, |b| {
                RequestHeader { xid: xid::AUTH, op: op::AUTH }.encode(b);
                AuthPacket { auth_type: 0, scheme: scheme.clone(), auth: Some(auth.clone()) }.encode(b);
            });
        }
        if let Some(sw) = self.watches.set_watches(self.last_zxid) {
            write_frame(&mut out, |b| {
                RequestHeader { xid: xid::SET_WATCHES, op: op::SET_WATCHES2 }.encode(b);
                sw.encode(b);
            });
        }
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return End::Lost;
        }
        let timeout = Duration::from_millis(self.session.timeout_ms.max(100) as u64);
        let ping_every = timeout / 3;
        let read_limit = timeout * 2 / 3;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut last_send = tokio::time::Instant::now();
        let mut last_recv = tokio::time::Instant::now();
        let end = loop {
            let ping_at = last_send + ping_every;
            let dead_at = last_recv + read_limit;
            tokio::select! {
                cmd = cmds.recv() => {
                    let mut out = Vec::new();
                    let mut next = cmd;
                    // Batch every command waiting into one write.
                    loop {
                        match next {
                            None => break,
                            Some(Cmd::Call(c)) => {
                                let x = if c.opcode == op::PING { xid::PING } else { self.next_xid() };
                                write_frame(&mut out, |b| {
                                    RequestHeader { xid: x, op: c.opcode }.encode(b);
                                    b.extend_from_slice(&c.body);
                                });
                                pending.push_back(Pending { xid: x, opcode: c.opcode, watch: c.watch, reply: c.reply });
                            }
                            Some(Cmd::AddAuth { scheme, auth, reply }) => {
                                write_frame(&mut out, |b| {
                                    RequestHeader { xid: xid::AUTH, op: op::AUTH }.encode(b);
                                    AuthPacket { auth_type: 0, scheme: scheme.clone(), auth: Some(auth.clone()) }.encode(b);
                                });
                                self.auth.push((scheme, auth));
                                auth_pending.push_back(reply);
                            }
                            Some(Cmd::Close(tx)) => {
                                let x = self.next_xid();
                                write_frame(&mut out, |b| RequestHeader { xid: x, op: op::CLOSE_SESSION }.encode(b));
                                *closing = Some(tx);
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
                    if out.is_empty() && closing.is_none() {
                        // Every handle is gone: close the session as the last thing.
                        let x = self.next_xid();
                        write_frame(&mut out, |b| RequestHeader { xid: x, op: op::CLOSE_SESSION }.encode(b));
                        let _ = wr.write_all(&out).await;
                        break End::Closed;
                    }
                    if wr.write_all(&out).await.is_err() {
                        break End::Lost;
                    }
                    last_send = tokio::time::Instant::now();
                }
                n = rd.read_buf(&mut buf) => {
                    match n {
                        Ok(0) | Err(_) => break if closing.is_some() { End::Closed } else { End::Lost },
                        Ok(_) => {}
                    }
                    last_recv = tokio::time::Instant::now();
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
                        if let Some(end) = self.on_frame(&frame, &mut pending, &mut auth_pending) {
                            return end;
                        }
                    }
                    buf.drain(..consumed);
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    let mut out = Vec::new();
                    write_frame(&mut out, |b| RequestHeader { xid: xid::PING, op: op::PING }.encode(b));
                    if wr.write_all(&out).await.is_err() {
                        break End::Lost;
                    }
                    last_send = tokio::time::Instant::now();
                }
                _ = tokio::time::sleep_until(dead_at) => {
                    tracing::debug!("no answer from the server within {read_limit:?}; reconnecting");
                    break End::Lost;
                }
            }
        };
        let code = if matches!(end, End::Closed) { ErrorCode::SessionExpired } else { ErrorCode::ConnectionLoss };
        for p in pending.drain(..) {
            let _ = p.reply.send(Err(code));
        }
        for a in auth_pending.drain(..) {
            let _ = a.send(Err(code));
        }
        end
    }

    fn on_frame(
        &mut self,
        frame: &[u8],
        pending: &mut VecDeque<Pending>,
        auth_pending: &mut VecDeque<oneshot::Sender<Result<(), ErrorCode>>>,
    ) -> Option<End> {
        let mut r = Reader::new(frame);
        let Ok(h) = ReplyHeader::decode(&mut r) else { return Some(End::Lost) };
        let body = frame[r.position()..].to_vec();
        if h.zxid > 0 {
            self.last_zxid = self.last_zxid.max(h.zxid);
        }
        match h.xid {
            xid::NOTIFICATION => {
                if let Ok(ev) = WatcherEvent::decode(&mut Reader::new(&body)) {
                    let ev = WatchedEvent { event_type: ev.event_type, state: ev.state, path: ev.path };
                    self.watches.dispatch(&ev, &self.settings.chroot);
                }
                None
            }
            xid::PING | xid::SET_WATCHES => None,
            xid::AUTH => {
                let ok = h.err == 0;
                if let Some(tx) = auth_pending.pop_front() {
                    let _ = tx.send(if ok { Ok(()) } else { Err(ErrorCode::AuthFailed) });
                }
                if ok {
                    None
                } else {
                    Some(End::AuthFailed)
                }
            }
            _ => {
                let Some(p) = pending.pop_front() else {
                    // A reply to a close (or something we never sent).
                    return if h.err == 0 { Some(End::Closed) } else { None };
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
                if let Some((kind, path, w)) = p.watch {
                    let registered = h.err == 0 || (kind == WatchKind::Exists && h.err == ErrorCode::NoNode.code());
                    if registered {
                        self.watches.add(kind, path, w, h.err == 0);
                    }
                }
                let _ = p.opcode;
                let _ = p.reply.send(Ok((h, body)));
                None
            }
        }
    }
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, ErrorCode> {
    loop {
        match check_frame(buf, usize::MAX >> 1) {
            FrameCheck::Complete(len) => {
                let f = buf[4..4 + len].to_vec();
                buf.drain(..4 + len);
                return Ok(f);
            }
            FrameCheck::TooLarge(_) => return Err(ErrorCode::MarshallingError),
            FrameCheck::Incomplete => {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(|_| ErrorCode::ConnectionLoss)?;
                if n == 0 {
                    return Err(ErrorCode::ConnectionLoss);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

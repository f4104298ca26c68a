//! One client connection: handshake (or a four-letter word), then requests in, replies out.
//!
//! Two tasks per connection. The reader reads frames in order and hands each request to
//! [`crate::dispatch`]: writes go to consensus at once (so they batch with other sessions'); a
//! read is answered at once unless writes of this connection are in flight, and then waits
//! behind them (`Core::answer_or_queue`) until they are applied. The writer batches whatever
//! replies are ready into one socket write. Replies thus leave in request order, and a watch
//! notification queued by the state machine reaches the client before any reply that shows its
//! change.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use ferrozk_proto::frame::{check_frame, write_frame, FrameCheck};
use ferrozk_proto::*;
use ferrozk_tree::{acl, TxnOp};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::core::{ConnEntry, ConnId, Out, Outbox, Shared};
use crate::dispatch::{dispatch, Session};
use crate::fourlw;
use crate::outbox::OutboxState;
use crate::sessions::Tracked;
use crate::stats::Latency;

const READ_ROOM: usize = 4096;

struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
    /// When the last read returned: the arrival time of the frames it brought (one clock read
    /// a read, not one a frame).
    read_at: Instant,
}

enum ReadError {
    Eof,
    TooLarge(i64),
    Io,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    async fn fill(&mut self) -> Result<(), ReadError> {
        // Room for a full read: frames split off shrink the buffer's spare capacity, and once
        // they are dropped this reclaims it in place.
        self.buf.reserve(READ_ROOM);
        match self.rd.read_buf(&mut self.buf).await {
            Ok(0) => Err(ReadError::Eof),
            Ok(_) => {
                self.read_at = Instant::now();
                Ok(())
            }
            Err(_) => Err(ReadError::Io),
        }
    }

    /// The next frame's payload, split off the read buffer without a copy.
    async fn next_frame(&mut self) -> Result<Bytes, ReadError> {
        loop {
            match check_frame(&self.buf, self.max) {
                FrameCheck::Complete(len) => {
                    let mut frame = self.buf.split_to(4 + len);
                    frame.advance(4);
                    return Ok(frame.freeze());
                }
                FrameCheck::TooLarge(n) => return Err(ReadError::TooLarge(n)),
                FrameCheck::Incomplete => self.fill().await?,
            }
        }
    }
}

/// Serves one accepted connection to its end (through TLS first, on the secure port).
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let max = shared.config.max_client_cnxns;
    let max_total = shared.config.max_cnxns;
    {
        let mut core = shared.lock();
        if max_total > 0 && core.per_ip.values().sum::<usize>() >= max_total {
            shared.limits.connection_rejected.fetch_add(1, Ordering::Relaxed);
            if let Some(hits) = shared.limits.rejected_warning.hit(shared.now()) {
                tracing::warn!(%peer, max_total, hits, "too many connections: max is {max_total} (maxCnxns)");
            }
            return;
        }
        let n = core.per_ip.entry(peer.ip()).or_insert(0);
        if max > 0 && *n >= max {
            shared.limits.connection_rejected.fetch_add(1, Ordering::Relaxed);
            if let Some(hits) = shared.limits.rejected_warning.hit(shared.now()) {
                tracing::warn!(%peer, max, hits, "too many connections from {} - max is {}", peer.ip(), max);
            }
            return;
        }
        *n += 1;
    }
    let sessionless = Duration::from_millis(shared.config.sessionless_cnxn_timeout_ms);
    match tls {
        None => {
            let (rd, wr) = stream.into_split();
            serve_io(&shared, rd, wr, peer, None).await;
        }
        Some(acceptor) => match tokio::time::timeout(sessionless, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                let x509 = tls_stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(crate::tls::subject_of)
                    .map(|dn| acl::id("x509", &dn));
                let (rd, wr) = tokio::io::split(tls_stream);
                serve_io(&shared, rd, wr, peer, x509).await;
            }
            Ok(Err(e)) => tracing::warn!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
    let mut core = shared.lock();
    if let Some(n) = core.per_ip.get_mut(&peer.ip()) {
        *n -= 1;
        if *n == 0 {
            core.per_ip.remove(&peer.ip());
        }
    }
}

/// `x509`: the identity a TLS client certificate gave the connection.
async fn serve_io<R, W>(shared: &Arc<Shared>, rd: R, mut wr: W, peer: SocketAddr, x509: Option<Id>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let mut reader =
        FrameReader { rd, buf: BytesMut::with_capacity(READ_ROOM), max: shared.config.jute_max_buffer, read_at: Instant::now() };
    let conn_id = shared.next_conn_id();
    let sessionless = Duration::from_millis(shared.config.sessionless_cnxn_timeout_ms);
    let mut auth = vec![acl::id("ip", &peer.ip().to_string())];
    auth.extend(x509);
    match tokio::time::timeout(sessionless, handshake(shared, &mut reader, &mut wr, conn_id, peer, &auth)).await {
        Ok(Some(session)) => run_session(shared.clone(), reader, wr, conn_id, peer, session, auth).await,
        Ok(None) => {}
        Err(_) => tracing::debug!(%peer, "closing connection that sent no handshake"),
    }
}

struct Established {
    session: i64,
    out_rx: mpsc::UnboundedReceiver<Out>,
    read_only: bool,
}

/// Reads the ConnectRequest (or a four-letter word) and answers it. `Some` when a session is
/// now attached to this connection.
async fn handshake<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader<R>,
    wr: &mut W,
    conn_id: ConnId,
    peer: SocketAddr,
    auth: &[Id],
) -> Option<Established> {
    while reader.buf.len() < 4 {
        reader.fill().await.ok()?;
    }
    if let Some(word) = fourlw::recognise(&reader.buf[..4]) {
        let text = fourlw::run(shared, word);
        let _ = wr.write_all(text.as_bytes()).await;
        let _ = wr.shutdown().await;
        return None;
    }
    let payload = match reader.next_frame().await {
        Ok(p) => p,
        Err(ReadError::TooLarge(n)) => {
            shared.limits.oversized_frames.fetch_add(1, Ordering::Relaxed);
            if let Some(hits) = shared.limits.oversized_warning.hit(shared.now()) {
                tracing::warn!(%peer, len = n, hits, "Len error: closing connection");
            }
            return None;
        }
        Err(_) => return None,
    };
    let Ok(req) = ConnectRequest::decode(&mut Reader::new(&payload)) else {
        tracing::warn!(%peer, "malformed ConnectRequest: closing connection");
        return None;
    };
    let cfg = &shared.config;
    let timeout = (req.timeout.max(0) as u64).clamp(cfg.min_timeout(), cfg.max_timeout());
    let (out_tx, out_rx) = Outbox::new(cfg.client_output_limit(), shared.global_in_flight.clone());
    let last_zxid = shared.lock().tree.last_zxid();
    if req.last_zxid_seen > last_zxid {
        tracing::info!(
            %peer,
            "Refusing session request for client as it has seen zxid 0x{:x} our last zxid is 0x{:x} client must try another server",
            req.last_zxid_seen, last_zxid
        );
        return None;
    }
    // A member without a quorum serves nobody, unless read-only mode is on and the client
    // accepts a read-only session (ZooKeeper's ReadOnlyZooKeeperServer).
    let read_only = !shared.serving();
    if read_only && !(shared.read_only() && req.read_only == Some(true)) {
        tracing::info!(%peer, "closing a client connection: no quorum (not currently serving requests)");
        return None;
    }
    let (session, passwd) = if req.session_id == 0 && read_only {
        let id = shared.lock().new_session_id();
        (id, (0..16).map(|_| rand::random::<u8>()).collect())
    } else if req.session_id == 0 {
        let id = shared.lock().new_session_id();
        let passwd: Vec<u8> = if shared.config.zookeeper_session_passwords {
            ferrozk_tree::zookeeper::zookeeper_session_password(id)
        } else {
            (0..16).map(|_| rand::random::<u8>()).collect()
        };
        // Session creations in flight count against globalOutstandingLimit like requests: a
        // storm of new connections waits here rather than queueing writes without end.
        let _creating = shared.session_creations.acquire().await.ok()?;
        let rx = shared.propose(id, Vec::new(), TxnOp::CreateSession { timeout: timeout as i32, passwd: passwd.clone() });
        rx.await.ok()?;
        (id, passwd)
    } else {
        let known = {
            let core = shared.lock();
            // As ZooKeeper does, the session's current connection is closed on any re-attach
            // attempt, before the password is checked.
            if let Some(owner) = core.sessions.get(&req.session_id).and_then(|t| t.owner) {
                if let Some(c) = core.conns.get(&owner) {
                    c.out.close();
                }
            }
            core.tree.session(req.session_id).map(|s| s.passwd.clone())
        };
        match known {
            Some(p) if Some(&p) == req.passwd.as_ref() => {
                // Writes the session sent on its previous connection and not yet applied come
                // before anything it asks on this one (a lost reply's retry must find them).
                // Bounded: a write that is never applied is failed within that time.
                let limit = Instant::now() + Duration::from_secs(10);
                while shared.session_writes_in_flight(req.session_id) && Instant::now() < limit {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (req.session_id, p)
            }
            _ => {
                tracing::info!(%peer, session = format!("0x{:x}", req.session_id), "invalid session: expired or wrong password");
                let resp = ConnectResponse {
                    protocol_version: 0,
                    timeout: 0,
                    session_id: 0,
                    passwd: Some(vec![0; 16]),
                    read_only: req.read_only.map(|_| false),
                };
                let mut out = Vec::new();
                write_frame(&mut out, |b| resp.encode(b));
                let _ = wr.write_all(&out).await;
                let _ = wr.shutdown().await;
                return None;
            }
        }
    };
    {
        let mut core = shared.lock();
        let expires_at = shared.expiry_for(timeout);
        let old_owner = match core.sessions.get_mut(&session) {
            Some(t) if t.closing => None,
            Some(t) => {
                t.timeout = timeout;
                t.expires_at = expires_at;
                t.owner.replace(conn_id)
            }
            None => {
                let t = Tracked { timeout, expires_at, owner: Some(conn_id), closing: false, local: read_only };
                core.sessions.insert(session, t);
                None
            }
        };
        // A client that reconnected elsewhere (or here) takes its session with it.
        if let Some(old) = old_owner.and_then(|o| core.conns.get(&o)) {
            old.out.close();
        }
        core.conns.insert(
            conn_id,
            ConnEntry {
                peer,
                session,
                auth: auth.to_vec(),
                out: out_tx,
                established: SystemTime::now(),
                received: 1,
                sent: 1,
                last_zxid: 0,
                last_cxid: 0,
                last_op: "NA",
                last_response: 0,
                last_latency: 0,
                latency: Latency::default(),
                read_only,
            },
        );
        core.stats.received += 1;
        core.stats.sent += 1;
    }
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout: timeout as i32,
        session_id: session,
        passwd: Some(passwd),
        read_only: req.read_only.map(|_| read_only),
    };
    let mut out = Vec::new();
    write_frame(&mut out, |b| resp.encode(b));
    if wr.write_all(&out).await.is_err() {
        drop_conn(shared, conn_id);
        return None;
    }
    tracing::debug!(%peer, session = format!("0x{session:x}"), timeout, "session established");
    Some(Established { session, out_rx, read_only })
}

fn drop_conn(shared: &Shared, conn_id: ConnId) {
    let mut core = shared.lock();
    core.forget_conn(conn_id);
    if let Some(c) = core.conns.remove(&conn_id) {
        if let Some(t) = core.sessions.get_mut(&c.session) {
            if t.owner == Some(conn_id) {
                t.owner = None;
            }
        }
    }
    core.watches.remove_watcher(conn_id);
}

async fn run_session<R, W>(
    shared: Arc<Shared>,
    mut reader: FrameReader<R>,
    wr: W,
    conn_id: ConnId,
    peer: SocketAddr,
    est: Established,
    auth: Vec<Id>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Some(out) = shared.lock().conns.get(&conn_id).map(|c| c.out.clone()) else { return };
    let outbox = out.state().clone();
    let (closed_tx, mut closed_rx) = oneshot::channel::<()>();
    let writer = tokio::spawn(write_loop(wr, est.out_rx, closed_tx, outbox.clone()));
    let session = Session { conn: conn_id, id: est.session, read_only: est.read_only, peer, out };
    let mut auth = Arc::new(auth);
    // Reading stops well before the close limit, so that only output the client never asked
    // for (notifications) can reach it.
    let pause_bytes = shared.config.jute_max_buffer.min(shared.config.client_output_limit() / 2);
    let global_limit = shared.config.global_outstanding_limit;
    'conn: loop {
        // Backpressure (outbox.rs): no more requests from a client that does not read its
        // replies, or that holds more than its share of a busy server.
        let mut counted = false;
        while let Some(why) = outbox.must_wait(pause_bytes, global_limit) {
            if !counted {
                counted = true;
                shared.limits.throttle_waits.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(%peer, ?why, "not reading requests for now");
            }
            tokio::select! {
                _ = outbox.changed() => {}
                _ = &mut closed_rx => break 'conn,
            }
            if outbox.overflowed() {
                break 'conn;
            }
        }
        if outbox.overflowed() {
            break;
        }
        let frame = tokio::select! {
            f = reader.next_frame() => f,
            _ = &mut closed_rx => break,
            _ = outbox.overflowed_now() => break,
        };
        let payload = match frame {
            Ok(p) => p,
            Err(ReadError::TooLarge(n)) => {
                shared.limits.oversized_frames.fetch_add(1, Ordering::Relaxed);
                if let Some(hits) = shared.limits.oversized_warning.hit(shared.now()) {
                    tracing::warn!(%peer, len = n, hits, "Len error: closing connection");
                }
                break;
            }
            Err(_) => break,
        };
        let at = reader.read_at;
        let mut r = Reader::new(&payload);
        let Ok(hdr) = RequestHeader::decode(&mut r) else { break };
        // A place in the proposer's queue for what this request may propose (given back
        // if it proposes nothing): while that queue is full this connection waits.
        let slot = tokio::select! {
            s = shared.proposals.clone().reserve_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut closed_rx => break,
        };
        outbox.request_read();
        dispatch(&shared, &session, &mut auth, hdr, r, at, slot);
    }
    drop(session);
    drop_conn(&shared, conn_id);
    outbox.release();
    if outbox.overflowed() {
        // Its client stopped reading: what is queued will not be taken, and the session
        // stays until its timeout for a client that reconnects.
        shared.limits.slow_consumers_closed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            %peer,
            session = format!("0x{:x}", est.session),
            limit = shared.config.client_output_limit(),
            "closing a connection whose client does not read what it is sent (maxClientOutputBytes)"
        );
        writer.abort();
        return;
    }
    // Every sender of the writer's queue goes once the writes it waits for are answered or failed:
    // the writer flushes what is left and ends.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer).await.is_err() {
        tracing::debug!(%peer, "writer did not finish flushing; dropping the connection");
        writer.abort();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Out>,
    closed: oneshot::Sender<()>,
    outbox: Arc<OutboxState>,
) {
    let mut batch = Vec::new();
    let mut buf = Vec::with_capacity(8192);
    'outer: while rx.recv_many(&mut batch, 256).await > 0 {
        buf.clear();
        let mut close = false;
        for m in batch.drain(..) {
            match m {
                Out::Frame(f) => buf.extend_from_slice(&f),
                Out::Close => {
                    close = true;
                    break;
                }
            }
        }
        if !buf.is_empty() {
            if wr.write_all(&buf).await.is_err() {
                break 'outer;
            }
            outbox.written(buf.len());
        }
        if close {
            break;
        }
    }
    let _ = wr.shutdown().await;
    let _ = closed.send(());
}

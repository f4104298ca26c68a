//! A connection's way out, and the backpressure on its way in: the frames queued for its writer,
//! counted in bytes, and its requests read but not yet answered. The apply loop cannot wait
//! for a slow client (it holds the tree for everyone), so the queue is not blocking; instead:
//!
//! - the connection stops reading requests while its unsent output passes `jute.maxbuffer`, or
//!   while the server has `globalOutstandingLimit` requests in flight and this connection holds
//!   more than its fair share of them ([`FAIR_SHARE`]); a session asking one thing at a time is
//!   never held back by others' floods (ZooKeeper stops reading from every connection instead);
//! - a connection whose unsent output still grows past `maxClientOutputBytes` (notifications
//!   for a client that stopped reading) is closed, as ZooKeeper closes a client it cannot write
//!   to; its session stays until its timeout, so a client that reconnects keeps it.
//!
//! So the memory one connection holds is bounded by those limits (DESIGN.md: bad input harms
//! nothing but its own connection).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

/// Requests a connection may always have in flight, however busy the server is.
pub const FAIR_SHARE: usize = 8;

/// What a connection's writer task is sent.
#[derive(Debug)]
pub enum Out {
    Frame(Vec<u8>),
    /// Flush what came before, then close the connection.
    Close,
}

/// The sending side of a connection's output; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    state: Arc<OutboxState>,
}

pub struct OutboxState {
    /// Bytes queued and not yet written to the socket.
    unsent: AtomicUsize,
    /// Requests read and not yet answered.
    in_flight: AtomicUsize,
    overflowed: AtomicBool,
    close_limit: usize,
    /// Something the reader may be waiting for changed (output drained, a reply left, overflow).
    changed: Notify,
    /// The connection went over `close_limit` (heard by a reader blocked on the socket).
    overflow: Notify,
    /// The server's requests in flight, over all connections.
    global_in_flight: Arc<AtomicUsize>,
}

impl Outbox {
    /// A new outbox and the receiver its writer drains.
    pub fn new(close_limit: usize, global_in_flight: Arc<AtomicUsize>) -> (Outbox, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = OutboxState {
            unsent: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            close_limit,
            changed: Notify::new(),
            overflow: Notify::new(),
            global_in_flight,
        };
        (Outbox { tx, state: Arc::new(state) }, rx)
    }

    pub fn state(&self) -> &Arc<OutboxState> {
        &self.state
    }

    /// Queues a frame that answers no request (a notification). Past the close limit the
    /// connection is closed and the frame dropped: only output the client never asked for can
    /// grow while it is not read from.
    pub fn frame(&self, f: Vec<u8>) {
        let s = &self.state;
        if s.overflowed.load(Ordering::Relaxed) {
            return;
        }
        if s.unsent() + f.len() > s.close_limit {
            s.overflowed.store(true, Ordering::Release);
            s.changed.notify_one();
            s.overflow.notify_one();
            return;
        }
        self.push(f);
    }

    /// Queues the answer to one request read on this connection (or nothing, if it ends
    /// without one). Answers are always queued: the reader stopped reading before they could
    /// grow past what the requests in flight ask for.
    pub fn reply(&self, f: Option<Vec<u8>>) {
        if let Some(f) = f {
            if !self.state.overflowed() {
                self.push(f);
            }
        }
        self.state.request_done();
    }

    fn push(&self, f: Vec<u8>) {
        let n = f.len();
        self.state.unsent.fetch_add(n, Ordering::AcqRel);
        if self.tx.send(Out::Frame(f)).is_err() {
            self.state.unsent.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Flush what is queued, then close.
    pub fn close(&self) {
        let _ = self.tx.send(Out::Close);
    }
}

impl OutboxState {
    pub fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// A request was read: it counts until answered.
    pub fn request_read(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.global_in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_done(&self) {
        // Saturating: a reply for a request read before counting began is not counted twice.
        if self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok() {
            self.global_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        self.changed.notify_one();
    }

    /// The writer put `n` bytes on the socket.
    pub fn written(&self, n: usize) {
        self.unsent.fetch_sub(n.min(self.unsent()), Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// The connection ended: what it had in flight no longer counts against the server.
    pub fn release(&self) {
        let n = self.in_flight.swap(0, Ordering::AcqRel);
        self.global_in_flight.fetch_sub(n, Ordering::AcqRel);
    }

    /// Why the reader must wait before reading another request, if it must.
    pub fn must_wait(&self, pause_bytes: usize, global_limit: usize) -> Option<Throttle> {
        if self.unsent() > pause_bytes {
            return Some(Throttle::Output);
        }
        let own = self.in_flight();
        if global_limit > 0 && own >= FAIR_SHARE && self.global_in_flight.load(Ordering::Acquire) >= global_limit {
            return Some(Throttle::Outstanding);
        }
        None
    }

    /// Waits until something changes (a permit left by an earlier change returns at once).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Waits until the connection goes over its output limit.
    pub async fn overflowed_now(&self) {
        self.overflow.notified().await
    }
}

/// Why a connection stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Its client is not reading what it was sent.
    Output,
    /// The server has `globalOutstandingLimit` requests in flight and this connection more
    /// than its share.
    Outstanding,
}

//! Apply and reply: every member applies each committed entry to its tree, in log order
//! ([`Core::apply_entry`], called by consensus's state machine; invariant 2 of DESIGN.md), then
//! does what follows on this server: session tracking, watch notifications (queued before any
//! reply that shows the change: invariant 4) and, when the write came from a client of this
//! member, its reply (ZooKeeper's FinalRequestProcessor).

use ferrozk_proto::codes::{state, xid};
use ferrozk_proto::frame::write_frame;
use ferrozk_proto::{Decode, Encode, ReplyHeader, SyncResponse, WatcherEvent};
use ferrozk_tree::{acl, Applied, Change, DataTree, Txn, TxnOp};

use crate::core::{ConnId, Core, Shared};
use crate::order::{PendingWrite, Reply};
use crate::sessions::Tracked;

/// A log entry's write (none: a barrier) applied to the tree alone: what every member and a
/// restart's replay do alike. The decoded txn and its effects, if it was one.
pub(crate) fn apply_to_tree(tree: &mut DataTree, zxid: i64, txn: Option<&[u8]>) -> Option<(Txn, Applied)> {
    let decoded = txn.map(|b| Txn::decode(&mut ferrozk_proto::Reader::new(b)));
    match decoded {
        Some(Ok(txn)) => {
            let applied = tree.apply(zxid, &txn);
            Some((txn, applied))
        }
        other => {
            if let Some(Err(e)) = other {
                // Every member skips it alike; it passed its checksum, so this is a bug.
                tracing::error!(zxid, "undecodable transaction in the log: {e}");
            }
            tree.set_last_zxid(zxid);
            None
        }
    }
}

/// `ReplyHeader(-1, zxid, 0)` + `WatcherEvent`, framed.
pub fn notification_frame(zxid: i64, event_type: i32, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + path.len());
    write_frame(&mut out, |b| {
        ReplyHeader { xid: xid::NOTIFICATION, zxid, err: 0 }.encode(b);
        WatcherEvent { event_type, state: state::SYNC_CONNECTED, path: path.to_string() }.encode(b);
    });
    out
}

impl Core {
    /// Applies log entry `zxid` (on every member, in log order) and answers the client if it
    /// waits on this member. `txn`: `None` for consensus entries, `Some(None)` for a sync
    /// barrier, `Some(Some(bytes))` for a write.
    pub fn apply_entry(&mut self, shared: &Shared, zxid: i64, origin: u64, token: u64, txn: Option<Option<&[u8]>>) {
        let mine = if origin == shared.my_id && origin != 0 { self.writes.remove(&token) } else { None };
        let Some((txn, applied)) = apply_to_tree(&mut self.tree, zxid, txn.flatten()) else {
            match mine.map(|w| w.reply) {
                Some(Reply::Sync(r, path)) => {
                    let frame = crate::ops::reply_frame(r.xid, zxid, 0, Some(&SyncResponse { path }));
                    let conn = r.conn;
                    r.send(self, Some(frame), false);
                    self.release_backlog(conn, token);
                }
                Some(Reply::Barrier(conn)) => self.release_backlog(conn, token),
                _ => {}
            }
            return;
        };
        let from_client = matches!(mine, Some(PendingWrite { reply: Reply::Client(_), .. }));
        self.after_apply(shared, &txn, &applied, from_client);
        match mine.map(|w| w.reply) {
            None | Some(Reply::None) => {}
            Some(Reply::Internal(tx)) => {
                let _ = tx.send(applied);
            }
            Some(Reply::Client(r)) => {
                let frame = crate::ops::write_reply(r.xid, r.opcode, &applied);
                let close = txn.op == TxnOp::CloseSession;
                let conn = r.conn;
                r.send(self, Some(frame), close);
                self.release_backlog(conn, token);
            }
            Some(Reply::Sync(r, _)) => {
                let conn = r.conn;
                r.send(self, None, false);
                self.release_backlog(conn, token);
            }
            Some(Reply::Barrier(conn)) => self.release_backlog(conn, token),
        }
    }

    /// Everything that follows an applied entry on this server: session tracking and watches.
    fn after_apply(&mut self, shared: &Shared, txn: &Txn, applied: &Applied, from_client: bool) {
        match &txn.op {
            TxnOp::CreateSession { timeout, .. } => {
                let timeout = *timeout as u64;
                let expires_at = shared.expiry_for(timeout);
                self.sessions.entry(txn.session).or_insert(Tracked {
                    timeout,
                    expires_at,
                    owner: None,
                    closing: false,
                    local: false,
                });
            }
            TxnOp::CloseSession => {
                if let Some(t) = self.sessions.remove(&txn.session) {
                    // A client's own close is answered first; its reply then closes it.
                    if !from_client {
                        if let Some(c) = t.owner.and_then(|o| self.conns.get(&o)) {
                            c.out.close();
                        }
                    }
                }
            }
            _ => {}
        }
        for change in &applied.changes {
            for w in self.watches.trigger(&change.path, change.kind) {
                self.notify(w, applied.zxid, change);
            }
        }
    }

    /// Sends a watch notification to one connection, unless the node's ACL hides it from
    /// that connection (ZooKeeper 3.9 checks READ at delivery).
    fn notify(&mut self, conn: ConnId, zxid: i64, change: &Change) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if acl::check(&change.acl, ferrozk_proto::codes::perms::READ, &c.auth).is_err() {
            return;
        }
        let frame = notification_frame(zxid, change.kind.event_type(), &change.path);
        c.sent += 1;
        self.stats.sent += 1;
        c.out.frame(frame);
    }
}

impl Shared {
    /// A snapshot from the leader replaced this member's state: clients reconnect (and set
    /// their watches again) as after a ZooKeeper follower's resync.
    pub fn replace_tree(&self, tree: DataTree) {
        let mut core = self.lock();
        for c in core.conns.values() {
            c.out.close();
        }
        core.tree = tree;
        core.sessions.clear();
        core.writes.clear();
        core.backlog.clear();
        core.track_recovered(self);
    }
}

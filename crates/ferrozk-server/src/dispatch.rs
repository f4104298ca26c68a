//! Dispatch: each request a connection reads, in order, goes where it belongs (ZooKeeper's
//! PrepRequestProcessor does this routing): a write to consensus through [`crate::order`], a
//! `sync` as a barrier through the leader, a read to the tree now or behind the connection's
//! writes in flight, `auth` and what a read-only server refuses answered in place. Undecodable
//! writes still take a zxid, as in ZooKeeper; an unknown opcode closes the connection. Every
//! packet first renews its session and is counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferrozk_proto::*;
use ferrozk_tree::{acl, Txn, TxnOp};

use crate::core::{wall_ms, ConnId, Outbox, Shared};
use crate::ops::{self, reply_frame, write_txn};
use crate::order::{Reply, ReplyTo, Slot, Waiting};

/// The established session a connection serves, as dispatching needs it.
pub struct Session {
    pub conn: ConnId,
    pub id: i64,
    /// Served by a member cut off from the quorum: writes and syncs are refused.
    pub read_only: bool,
    pub peer: SocketAddr,
    pub out: Outbox,
}

/// Routes one request of session `s`, read at `at`; `auth` is the connection's identities,
/// which an `auth` packet extends.
/// `slot` is the connection's place in the proposer's queue, for what the request proposes.
pub fn dispatch(
    shared: &Arc<Shared>,
    s: &Session,
    auth: &mut Arc<Vec<Id>>,
    hdr: RequestHeader,
    mut r: Reader<'_>,
    at: Instant,
    slot: Slot,
) {
    let mut slot = Some(slot);
    let (conn_id, session, read_only, peer, out) = (s.conn, s.id, s.read_only, s.peer, &s.out);
    {
        let mut core = shared.lock();
        core.touch(shared, session, at);
        core.stats.received += 1;
        if let Some(c) = core.conns.get_mut(&conn_id) {
            c.received += 1;
        }
    }
    let reply_to = || ReplyTo { conn: conn_id, out: out.clone(), xid: hdr.xid, opcode: hdr.op, at };
    // A frame that must follow everything before it, then maybe a close.
    let ordered = |frame: Vec<u8>, close: bool| {
        shared.lock().answer_or_queue(conn_id, Waiting::Forward { frame: Some(frame), close, reply: reply_to() });
    };
    let req = match Request::decode(hdr.op, &mut r) {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!(%peer, op = hdr.op, "undecodable request: {e}");
            if ops::is_write_opcode(hdr.op) {
                // ZooKeeper fails an undecodable write in preparation: it still takes a zxid.
                let txn = Txn { session, time: wall_ms(), auth: auth.to_vec(), op: TxnOp::Error(ErrorCode::MarshallingError) };
                shared.submit_write(txn, Reply::Client(reply_to()), slot.take());
            } else {
                let zxid = shared.lock().tree.last_zxid();
                ordered(reply_frame(hdr.xid, zxid, ErrorCode::MarshallingError.code(), None), false);
            }
            return;
        }
    };
    match &req {
        Request::Auth(a) => {
            match authenticate(shared, a, peer) {
                Some(ids) => {
                    let mut list = auth.to_vec();
                    for id in ids {
                        if !list.contains(&id) {
                            list.push(id);
                        }
                    }
                    *auth = Arc::new(list);
                    if let Some(c) = shared.lock().conns.get_mut(&conn_id) {
                        c.auth = auth.to_vec();
                    }
                    ordered(reply_frame(hdr.xid, 0, 0, None), false);
                }
                None => {
                    tracing::warn!(%peer, scheme = a.scheme, "authentication failed");
                    ordered(reply_frame(hdr.xid, 0, ErrorCode::AuthFailed.code(), None), true);
                }
            }
            return;
        }
        Request::Unknown(_) | Request::Sasl(_) => {
            tracing::warn!(%peer, op = hdr.op, "received packet of unknown type; closing");
            let zxid = shared.lock().tree.last_zxid();
            ordered(reply_frame(hdr.xid, zxid, ErrorCode::Unimplemented.code(), None), true);
            return;
        }
        _ => {}
    }
    if read_only && (write_txn(&req).is_some() || matches!(req, Request::Sync(_))) {
        let zxid = shared.lock().tree.last_zxid();
        if req == Request::CloseSession {
            shared.lock().sessions.remove(&session);
            ordered(reply_frame(hdr.xid, zxid, 0, None), true);
        } else {
            ordered(reply_frame(hdr.xid, zxid, ErrorCode::NotReadOnly.code(), None), false);
        }
        return;
    }
    if let Request::Reconfig(r) = &req {
        if shared.ensemble {
            match crate::raft::prepare_reconfig(shared, auth, r) {
                Ok(plan) => shared.submit_reconfig(reply_to(), plan, slot.take()),
                Err(code) => {
                    let zxid = shared.lock().tree.last_zxid();
                    ordered(reply_frame(hdr.xid, zxid, code.code(), None), false);
                }
            }
            return;
        }
    }
    if let Some(txn_op) = write_txn(&req) {
        let txn = Txn { session, time: wall_ms(), auth: auth.to_vec(), op: txn_op };
        shared.submit_write(txn, Reply::Client(reply_to()), slot.take());
    } else if let Request::Sync(r) = req {
        shared.submit_sync(reply_to(), r.path, slot.take());
    } else {
        if shared.config.linearizable_reads && !read_only && !matches!(req, Request::Ping | Request::SetWatches(..)) {
            shared.submit_barrier(conn_id, slot.take());
        }
        // Answered now unless writes of this connection are in flight. The reply is
        // queued under the lock, so it follows any notification of a change it shows.
        shared.lock().answer_or_queue(conn_id, Waiting::Read { req, session, auth: auth.clone(), reply: reply_to() });
    }
}

/// Digest auth adds `digest:user:hash` (and `super` for the configured super user), ip auth
/// the client's address; an unknown scheme fails, which closes the connection as in ZooKeeper.
fn authenticate(shared: &Shared, a: &AuthPacket, peer: SocketAddr) -> Option<Vec<Id>> {
    match a.scheme.as_str() {
        "ip" => Some(vec![acl::id("ip", &peer.ip().to_string())]),
        "digest" => {
            let text = String::from_utf8_lossy(a.auth.as_deref().unwrap_or_default()).into_owned();
            let digest = acl::digest(&text);
            let mut ids = Vec::new();
            if shared.config.super_digest.as_deref() == Some(digest.as_str()) {
                ids.push(acl::id("super", ""));
            }
            ids.push(acl::id("digest", &digest));
            Some(ids)
        }
        _ => None,
    }
}

//! Turning requests into log entries, executing reads, and encoding replies.

use ferrozk_proto::codes::{add_watch_mode, op, perms, watcher_type};
use ferrozk_proto::frame::write_frame;
use ferrozk_proto::*;
use ferrozk_tree::{acl, Applied, Outcome, TxnOp};

use crate::apply::notification_frame;
use crate::core::{ConnId, Core};

/// A framed reply: header, then the body if there is one.
pub fn reply_frame(xid: i32, zxid: i64, err: i32, body: Option<&dyn Encode>) -> Vec<u8> {
    // Room for a header, a Stat and a small value without growing step by step.
    let mut out = Vec::with_capacity(256);
    write_frame(&mut out, |b| {
        ReplyHeader { xid, zxid, err }.encode(b);
        if let Some(body) = body {
            body.encode(b);
        }
    });
    out
}

/// How ZooKeeper 3.9 rebuilds a multi's create (`MultiOperationRecord`, ZOOKEEPER-4026): a
/// create, create2 or createContainer sub-op keeps its opcode (so create2 is answered with a
/// Stat), flags 4 make a container whatever the opcode, and flags that are no create mode, or
/// TTL flags without a TTL, fail the whole multi with MARSHALLINGERROR. A createTTL sub-op
/// with non-TTL flags becomes a plain create.
fn multi_create(opcode: i32, r: &CreateRequest, ttl: Option<i64>) -> Result<TxnOp, ErrorCode> {
    let (opcode, ttl) = match ttl {
        None => {
            let mode = CreateMode::from_flag(r.flags).ok_or(ErrorCode::MarshallingError)?;
            if mode.is_ttl() {
                return Err(ErrorCode::MarshallingError);
            }
            (if mode.is_container() { op::CREATE_CONTAINER } else { opcode }, -1)
        }
        Some(ttl) => {
            let mode = CreateMode::from_flag(r.flags).unwrap_or(CreateMode::Persistent);
            if mode.is_ttl() {
                (op::CREATE_TTL, ttl)
            } else if mode.is_container() {
                (op::CREATE_CONTAINER, -1)
            } else {
                (op::CREATE, -1)
            }
        }
    };
    Ok(TxnOp::Create { opcode, path: r.path.clone(), data: r.data.clone(), acl: r.acl.clone(), flags: r.flags, ttl })
}

fn multi_op_to_txn(o: &MultiOp) -> Result<TxnOp, ErrorCode> {
    Ok(match o {
        MultiOp::Create(code, r) => multi_create(*code, r, None)?,
        MultiOp::CreateTtl(r) => {
            let as_create = CreateRequest { path: r.path.clone(), data: r.data.clone(), acl: r.acl.clone(), flags: r.flags };
            multi_create(op::CREATE_TTL, &as_create, Some(r.ttl))?
        }
        MultiOp::Delete(r) => TxnOp::Delete { path: r.path.clone(), version: r.version },
        MultiOp::SetData(r) => TxnOp::SetData { path: r.path.clone(), data: r.data.clone(), version: r.version },
        MultiOp::Check(r) => TxnOp::Check { path: r.path.clone(), version: r.version },
        MultiOp::GetChildren(_) | MultiOp::GetData(_) => return Err(ErrorCode::MarshallingError),
    })
}

/// Opcodes that ZooKeeper sends through the log (an undecodable one still takes a zxid).
pub fn is_write_opcode(opcode: i32) -> bool {
    matches!(
        opcode,
        op::CREATE
            | op::CREATE2
            | op::CREATE_CONTAINER
            | op::CREATE_TTL
            | op::DELETE
            | op::SET_DATA
            | op::SET_ACL
            | op::CHECK
            | op::MULTI
            | op::RECONFIG
    )
}

/// The log entry for a write request, or `None` for requests that are not writes.
pub fn write_txn(req: &Request) -> Option<TxnOp> {
    Some(match req {
        Request::Create(code, r) => TxnOp::Create {
            opcode: *code,
            path: r.path.clone(),
            data: r.data.clone(),
            acl: r.acl.clone(),
            flags: r.flags,
            ttl: -1,
        },
        Request::CreateTtl(r) => TxnOp::Create {
            opcode: op::CREATE_TTL,
            path: r.path.clone(),
            data: r.data.clone(),
            acl: r.acl.clone(),
            flags: r.flags,
            ttl: r.ttl,
        },
        Request::Delete(r) => TxnOp::Delete { path: r.path.clone(), version: r.version },
        Request::SetData(r) => TxnOp::SetData { path: r.path.clone(), data: r.data.clone(), version: r.version },
        Request::SetAcl(r) => TxnOp::SetAcl { path: r.path.clone(), acl: r.acl.clone(), version: r.version },
        Request::Check(r) => TxnOp::Check { path: r.path.clone(), version: r.version },
        Request::Multi(m) => {
            // A multi ZooKeeper cannot even prepare (reads mixed in, TTL flags on a plain
            // create) fails whole with MARSHALLINGERROR, still taking a zxid.
            let ops: Result<Vec<TxnOp>, ErrorCode> = m.ops.iter().map(multi_op_to_txn).collect();
            ops.map(TxnOp::Multi).unwrap_or_else(TxnOp::Error)
        }
        Request::CloseSession => TxnOp::CloseSession,
        // Dynamic reconfig needs an ensemble; standalone refuses it as ZooKeeper does.
        Request::Reconfig(_) => TxnOp::Error(ErrorCode::ReconfigDisabled),
        _ => return None,
    })
}

/// The reply to an applied write.
pub fn write_reply(xid: i32, opcode: i32, applied: &Applied) -> Vec<u8> {
    let zxid = applied.zxid;
    match &applied.result {
        Err(e) => reply_frame(xid, zxid, e.code(), None),
        Ok(outcome) => match outcome {
            Outcome::Created { path, stat } => {
                if opcode == op::CREATE {
                    reply_frame(xid, zxid, 0, Some(&CreateResponse { path: path.clone() }))
                } else {
                    reply_frame(xid, zxid, 0, Some(&Create2Response { path: path.clone(), stat: stat.clone() }))
                }
            }
            Outcome::DataSet(stat) | Outcome::Checked(stat) => {
                reply_frame(xid, zxid, 0, Some(&SetDataResponse { stat: stat.clone() }))
            }
            Outcome::AclSet(stat) => reply_frame(xid, zxid, 0, Some(&SetAclResponse { stat: stat.clone() })),
            Outcome::Multi(results) => reply_frame(xid, zxid, 0, Some(&MultiResponse { results: results.clone() })),
            Outcome::Deleted | Outcome::SessionCreated | Outcome::SessionClosed => reply_frame(xid, zxid, 0, None),
            Outcome::Config { data, stat } => {
                reply_frame(xid, zxid, 0, Some(&GetDataResponse { data: Some(data.clone()), stat: stat.clone() }))
            }
        },
    }
}

/// Runs a read for a connection and frames its reply; `pre` holds notifications that must go
/// out before it (setWatches).
pub fn answer_read(core: &mut Core, conn: ConnId, session: i64, auth: &[Id], xid: i32, req: &Request) -> (Vec<Vec<u8>>, Vec<u8>) {
    let ctx = ReadCtx { conn, session, auth };
    let mut pre = Vec::new();
    let result = execute_read(core, &ctx, req, &mut pre);
    let zxid = core.tree.last_zxid();
    let reply_xid = if matches!(req, Request::Ping) { ferrozk_proto::codes::xid::PING } else { xid };
    let frame = match result {
        Ok(body) => reply_frame(reply_xid, zxid, 0, body.as_deref()),
        Err(e) => reply_frame(reply_xid, zxid, e.code(), None),
    };
    (pre, frame)
}

/// The connection a read runs for.
pub struct ReadCtx<'a> {
    pub conn: ConnId,
    pub session: i64,
    pub auth: &'a [Id],
}

type ReadResult = Result<Option<Box<dyn Encode>>, ErrorCode>;

fn boxed<T: Encode + 'static>(t: T) -> ReadResult {
    Ok(Some(Box::new(t)))
}

fn get_data(core: &mut Core, ctx: &ReadCtx, path: &str, watch: bool) -> Result<(Buffer, Stat), ErrorCode> {
    let node = core.tree.node(path).ok_or(ErrorCode::NoNode)?;
    acl::check(node.acl(), perms::READ, ctx.auth)?;
    let res = (node.data().map(<[u8]>::to_vec), node.stat());
    if watch {
        core.watches.add_data(path, ctx.conn);
    }
    Ok(res)
}

fn get_children(core: &mut Core, ctx: &ReadCtx, path: &str, watch: bool) -> Result<(Vec<String>, Stat), ErrorCode> {
    let node = core.tree.node(path).ok_or(ErrorCode::NoNode)?;
    acl::check(node.acl(), perms::READ, ctx.auth)?;
    let res = (node.child_names(), node.stat());
    if watch {
        core.watches.add_child(path, ctx.conn);
    }
    Ok(res)
}

/// Executes a read (or a session-local request) against the current tree. Notifications it
/// must send before its reply (setWatches) go to `pre`.
pub fn execute_read(core: &mut Core, ctx: &ReadCtx, req: &Request, pre: &mut Vec<Vec<u8>>) -> ReadResult {
    match req {
        Request::Exists(r) => {
            if r.path.contains('\0') {
                return Err(ErrorCode::BadArguments);
            }
            if let Some(node) = core.tree.node(&r.path) {
                acl::check(node.acl(), perms::READ, ctx.auth)?;
            }
            if r.watch {
                core.watches.add_data(&r.path, ctx.conn);
            }
            let node = core.tree.node(&r.path).ok_or(ErrorCode::NoNode)?;
            boxed(ExistsResponse { stat: node.stat() })
        }
        Request::GetData(r) => {
            let (data, stat) = get_data(core, ctx, &r.path, r.watch)?;
            boxed(GetDataResponse { data, stat })
        }
        Request::GetChildren(r) => {
            let (children, _) = get_children(core, ctx, &r.path, r.watch)?;
            boxed(GetChildrenResponse { children })
        }
        Request::GetChildren2(r) => {
            let (children, stat) = get_children(core, ctx, &r.path, r.watch)?;
            boxed(GetChildren2Response { children, stat })
        }
        Request::GetAcl(r) => {
            let node = core.tree.node(&r.path).ok_or(ErrorCode::NoNode)?;
            acl::check(node.acl(), perms::READ | perms::ADMIN, ctx.auth)?;
            let mut list = node.acl().as_ref().clone();
            // Without ADMIN, digest hashes are masked (CVE-2023-44981's sibling fix in 3.9).
            if acl::check(node.acl(), perms::ADMIN, ctx.auth).is_err() {
                for a in &mut list {
                    if a.id.scheme == "digest" {
                        let user = a.id.id.split(':').next().unwrap_or("").to_string();
                        a.id.id = format!("{user}:x");
                    }
                }
            }
            boxed(GetAclResponse { acl: list, stat: node.stat() })
        }
        Request::GetAllChildrenNumber(r) => {
            let node = core.tree.node(&r.path).ok_or(ErrorCode::NoNode)?;
            acl::check(node.acl(), perms::READ, ctx.auth)?;
            boxed(GetAllChildrenNumberResponse { total_number: core.tree.all_children_number(&r.path) as i32 })
        }
        Request::GetEphemerals(r) => {
            let prefix = r.prefix_path.trim();
            let all = core.tree.ephemerals(ctx.session);
            let ephemerals = if prefix.is_empty() || prefix == "/" {
                all
            } else {
                all.into_iter().filter(|p| p.starts_with(&r.prefix_path)).collect()
            };
            boxed(GetEphemeralsResponse { ephemerals })
        }
        Request::WhoAmI => {
            let client_info = acl::java_set_order(ctx.auth)
                .into_iter()
                .map(|id| ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    user: match id.scheme.as_str() {
                        "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                        _ => id.id.clone(),
                    },
                })
                .collect();
            boxed(WhoAmIResponse { client_info })
        }
        Request::Sync(r) => boxed(SyncResponse { path: r.path.clone() }),
        Request::Ping => Ok(None),
        Request::MultiRead(m) => {
            let mut results = Vec::with_capacity(m.ops.len());
            for o in &m.ops {
                let res = match o {
                    // ZooKeeper ignores the sub-ops' watch flags here.
                    MultiOp::GetData(r) => get_data(core, ctx, &r.path, false).map(|(d, s)| OpResult::GetData(d, s)),
                    MultiOp::GetChildren(r) => get_children(core, ctx, &r.path, false).map(|(c, _)| OpResult::GetChildren(c)),
                    _ => return Err(ErrorCode::MarshallingError),
                };
                results.push(res.unwrap_or_else(|e| OpResult::Error(e.code())));
            }
            boxed(MultiResponse { results })
        }
        Request::AddWatch(r) => {
            let recursive = match r.mode {
                add_watch_mode::PERSISTENT => false,
                add_watch_mode::PERSISTENT_RECURSIVE => true,
                _ => return Err(ErrorCode::MarshallingError),
            };
            core.watches.add_persistent(&r.path, ctx.conn, recursive);
            boxed(ErrorResponse { err: 0 })
        }
        Request::CheckWatches(r) => {
            if !valid_watcher_type(r.watch_type) {
                return Err(ErrorCode::MarshallingError);
            }
            if core.watches.contains(&r.path, ctx.conn, r.watch_type) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Request::RemoveWatches(r) => {
            if !valid_watcher_type(r.watch_type) {
                return Err(ErrorCode::MarshallingError);
            }
            if core.watches.remove(&r.path, ctx.conn, r.watch_type) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Request::SetWatches(w) => {
            set_watches(core, ctx, w, pre);
            Ok(None)
        }
        _ => Err(ErrorCode::Unimplemented),
    }
}

fn valid_watcher_type(t: i32) -> bool {
    (watcher_type::CHILDREN..=watcher_type::PERSISTENT_RECURSIVE).contains(&t)
}

/// Re-registers a reconnecting client's watches, firing at once those whose event it missed
/// since `relativeZxid` (`DataTree.setWatches`).
fn set_watches(core: &mut Core, ctx: &ReadCtx, w: &SetWatches2, pre: &mut Vec<Vec<u8>>) {
    use ferrozk_proto::codes::event;
    for p in &w.data_watches {
        match core.tree.node(p) {
            None => pre.push(notification_frame(-1, event::NODE_DELETED, p)),
            Some(n) if n.stat().mzxid > w.relative_zxid => pre.push(notification_frame(-1, event::NODE_DATA_CHANGED, p)),
            Some(_) => core.watches.add_data(p, ctx.conn),
        }
    }
    for p in &w.exist_watches {
        match core.tree.node(p) {
            Some(_) => pre.push(notification_frame(-1, event::NODE_CREATED, p)),
            None => core.watches.add_data(p, ctx.conn),
        }
    }
    for p in &w.child_watches {
        match core.tree.node(p) {
            None => pre.push(notification_frame(-1, event::NODE_DELETED, p)),
            Some(n) if n.stat().pzxid > w.relative_zxid => pre.push(notification_frame(-1, event::NODE_CHILDREN_CHANGED, p)),
            Some(_) => core.watches.add_child(p, ctx.conn),
        }
    }
    for p in &w.persistent_watches {
        core.watches.add_persistent(p, ctx.conn, false);
    }
    for p in &w.persistent_recursive_watches {
        core.watches.add_persistent(p, ctx.conn, true);
    }
}

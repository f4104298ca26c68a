//! `ferrozk snapshot` and `ferrozk log`: look inside the files a server keeps.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ferrozk_server::tools::{open_snapshot_for_tools, view_entry, EntryView};
use ferrozk_tree::TxnOp;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ferrozk: {msg}");
    ExitCode::FAILURE
}

pub fn snapshot(file: &Path, dump: bool) -> ExitCode {
    let (summary, tree) = match open_snapshot_for_tools(file) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "zxid: 0x{:x}", tree.last_zxid());
    let _ = writeln!(out, "{summary}");
    let _ = writeln!(out, "nodes: {}", tree.node_count());
    let _ = writeln!(out, "sessions: {}", tree.sessions().len());
    let _ = writeln!(out, "ephemerals: {}", tree.ephemeral_count());
    let _ = writeln!(out, "paths and data: {} bytes", tree.approximate_data_size());
    let _ = writeln!(out, "digest: {:016x}", tree.digest());
    if dump {
        for (id, s) in tree.sessions() {
            let _ = writeln!(out, "session 0x{id:x} timeout {} ms", s.timeout);
        }
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            let n = tree.node(&p).expect("listed");
            let st = n.stat();
            let _ = writeln!(
                out,
                "{p}\tczxid=0x{:x} mzxid=0x{:x} pzxid=0x{:x} version={} cversion={} aversion={} ephemeralOwner=0x{:x} dataLength={} numChildren={}",
                st.czxid, st.mzxid, st.pzxid, st.version, st.cversion, st.aversion, st.ephemeral_owner, st.data_length, st.num_children
            );
            for c in n.child_names().iter().rev() {
                stack.push(ferrozk_tree::path::join(&p, c));
            }
        }
    }
    ExitCode::SUCCESS
}

fn describe(op: &TxnOp) -> String {
    match op {
        TxnOp::CreateSession { timeout, .. } => format!("createSession timeout={timeout}"),
        TxnOp::CloseSession => "closeSession".into(),
        TxnOp::Create { opcode, path, data, flags, ttl, .. } => format!(
            "{} {path} flags={flags}{} dataLength={}",
            ferrozk_proto::codes::op::name(*opcode),
            if *ttl >= 0 { format!(" ttl={ttl}") } else { String::new() },
            data.as_ref().map_or(-1, |d| d.len() as i64)
        ),
        TxnOp::Delete { path, version } => format!("delete {path} version={version}"),
        TxnOp::SetData { path, data, version } => {
            format!("setData {path} version={version} dataLength={}", data.as_ref().map_or(-1, |d| d.len() as i64))
        }
        TxnOp::SetAcl { path, acl, version } => format!("setACL {path} version={version} acl={}", acl.len()),
        TxnOp::Check { path, version } => format!("check {path} version={version}"),
        TxnOp::Multi(ops) => format!("multi [{}]", ops.iter().map(describe).collect::<Vec<_>>().join("; ")),
        TxnOp::DeleteContainer { path } => format!("deleteContainer {path}"),
        TxnOp::Error(code) => format!("error {}", code.code()),
        TxnOp::SetConfig { servers } => format!("reconfig [{}]", servers.trim_end().replace('\n', "; ")),
    }
}

pub fn log(file: &Path) -> ExitCode {
    let records = match ferrozk_storage::read_file(file) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout().lock();
    for r in records {
        let _ = match view_entry(&r.payload) {
            Ok((leader, EntryView::Writes(writes))) => {
                let mut r2 = Ok(());
                for (zxid, t) in writes {
                    r2 = r2.and(match t {
                        Some(t) => writeln!(
                            out,
                            "zxid=0x{zxid:x} record={} term={} leader={leader} time={} session=0x{:x} {}",
                            r.index,
                            r.term,
                            t.time,
                            t.session,
                            describe(&t.op)
                        ),
                        None => writeln!(out, "zxid=0x{zxid:x} record={} term={} leader={leader} sync", r.index, r.term),
                    });
                }
                r2
            }
            Ok((leader, EntryView::Blank)) => {
                writeln!(out, "record={} term={} leader={leader} leader-start", r.index, r.term)
            }
            Ok((leader, EntryView::Membership(m))) => {
                writeln!(out, "record={} term={} leader={leader} members {m}", r.index, r.term)
            }
            Err(e) => writeln!(out, "record={} undecodable: {e}", r.index),
        };
    }
    ExitCode::SUCCESS
}

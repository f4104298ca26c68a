//! `ferrozk snapshot` and `ferrozk log`: look inside the files a server keeps; `ferrozk import`:
//! read Apache ZooKeeper's.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ferrozk_server::tools::{open_snapshot_for_tools, view_entry, EntryView};
use ferrozk_storage::zookeeper::Compression;
use ferrozk_tree::TxnOp;

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ferrozk: {msg}");
    ExitCode::FAILURE
}

/// A ZooKeeper file's compression, told by its name (`snapshot.<hex>[.gz|.snappy]`,
/// `log.<hex>`); `None` for any other name (ferrozk's own files).
fn zookeeper_file(file: &Path, kind: &str) -> Option<Compression> {
    let name = file.file_name()?.to_str()?;
    let mut parts = name.split('.');
    if parts.next()? != kind || i64::from_str_radix(parts.next()?, 16).is_err() {
        return None;
    }
    match (parts.next(), parts.next()) {
        (None, _) => Some(Compression::None),
        (Some("gz"), None) => Some(Compression::Gzip),
        (Some("snappy"), None) => Some(Compression::Snappy),
        _ => None,
    }
}

fn open_zookeeper_snapshot(file: &Path, compression: Compression) -> Result<(String, ferrozk_tree::DataTree), String> {
    let mut r = ferrozk_storage::zookeeper::open_snapshot(file, compression).map_err(|e| e.to_string())?;
    let config = ferrozk_tree::TreeConfig { ttl_enabled: true, ..Default::default() };
    let s = ferrozk_tree::DataTree::read_zookeeper_snapshot(&mut r, config).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut summary = format!("Apache ZooKeeper snapshot ({compression:?})");
    if s.acls.unresolved() > 0 {
        // A fuzzy snapshot: the log after it defines these nodes' ACLs (shown open here).
        summary += &format!("\nnodes whose ACL the log defines: {}", s.acls.unresolved());
    }
    if let Some((zxid, digest)) = s.digest {
        summary +=
            &format!("\nZooKeeper digest: {digest:x} at zxid 0x{zxid:x} (of the tree as read: {:x})", s.tree.zookeeper_digest());
    }
    Ok((summary, s.tree))
}

pub fn snapshot(file: &Path, dump: bool) -> ExitCode {
    let opened = match zookeeper_file(file, "snapshot") {
        Some(c) => open_zookeeper_snapshot(file, c),
        None => open_snapshot_for_tools(file),
    };
    let (summary, tree) = match opened {
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

/// `ferrozk log` on a ZooKeeper transaction log: one line a transaction.
fn zookeeper_log(file: &Path) -> ExitCode {
    let mut reader = match ferrozk_storage::zookeeper::TxnLogReader::open(file) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout().lock();
    loop {
        match reader.next_record() {
            Ok(Some((offset, entry))) => {
                let line = ferrozk_tree::DataTree::describe_zookeeper_txn(&entry)
                    .unwrap_or_else(|e| format!("offset {offset}: undecodable: {e}"));
                let _ = writeln!(out, "{line}");
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => return fail(e),
        }
    }
}

pub fn log(file: &Path) -> ExitCode {
    if zookeeper_file(file, "log") == Some(Compression::None) {
        return zookeeper_log(file);
    }
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

/// `ferrozk import`: reads ZooKeeper's data as the server would import it.
pub fn import(source: &Path, dry_run: bool, dump: bool) -> ExitCode {
    let config = if source.is_dir() {
        ferrozk_server::ServerConfig { data_dir: source.to_path_buf(), ..Default::default() }
    } else {
        match ferrozk_server::ServerConfig::from_file(source) {
            Ok(c) => c,
            Err(e) => return fail(e),
        }
    };
    let data_dir = config.data_dir.clone();
    let import = if dry_run {
        let log_dir = config.data_log_dir.clone().unwrap_or_else(|| data_dir.clone());
        ferrozk_server::zk_import::read_zookeeper(&data_dir, &log_dir, Default::default()).map_err(|e| e.to_string())
    } else {
        if !ferrozk_server::has_no_ferrozk_data(&config) {
            return fail(format!("{} already holds ferrozk's data: nothing imported", data_dir.display()));
        }
        let my_id = match ferrozk_server::resolve_my_id(&config) {
            Ok(id) => id,
            Err(e) => return fail(e),
        };
        ferrozk_server::zk_import::take_over(&config, my_id).map(|i| i.map(|(i, _)| i)).map_err(|e| e.to_string())
    };
    let import = match import {
        Ok(Some(i)) => i,
        Ok(None) => return fail(format!("no ZooKeeper snapshot or log under {}/version-2", data_dir.display())),
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout().lock();
    for (p, why) in &import.skipped_snapshots {
        let _ = writeln!(out, "skipped {}: {why}", p.display());
    }
    let _ = writeln!(out, "{}", import.summary());
    if dump {
        let tree = &import.tree;
        for (id, s) in tree.sessions() {
            let _ = writeln!(out, "{{\"session\":{id},\"timeout\":{}}}", s.timeout);
        }
        tree.walk(|p, n| {
            let st = n.stat();
            let hex: String = n.data().unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect();
            let acl: Vec<String> = n
                .acl()
                .iter()
                .map(|a| format!("[{},{},{}]", a.perms, json_string(&a.id.scheme), json_string(&a.id.id)))
                .collect();
            let _ = writeln!(
                out,
                "{{\"path\":{},\"data\":\"{hex}\",\"acl\":[{}],\"stat\":{{\"czxid\":{},\"mzxid\":{},\"ctime\":{},\"mtime\":{},\"version\":{},\"cversion\":{},\"aversion\":{},\"ephemeralOwner\":{},\"dataLength\":{},\"numChildren\":{},\"pzxid\":{}}}}}",
                json_string(p),
                acl.join(","),
                st.czxid,
                st.mzxid,
                st.ctime,
                st.mtime,
                st.version,
                st.cversion,
                st.aversion,
                st.ephemeral_owner,
                st.data_length,
                st.num_children,
                st.pzxid
            );
        });
    }
    ExitCode::SUCCESS
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ferrozk export --zookeeper DIR [zoo.cfg]`: ferrozk's data as an Apache ZooKeeper snapshot
/// in `DIR/version-2`, for a move back.
pub fn export_zookeeper(dir: &Path, config: Option<&Path>) -> ExitCode {
    let config = match config {
        Some(c) => ferrozk_server::ServerConfig::from_file(c),
        None => ferrozk_server::ServerConfig::parse(ferrozk_server::config::EMBEDDED_DEFAULT, "embedded default"),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (tree, last_entry) = match ferrozk_server::tools::tree_for_export(&config) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read ferrozk's data in {}: {e}", config.data_dir.display())),
    };
    let zxid = tree.last_zxid();
    let v2 = dir.join("version-2");
    if let Err(e) = std::fs::create_dir_all(&v2) {
        return fail(format!("{}: {e}", v2.display()));
    }
    // ZooKeeper replays its logs after the newest snapshot: none may hold a later zxid.
    if let Ok(files) = ferrozk_storage::zookeeper::ZkFiles::scan(dir, dir) {
        for log in &files.logs {
            let Ok(mut r) = ferrozk_storage::zookeeper::TxnLogReader::open(&log.path) else { continue };
            while let Ok(Some((_, entry))) = r.next_record() {
                // TxnHeader: clientId, cxid, then the zxid.
                let later = entry.get(12..20).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes"))).filter(|z| *z > zxid);
                if let Some(z) = later {
                    return fail(format!(
                        "{} holds zxid 0x{z:x}, after ferrozk's last (0x{zxid:x}): ZooKeeper would replay it over the export; move it away first",
                        log.path.display()
                    ));
                }
            }
        }
    }
    let path = v2.join(format!("snapshot.{zxid:x}"));
    let tmp = v2.join(format!(".snapshot.{zxid:x}.tmp"));
    let written = (|| -> std::io::Result<i64> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let digest = tree.write_zookeeper_snapshot(&mut w, zxid)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if !config.members.is_empty() {
            // A quorum member checks its epoch files against the snapshot's zxid.
            for name in ["currentEpoch", "acceptedEpoch"] {
                std::fs::write(v2.join(name), format!("{}", zxid >> 32))?;
            }
        }
        std::fs::File::open(&v2)?.sync_all()?;
        Ok(digest)
    })();
    match written {
        Ok(digest) => {
            println!(
                "wrote {}: {} znodes, {} sessions, zxid 0x{zxid:x}, digest {digest:x} (ferrozk's log ends at {last_entry})",
                path.display(),
                tree.node_count(),
                tree.sessions().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            fail(format!("cannot write {}: {e}", path.display()))
        }
    }
}

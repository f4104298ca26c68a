//! What the file tools (`ferrozk snapshot`, `ferrozk log`) read through consensus's formats,
//! without naming openraft: a log record's writes, a snapshot's summary and tree.

use super::*;

/// What one log record holds, for `ferrozk log`.
pub enum EntryView {
    /// The writes with their zxids (`None`: a sync barrier).
    Writes(Vec<(i64, Option<Txn>)>),
    Blank,
    Membership(String),
}

pub fn view_entry(payload: &[u8]) -> Result<(u64, EntryView), String> {
    let e = decode_entry(payload).map_err(|e| e.to_string())?;
    let leader = e.log_id.leader_id.node_id;
    Ok((
        leader,
        match e.payload {
            EntryPayload::Blank => EntryView::Blank,
            EntryPayload::Membership(m) => EntryView::Membership(describe_membership(&m)),
            EntryPayload::Normal(batch) => {
                let mut out = Vec::new();
                for (k, c) in batch.0.iter().enumerate() {
                    let txn = match &c.txn {
                        None => None,
                        Some(b) => Some(Txn::decode(&mut Reader::new(b)).map_err(|e| e.to_string())?),
                    };
                    out.push((zxid_of(e.log_id.index, k), txn));
                }
                EntryView::Writes(out)
            }
        },
    ))
}

/// Summary and tree of a snapshot file, for `ferrozk snapshot`.
pub fn open_snapshot_for_tools(path: &Path) -> Result<(String, DataTree), String> {
    let config = ServerConfig { extended_types_enabled: true, ..Default::default() };
    let (meta, tree) = read_snapshot_file(&config, path).map_err(|e| e.to_string())?;
    let last = meta
        .last_log_id
        .map_or("none".to_string(), |l| format!("index {} term {} leader {}", l.index, l.leader_id.term, l.leader_id.node_id));
    Ok((format!("last entry: {last}\nmembers: {}", describe_membership(meta.last_membership.membership())), tree))
}

/// The tree a data directory holds, for `ferrozk export`: the newest snapshot and every entry of
/// the log after it (what this member serves once elected; in an ensemble, export from the
/// member whose log ends with the highest term, then index). Also the log's last entry, as "index N term T".
pub fn tree_for_export(config: &ServerConfig) -> Result<(DataTree, String), RecoveryError> {
    let (mut recovered, mut files) = recover(config)?;
    for e in files.take_uncommitted() {
        recovered.replay(e)?;
    }
    let last = recovered.applied().map_or("none".to_string(), |l| format!("index {} term {}", l.index, l.leader_id.term));
    Ok((recovered.tree, last))
}

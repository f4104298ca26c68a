//! Taking over an Apache ZooKeeper data directory: the tree read from ZooKeeper's files
//! (`zk_import.rs`) becomes this member's first snapshot, as if the whole of ZooKeeper's
//! history were one purged stretch of ferrozk's log.
//!
//! The snapshot covers log entry `A` = ZooKeeper's last zxid (in term 1), so that
//! - every write ferrozk makes afterwards (entry `A + 1` on, zxid `(index + 1) << 16 | k`) is
//!   above every zxid ZooKeeper handed out;
//! - members of a ZooKeeper ensemble that stopped at different zxids compare as their data
//!   does: the most recent wins the election and brings the others up to date with its
//!   snapshot, and members that stopped at the same zxid, which hold the same history, hold the
//!   same log id. (A coarser entry, such as `zxid >> 16`, would give two different histories
//!   one committed log id, and consensus would take one for the other.)
//!
//! The vote is set to term 1, so the first election goes above it. ferrozk's zxids then fit in
//! 63 bits for ZooKeeper epochs up to 32767; a later last zxid is refused.
//!
//! Written in an order that never leaves a half-import behind: the purge point and the vote
//! first, the snapshot last (its rename is the commit point). An import cut short before it
//! leaves no ferrozk snapshot and no log, and is done again at the next start.

use super::*;
use crate::zk_import::ZkImport;

/// Whether the data directory holds none of ferrozk's data: no snapshot and no log segment.
pub fn has_no_ferrozk_data(config: &ServerConfig) -> bool {
    let (wal_dir, snap_dir) = crate::core::dirs(config);
    let has_segment = std::fs::read_dir(&wal_dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".wal")))
        .unwrap_or(false);
    snap::list(&snap_dir).is_empty() && !has_segment
}

/// The log entry an import of ZooKeeper's data up to `last_zxid` stands for; `None` when the
/// zxids ferrozk would continue with do not fit in 63 bits (past ZooKeeper's epoch 32767).
pub fn imported_entry(last_zxid: i64) -> Option<LogId<u64>> {
    let index = last_zxid.max(0) as u64;
    (index + 2 < 1 << 47).then(|| LogId::new(openraft::CommittedLeaderId::new(1, 0), index))
}

/// Writes ferrozk's data for the tree ZooKeeper's files held: the purge point, the vote and
/// the snapshot. Members are this configuration's voters.
pub fn adopt(config: &ServerConfig, my_id: u64, import: &ZkImport) -> Result<LogId<u64>, RecoveryError> {
    let log_id = imported_entry(import.last_zxid)
        .ok_or(RecoveryError::ZooKeeper(crate::zk_import::ImportError::ZxidTooHigh(import.last_zxid)))?;
    let raft_dir = config.data_dir.join("raft");
    let storage = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| RecoveryError::Storage(ferrozk_storage::StorageError::Io(path, e))
    };
    std::fs::create_dir_all(&raft_dir).map_err(storage(&raft_dir))?;
    let purged = bincode::serialize(&log_id).expect("a log id encodes");
    write_small(&raft_dir, "purged", &purged, true).map_err(storage(&raft_dir))?;
    let vote = bincode::serialize(&Vote::<u64>::new(1, 0)).expect("a vote encodes");
    write_small(&raft_dir, "vote", &vote, true).map_err(storage(&raft_dir))?;
    let _ = std::fs::remove_file(raft_dir.join("committed"));
    let (voters, _) = initial_members(config, my_id);
    let membership = Membership::new(vec![voters.keys().copied().collect()], voters);
    let meta = Meta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("zookeeper-0x{:x}", import.last_zxid),
    };
    let header = bincode::serialize(&meta).map_err(|e| RecoveryError::Thread(io::Error::other(e)))?;
    let (_, snap_dir) = crate::core::dirs(config);
    snap::write(&snap_dir, log_id.index + 1, |w| {
        w.write_all(&(header.len() as u32).to_be_bytes())?;
        w.write_all(&header)?;
        import.tree.write_snapshot(w)
    })
    .map_err(storage(&snap_dir))?;
    Ok(log_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_entries_order_as_zookeepers_zxids_and_leave_room_for_every_later_zxid() {
        let zxids = [0i64, 1, 0xffff, 0x1_0000, 0x5_0000_0003, 0x5_0000_0004, 0x6_0000_0000, 0x7ffe_ffff_ffff];
        for pair in zxids.windows(2) {
            assert!(imported_entry(pair[0]) < imported_entry(pair[1]), "{pair:x?}");
        }
        for z in zxids {
            let e = imported_entry(z).expect("room");
            // The first write after the import, in the entry that follows.
            assert!(zxid_of(e.index + 1, 0) > z, "0x{z:x}");
            assert!(zxid_of(e.index + 1, 0xffff) > 0, "0x{z:x}");
        }
        assert!(imported_entry(0x7fff_ffff_fffd).is_some());
        assert_eq!(imported_entry(0x7fff_ffff_fffe), None);
        assert_eq!(imported_entry(0x1234_0000_0000_0000), None);
    }
}

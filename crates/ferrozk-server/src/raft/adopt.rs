//! Taking over an Apache ZooKeeper data directory: the tree read from ZooKeeper's files
//! (`zk_import.rs`) becomes this member's first snapshot, as if the whole of ZooKeeper's
//! history were one purged stretch of ferrozk's log.
//!
//! The snapshot covers log entry `A` = ZooKeeper's last zxid, in term [`IMPORT_TERM`], so that
//! - every write ferrozk makes afterwards (entry `A + 1` on, zxid `(index + 1) << 16 | k`) is
//!   above every zxid ZooKeeper handed out;
//! - members of a ZooKeeper ensemble that stopped at different zxids compare as their data
//!   does, and members that stopped at the same zxid, which hold the same history, hold the
//!   same log id. (A coarser entry, such as `zxid >> 16`, would give two different histories
//!   one log id.)
//!
//! The vote is set to that term, so the first election goes above it, and a new ensemble that
//! members without data might form meanwhile (terms from 1) cannot outrank it.
//!
//! Consensus takes a snapshot as committed. ZooKeeper does not: a member may have logged
//! proposals that were never committed, and ZooKeeper's leader truncates them (`TRUNC`). Here
//! the members with less data may elect one of theirs; a member still at its import whose
//! leader's log does not hold it (the leader's replication starts at or below the import's
//! entry, elsewhere) sets its data aside and restarts without it, to receive the leader's
//! snapshot ([`check_import_against`]). This is ZooKeeper's truncation, done whole.
//!
//! Written in an order that never leaves a half-import behind: the purge point, the vote and the
//! import marker first, the snapshot last (its rename is the commit point). An import cut short
//! before it leaves no ferrozk snapshot and no log, and is done again at the next start.

use super::*;
use crate::zk_import::ZkImport;

/// The term of an imported snapshot's log id: above any a new ensemble reaches by itself.
pub const IMPORT_TERM: u64 = 1 << 32;

/// `raft/` files: the imported entry (while the member may still be at it), and the mark left
/// when an import was set aside (the next start must not import again).
const IMPORTED: &str = "imported";
const SET_ASIDE: &str = "import-set-aside";

/// Whether the data directory holds none of ferrozk's data: no snapshot, no log segment, and
/// no import set aside.
pub fn has_no_ferrozk_data(config: &ServerConfig) -> bool {
    let (wal_dir, snap_dir) = crate::core::dirs(config);
    let has_segment = std::fs::read_dir(&wal_dir)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".wal")))
        .unwrap_or(false);
    snap::list(&snap_dir).is_empty() && !has_segment && !config.data_dir.join("raft").join(SET_ASIDE).exists()
}

/// Removes what an import cut short before its snapshot left in `raft/`, so that a start
/// without anything to import is a new member's.
pub fn clear_unfinished_import(config: &ServerConfig) {
    let raft_dir = config.data_dir.join("raft");
    for name in ["purged", "vote", "committed", IMPORTED] {
        let _ = std::fs::remove_file(raft_dir.join(name));
    }
}

/// The log entry an import of ZooKeeper's data up to `last_zxid` stands for; `None` when the
/// zxids ferrozk would continue with leave less than 2^32 entries of room in 63 bits (past
/// ZooKeeper's epoch 32766).
pub fn imported_entry(last_zxid: i64) -> Option<LogId<u64>> {
    let index = last_zxid.max(0) as u64;
    (index + (1 << 32) < 1 << 47).then(|| LogId::new(openraft::CommittedLeaderId::new(IMPORT_TERM, 0), index))
}

/// The imported entry, if this member's data came from ZooKeeper.
pub(super) fn imported(config: &ServerConfig) -> Option<LogId<u64>> {
    read_small(&config.data_dir.join("raft"), IMPORTED).ok().flatten()
}

/// Whether a leader's replication (its vote, and the entry its AppendEntries follows or its
/// snapshot ends at) shows that it does not hold this member's import, while this member is
/// still at it: then ZooKeeper's leader would truncate what this member has beyond the leader.
pub(super) fn leader_lacks_import(raft: &Raft, imported: LogId<u64>, leader_vote: &Vote<u64>, from: Option<LogId<u64>>) -> bool {
    let m = raft.metrics();
    let m = m.borrow();
    let still_at_import = m.last_log_index == Some(imported.index) && m.last_applied == Some(imported);
    // Only a leader elected after the import (a term above it) speaks for the ensemble.
    still_at_import
        && leader_vote.leader_id().get_term() > imported.leader_id.term
        && from.map_or(true, |f| f.index <= imported.index && f != imported)
}

/// Sets this member's ferrozk data aside (ZooKeeper's files stay), marks it so that the next
/// start does not import again, and restarts the process: it comes back as a member without
/// data and receives the leader's snapshot.
pub(super) fn set_import_aside_and_restart(config: &ServerConfig, imported: LogId<u64>) -> ! {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let aside = config.data_dir.join(format!("ferrozk-import-set-aside-{secs}"));
    tracing::error!(
        "the elected leader does not hold this member's import of ZooKeeper's data (up to zxid 0x{:x}): \
         this member had ZooKeeper transactions the others never committed. As ZooKeeper's leader \
         would truncate them, this member's data moves to {} and it restarts without it, to \
         receive the leader's snapshot",
        imported.index,
        aside.display()
    );
    let (wal_dir, snap_dir) = crate::core::dirs(config);
    let raft_dir = config.data_dir.join("raft");
    let moved = (|| -> io::Result<()> {
        std::fs::create_dir_all(&aside)?;
        for (dir, name) in [(&snap_dir, "snapshots"), (&wal_dir, "wal"), (&raft_dir, "raft")] {
            if dir.exists() {
                std::fs::rename(dir, aside.join(name))?;
            }
        }
        std::fs::create_dir_all(&raft_dir)?;
        write_small(&raft_dir, SET_ASIDE, aside.to_string_lossy().as_bytes(), true)
    })();
    if let Err(e) = moved {
        tracing::error!("cannot set the data aside ({e}); stopping");
        std::process::exit(1);
    }
    restart_process()
}

/// Runs this program again with the same arguments, in this process (same pid).
fn restart_process() -> ! {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok();
    // Only the ferrozk binary restarts itself; anything embedding the server stops.
    if let Some(exe) = exe.filter(|e| e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ferrozk"))) {
        let err = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
        tracing::error!("cannot restart {}: {err}", exe.display());
    }
    std::process::exit(75)
}

/// The snapshot an import wrote, for the start that follows to use without reading it back.
pub struct Adopted {
    meta: Meta,
    path: PathBuf,
}

impl Adopted {
    /// The log entry ferrozk's log continues at.
    pub fn next_entry(&self) -> u64 {
        self.meta.last_log_id.map_or(0, |l| l.index + 1)
    }

    /// What recovery would have read from the snapshot, with `tree` (the imported one).
    pub(super) fn recovered(self, tree: DataTree) -> Recovered {
        Recovered::from_snapshot(tree, self.meta, self.path)
    }
}

/// Writes ferrozk's data for the tree ZooKeeper's files held: the purge point, the vote and
/// the snapshot. Members are this configuration's voters.
pub fn adopt(config: &ServerConfig, my_id: u64, import: &ZkImport) -> Result<Adopted, RecoveryError> {
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
    let vote = bincode::serialize(&Vote::<u64>::new(IMPORT_TERM, 0)).expect("a vote encodes");
    write_small(&raft_dir, "vote", &vote, true).map_err(storage(&raft_dir))?;
    write_small(&raft_dir, IMPORTED, &purged, true).map_err(storage(&raft_dir))?;
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
    let path = snap::write(&snap_dir, log_id.index + 1, |w| {
        w.write_all(&(header.len() as u32).to_be_bytes())?;
        w.write_all(&header)?;
        import.tree.write_snapshot(w)
    })
    .map_err(storage(&snap_dir))?;
    Ok(Adopted { meta, path })
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
        assert!(imported_entry(0x7ffe_ffff_ffff).is_some());
        assert_eq!(imported_entry(0x7fff_0000_0000), None);
        assert_eq!(imported_entry(0x1234_0000_0000_0000), None);
    }
}

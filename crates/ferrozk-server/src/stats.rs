//! Statistics for the four-letter words and mntr: request and reply counts and latencies, per
//! server and per connection, and the leader's view of its followers.

use std::time::Instant;

use crate::core::{wall_ms, ConnId, Core, Shared};

#[derive(Default, Clone, Copy)]
pub struct Latency {
    pub min: u64,
    pub max: u64,
    pub total: u64,
    pub count: u64,
}

impl Latency {
    pub fn record(&mut self, ms: u64) {
        if self.count == 0 || ms < self.min {
            self.min = ms;
        }
        self.max = self.max.max(ms);
        self.total += ms;
        self.count += 1;
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total as f64 / self.count as f64
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub latency: Latency,
}

/// Limits hit, for mntr: counted where they are hit, outside the core lock.
#[derive(Default)]
pub struct LimitCounters {
    /// Times a connection stopped reading requests (its output unread, or more than its share
    /// of `globalOutstandingLimit`): ZooKeeper's `request_throttle_wait_count`.
    pub throttle_waits: std::sync::atomic::AtomicU64,
    /// Connections refused by `maxClientCnxns` or `maxCnxns`: ZooKeeper's `connection_rejected`.
    pub connection_rejected: std::sync::atomic::AtomicU64,
    /// Connections closed because their client did not read (`maxClientOutputBytes`).
    pub slow_consumers_closed: std::sync::atomic::AtomicU64,
    /// Frames over `jute.maxbuffer`, each closing its connection.
    pub oversized_frames: std::sync::atomic::AtomicU64,
    pub rejected_warning: RateLimitedWarning,
    pub oversized_warning: RateLimitedWarning,
}

/// A warning said at most once a second: a client looping on a limit must not flood the log.
/// The count says how many hits the second held.
#[derive(Default)]
pub struct RateLimitedWarning {
    /// The second (since the server started) of the last warning, plus one (0: never).
    last_second: std::sync::atomic::AtomicU64,
    hits: std::sync::atomic::AtomicU64,
}

impl RateLimitedWarning {
    /// Counts a hit; `Some(hits since the last warning)` when a warning is due now.
    pub fn hit(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let hits = self.hits.fetch_add(1, Relaxed) + 1;
        let second = now_ms / 1000 + 1;
        let last = self.last_second.load(Relaxed);
        if last != second && self.last_second.compare_exchange(last, second, Relaxed, Relaxed).is_ok() {
            self.hits.fetch_sub(hits, Relaxed);
            return Some(hits);
        }
        None
    }
}

/// The leader's view of its members, for mntr (kept current by the consensus module).
#[derive(Default, Clone, Copy)]
pub struct EnsembleStats {
    pub voters: usize,
    /// Other members this leader replicates to (voters and observers).
    pub followers: usize,
    /// Of those, the voters caught up with it,
    pub synced: usize,
    /// the observers,
    pub synced_observers: usize,
    /// and the members outside the config that still follow (ZooKeeper's non-voting followers).
    pub synced_non_voting: usize,
}

impl Core {
    /// Counts a reply for `srvr`/`cons`/`mntr`.
    pub fn count_reply(&mut self, conn: ConnId, at: Option<Instant>, opcode: i32, xid: i32) {
        self.stats.sent += 1;
        let zxid = self.tree.last_zxid();
        let ms = at.map(|a| a.elapsed().as_millis() as u64);
        if let Some(ms) = ms {
            self.stats.latency.record(ms);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.sent += 1;
            c.last_zxid = zxid;
            c.last_op = ferrozk_proto::codes::op::name(opcode);
            if xid >= 0 {
                c.last_cxid = xid;
            }
            if let Some(ms) = ms {
                c.latency.record(ms);
                c.last_latency = ms;
                c.last_response = wall_ms();
            }
        }
    }
}

impl Shared {
    /// The ensemble's replication as mntr shows it, read from consensus when asked.
    pub fn ensemble_stats(&self) -> EnsembleStats {
        self.ensemble_stats.get().map_or_else(EnsembleStats::default, |stats| stats())
    }

    pub fn set_ensemble_stats_source(&self, stats: Box<dyn Fn() -> EnsembleStats + Send + Sync>) {
        let _ = self.ensemble_stats.set(stats);
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use super::RateLimitedWarning;

    #[test]
    fn a_warning_is_said_once_a_second_with_the_hits_it_stood_for() {
        let w = RateLimitedWarning::default();
        assert_eq!(w.hit(10), Some(1), "the first hit is told");
        assert_eq!(w.hit(20), None);
        assert_eq!(w.hit(999), None);
        assert_eq!(w.hit(1000), Some(3), "the next second tells the two held back and itself");
        assert_eq!(w.hit(1500), None);
        assert_eq!(w.hit(5000), Some(2));
    }
}

//! Four-letter words on the client port, with Apache ZooKeeper's output formats.

use std::fmt::Write;

use crate::core::Shared;

/// The ZooKeeper release whose protocol and features ferrozk provides; clients such as kazoo
/// read it from `envi` and switch features on it.
pub const ZK_COMPAT_VERSION: &str = "3.9.5";

pub fn version_line() -> String {
    format!("{ZK_COMPAT_VERSION}-ferrozk-{}, built on 1970-01-01 00:00 UTC", env!("CARGO_PKG_VERSION"))
}

const WORDS: &[&str] = &[
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat", "wchc", "wchp", "wchs",
    "mntr", "isro", "hash",
];

/// The four-letter word these first four bytes spell, if any.
pub fn recognise(first4: &[u8]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == first4)
}

fn hex_session(id: i64) -> String {
    format!("0x{:x}", id)
}

/// This server's role as ZooKeeper names it.
pub fn mode(shared: &Shared) -> &'static str {
    if !shared.ensemble {
        "standalone"
    } else if shared.read_only() {
        "read-only"
    } else if shared.is_leader() {
        "leader"
    } else if shared.config.members.iter().any(|m| m.id == shared.my_id && m.observer) {
        "observer"
    } else {
        "follower"
    }
}

pub fn run(shared: &Shared, word: &str) -> String {
    if !shared.config.four_letter_allowed(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    // ZooKeeper's words that need a running server say so when there is none (a member
    // without a quorum, unless it serves read-only).
    const NEED_SERVER: &[&str] =
        &["srvr", "stat", "cons", "conf", "mntr", "crst", "srst", "wchs", "wchc", "wchp", "dump", "dirs", "hash"];
    if !shared.serving() && !shared.read_only() && NEED_SERVER.contains(&word) {
        return "This ZooKeeper instance is not currently serving requests\n".into();
    }
    match word {
        "ruok" => "imok".into(),
        "isro" => if shared.read_only() { "ro" } else { "rw" }.into(),
        "srvr" => server_stats(shared, false),
        "stat" => server_stats(shared, true),
        "cons" => connections(shared),
        "conf" => conf(shared),
        "envi" => envi(shared),
        "mntr" => mntr(shared),
        "crst" => {
            for c in shared.lock().conns.values_mut() {
                c.latency = Default::default();
                c.received = 0;
                c.sent = 0;
            }
            "Connection stats reset.\n".into()
        }
        "srst" => {
            let mut core = shared.lock();
            core.stats.latency = Default::default();
            core.stats.received = 0;
            core.stats.sent = 0;
            "Server stats reset.\n".into()
        }
        "wchs" => {
            let core = shared.lock();
            format!(
                "{} connections watching {} paths\nTotal watches:{}\n",
                core.watches.watcher_count(),
                core.watches.path_count(),
                core.watches.count()
            )
        }
        // ZooKeeper lists recent "zxid in hex: digest" lines; ferrozk gives the current one,
        // equal on members that applied the same log.
        "hash" => {
            let core = shared.lock();
            format!("{:x}: {}\n", core.tree.last_zxid(), core.tree.digest())
        }
        "wchc" => {
            let core = shared.lock();
            let mut s = String::new();
            for (conn, paths) in core.watches.by_watcher() {
                let session = core.conns.get(&conn).map_or(0, |c| c.session);
                let _ = writeln!(s, "{}", hex_session(session));
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            s.push('\n');
            s
        }
        "wchp" => {
            let core = shared.lock();
            let mut s = String::new();
            for (path, conns) in core.watches.by_path() {
                let _ = writeln!(s, "{path}");
                for c in conns {
                    let session = core.conns.get(&c).map_or(0, |c| c.session);
                    let _ = writeln!(s, "\t{}", hex_session(session));
                }
            }
            s.push('\n');
            s
        }
        "dump" => {
            let core = shared.lock();
            let mut s = String::from("SessionTracker dump:\n");
            let _ = writeln!(s, "Session Sets ({})/({}):", core.sessions.len(), core.sessions.len());
            let mut ids: Vec<_> = core.sessions.iter().collect();
            ids.sort_by_key(|(id, _)| **id);
            for (id, t) in ids {
                let _ = writeln!(s, "\t{} (timeout {} ms)", hex_session(*id), t.timeout);
            }
            let eph = core.tree.all_ephemerals();
            s.push_str("ephemeral nodes dump:\n");
            let _ = writeln!(s, "Sessions with Ephemerals ({}):", eph.len());
            let mut owners: Vec<_> = eph.iter().collect();
            owners.sort_by_key(|(id, _)| **id);
            for (id, paths) in owners {
                let _ = writeln!(s, "{}:", hex_session(*id));
                for p in paths {
                    let _ = writeln!(s, "\t{p}");
                }
            }
            s.push_str("Connections dump:\n");
            let _ = writeln!(s, "Connections Sets ({})/({}):", core.conns.len(), core.conns.len());
            for c in core.conns.values() {
                let _ = writeln!(s, "\tip: /{} sessionId: {}", c.peer, hex_session(c.session));
            }
            s
        }
        "dirs" => {
            let size = dir_size(&shared.config.data_dir);
            let log = shared.config.data_log_dir.as_ref().map_or(size, |d| dir_size(d));
            format!("datadir_size: {size}\nlogdir_size: {log}\n")
        }
        "gtmk" => "0".into(),
        "stmk" => String::new(),
        _ => String::new(),
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

fn connections(shared: &Shared) -> String {
    let core = shared.lock();
    let mut s = String::new();
    let mut conns: Vec<_> = core.conns.iter().collect();
    conns.sort_by_key(|(id, _)| **id);
    for (_, c) in conns {
        let _ = writeln!(
            s,
            " /{}[1](queued=0,recved={},sent={},sid={},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={})",
            c.peer,
            c.received,
            c.sent,
            hex_session(c.session),
            short_op(c.last_op),
            c.established.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            core.sessions.get(&c.session).map_or(0, |t| t.timeout),
            c.last_cxid,
            c.last_zxid,
            c.last_response,
            c.last_latency,
            c.latency.min,
            c.latency.avg() as u64,
            c.latency.max,
        );
    }
    s.push('\n');
    s
}

fn short_op(name: &str) -> &'static str {
    match name {
        "create" | "create2" | "createContainer" | "createTtl" => "CREA",
        "delete" => "DELE",
        "exists" => "EXIS",
        "getData" => "GETD",
        "setData" => "SETD",
        "getACL" => "GETA",
        "setACL" => "SETA",
        "getChildren" | "getChildren2" => "GETC",
        "sync" => "SYNC",
        "ping" => "PING",
        "multi" => "MULT",
        "closeSession" => "CLOS",
        _ => "NA",
    }
}

fn server_stats(shared: &Shared, with_clients: bool) -> String {
    let mut s = format!("Zookeeper version: {}\n", version_line());
    if with_clients {
        s.push_str("Clients:\n");
        let core = shared.lock();
        let mut conns: Vec<_> = core.conns.values().collect();
        conns.sort_by_key(|c| c.peer);
        for c in conns {
            let _ = writeln!(s, " /{}[1](queued=0,recved={},sent={})", c.peer, c.received, c.sent);
        }
        s.push('\n');
    }
    let core = shared.lock();
    let l = core.stats.latency;
    let _ = writeln!(s, "Latency min/avg/max: {}/{:.1}/{}", l.min, l.avg(), l.max);
    let _ = writeln!(s, "Received: {}", core.stats.received);
    let _ = writeln!(s, "Sent: {}", core.stats.sent);
    let _ = writeln!(s, "Connections: {}", core.conns.len());
    let _ = writeln!(s, "Outstanding: {}", shared.global_in_flight.load(std::sync::atomic::Ordering::Relaxed));
    let _ = writeln!(s, "Zxid: 0x{:x}", core.tree.last_zxid());
    let _ = writeln!(s, "Mode: {}", mode(shared));
    // ZooKeeper's count includes the root twice ("" and "/" are both keys of its map).
    let _ = writeln!(s, "Node count: {}", core.tree.node_count() + 1);
    s
}

fn conf(shared: &Shared) -> String {
    let c = &shared.config;
    let log_dir = c.data_log_dir.as_ref().unwrap_or(&c.data_dir);
    let mut out = format!(
        "clientPort={}\nsecureClientPort=-1\ndataDir={}\ndataDirSize={}\ndataLogDir={}\ndataLogSize={}\n\
         tickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nclientPortListenBacklog=-1\nserverId={}\n",
        shared.bound.port(),
        c.data_dir.display(),
        dir_size(&c.data_dir),
        log_dir.display(),
        dir_size(log_dir),
        c.tick_time,
        c.max_client_cnxns,
        c.min_timeout(),
        c.max_timeout(),
        if shared.ensemble { shared.my_id } else { 0 },
    );
    // A member adds its ports and the membership, as /zookeeper/config holds it (ZooKeeper's
    // text ends there, without a newline).
    if let Some(me) = c.members.iter().find(|m| m.id == shared.my_id) {
        let membership = shared.lock().tree.node("/zookeeper/config").and_then(|n| n.data()).unwrap_or_default().to_vec();
        out.push_str(&format!(
            "electionAlg=3\nelectionPort={}\nquorumPort={}\npeerType={}\nmembership: \n{}",
            me.election_port,
            me.quorum_port,
            u8::from(me.observer),
            String::from_utf8_lossy(&membership)
        ));
    }
    out
}

fn envi(_shared: &Shared) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    format!(
        "Environment:\nzookeeper.version={}\nhost.name={}\nferrozk.version={}\nos.name={}\nos.arch={}\nuser.dir={}\n",
        version_line(),
        host.trim(),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        cwd,
    )
}

fn counted(c: &std::sync::atomic::AtomicU64) -> String {
    c.load(std::sync::atomic::Ordering::Relaxed).to_string()
}

fn mntr(shared: &Shared) -> String {
    let core = shared.lock();
    let l = core.stats.latency;
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", version_line()),
        ("zk_server_state", mode(shared).into()),
        ("zk_ephemerals_count", core.tree.ephemeral_count().to_string()),
        ("zk_num_alive_connections", core.conns.len().to_string()),
        ("zk_avg_latency", format!("{:.1}", l.avg())),
        ("zk_outstanding_requests", shared.global_in_flight.load(std::sync::atomic::Ordering::Relaxed).to_string()),
        ("zk_znode_count", (core.tree.node_count() + 1).to_string()),
        ("zk_global_sessions", core.sessions.len().to_string()),
        ("zk_packets_sent", core.stats.sent.to_string()),
        ("zk_packets_received", core.stats.received.to_string()),
        ("zk_watch_count", core.watches.count().to_string()),
        ("zk_min_latency", l.min.to_string()),
        ("zk_max_latency", l.max.to_string()),
        ("zk_approximate_data_size", core.tree.approximate_data_size().to_string()),
        ("zk_uptime", shared.now().to_string()),
        ("zk_local_sessions", core.sessions.values().filter(|t| t.local).count().to_string()),
        // Limits hit (outbox.rs): ZooKeeper's names where it has the same count.
        ("zk_request_throttle_wait_count", counted(&shared.limits.throttle_waits)),
        ("zk_connection_rejected", counted(&shared.limits.connection_rejected)),
        ("zk_slow_consumer_connections_closed", counted(&shared.limits.slow_consumers_closed)),
        ("zk_large_requests_rejected", counted(&shared.limits.oversized_frames)),
    ];
    let mut rows = rows;
    if shared.ensemble {
        let e = shared.ensemble_stats();
        rows.push(("zk_quorum_size", e.voters.to_string()));
        rows.push((
            "zk_peer_state",
            if shared.is_leader() {
                "leading - broadcast"
            } else if shared.serving() {
                "following - broadcast"
            } else {
                "looking"
            }
            .into(),
        ));
        if shared.is_leader() {
            // As ZooKeeper counts them: members that follow (voters and observers), those caught
            // up with this leader, and syncs waiting to be applied.
            rows.push(("zk_learners", e.followers.to_string()));
            rows.push(("zk_followers", e.followers.to_string()));
            rows.push(("zk_synced_followers", e.synced.to_string()));
            rows.push(("zk_synced_non_voting_followers", e.synced_non_voting.to_string()));
            rows.push(("zk_synced_observers", e.synced_observers.to_string()));
            rows.push(("zk_pending_syncs", core.pending_syncs().to_string()));
        }
    }
    let mut s = String::new();
    for (k, v) in rows {
        let _ = writeln!(s, "{k}\t{v}");
    }
    s
}

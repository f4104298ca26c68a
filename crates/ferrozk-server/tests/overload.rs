//! Overload: limits that keep one bad client from harming the others (outbox.rs). Correctness
//! only; how well the server holds up under a flood is measured in bench/overload.py.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use ferrozk_proto::codes::op;
use ferrozk_proto::*;

fn mntr_value(addr: std::net::SocketAddr, key: &str) -> u64 {
    let text = four_letter(addr, "mntr");
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{key} not in mntr:\n{text}"))
}

/// A client that stops reading while its persistent watch keeps firing is closed once its
/// unsent output passes `maxClientOutputBytes`; its session is kept for a reconnect, and
/// other clients are served throughout.
#[test]
fn a_client_that_stops_reading_is_closed_and_keeps_its_session() {
    let s = TestServer::start(|mut b| {
        b.config_mut().max_client_output_bytes = Some(64 * 1024);
        // The slow client sends nothing, pings neither: its session must outlast the test.
        b.config_mut().max_session_timeout = Some(60_000);
        b
    });
    let mut writer = Client::connect(s.addr);
    writer.create("/w", b"", 0).unwrap();
    let mut slow = Client::connect(s.addr);
    let (h, _) = slow.call(&Request::AddWatch(AddWatchRequest { path: "/w".into(), mode: 1 }));
    assert_eq!(h.err, 0);
    // From here on `slow` reads nothing. Each create under /w queues a ~500-byte notification
    // for it: 20,000 of them are far more than the socket buffers and the limit hold.
    let name = "n".repeat(480);
    let mut pending = Vec::new();
    for i in 0..20_000 {
        let req = CreateRequest { path: format!("/w/{name}{i}"), data: Some(Vec::new()), acl: open_acl(), flags: 0 };
        pending.push(writer.send(&Request::Create(op::CREATE, req)));
        if pending.len() == 200 {
            for x in pending.drain(..) {
                assert_eq!(writer.wait(x).0.err, 0, "the writer is served while the slow client is not reading");
            }
        }
    }
    for x in pending.drain(..) {
        assert_eq!(writer.wait(x).0.err, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while mntr_value(s.addr, "zk_slow_consumer_connections_closed") == 0 {
        assert!(Instant::now() < deadline, "the connection that does not read was never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever the kernel buffered reaches the client, then the end of the stream.
    assert!(is_closed(&mut slow.stream, Duration::from_secs(10)), "the server closed that connection");
    // The session outlived its connection: the client reconnects into it.
    let back = Client::connect_with(s.addr, slow.session, slow.passwd.clone(), 30000, 0);
    assert_eq!(back.map(|c| c.session), Some(slow.session), "the session survives for a reconnect");
    assert_eq!(writer.call(&Request::Exists(ExistsRequest { path: "/w".into(), watch: false })).0.err, 0);
}

/// A frame over `jute.maxbuffer` closes its own connection and no other.
#[test]
fn an_oversized_request_closes_only_its_own_connection() {
    let s = TestServer::start(|b| b.jute_max_buffer(64 * 1024));
    let mut bystander = Client::connect(s.addr);
    let mut big = Client::connect(s.addr);
    let req = SetDataRequest { path: "/".into(), data: Some(vec![1; 100 * 1024]), version: -1 };
    let mut body = Vec::new();
    RequestHeader { xid: 1, op: op::SET_DATA }.encode(&mut body);
    req.encode(&mut body);
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_raw(&mut big.stream, &body)));
    assert!(is_closed(&mut big.stream, Duration::from_secs(10)), "the oversized request's connection is closed");
    let (h, _) = bystander.call(&Request::Exists(ExistsRequest { path: "/".into(), watch: false }));
    assert_eq!(h.err, 0, "another session is served as before");
    assert_eq!(mntr_value(s.addr, "zk_large_requests_rejected"), 1);
}

/// `maxCnxns` caps the server's client connections, `maxClientCnxns` those of one address;
/// refusals are counted.
#[test]
fn connection_limits_from_the_config_are_honoured() {
    let config = ferrozk_server::ServerConfig::parse(
        "dataDir=/tmp/x\nclientPort=2181\nmaxCnxns=3\nmaxClientCnxns=10\nglobalOutstandingLimit=50\nmaxClientOutputBytes=123456\n",
        "zoo.cfg",
    )
    .unwrap();
    assert_eq!((config.max_cnxns, config.max_client_cnxns, config.global_outstanding_limit), (3, 10, 50));
    assert_eq!(config.client_output_limit(), 123456);
    assert!(config.unused_keys.is_empty(), "{:?}", config.unused_keys);
    let zero = ferrozk_server::ServerConfig::parse("dataDir=/tmp/x\nclientPort=2181\nmaxClientOutputBytes=0\n", "zoo.cfg");
    assert!(zero.unwrap_err().to_string().contains("maxClientOutputBytes"));

    let s = TestServer::start(|mut b| {
        b.config_mut().max_cnxns = 3;
        b
    });
    // The mntr connections below come and go; three sessions fill the server.
    let held: Vec<Client> = (0..3).map(|_| Client::connect(s.addr)).collect();
    let mut fourth = std::net::TcpStream::connect(s.addr).unwrap();
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout: 30000,
        session_id: 0,
        passwd: Some(vec![0; 16]),
        read_only: Some(false),
    };
    let _ = fourth.write_all(&{
        let mut out = Vec::new();
        ferrozk_proto::frame::write_frame(&mut out, |b| req.encode(b));
        out
    });
    assert!(is_closed(&mut fourth, Duration::from_secs(10)), "a connection over maxCnxns is refused");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The held connections' ends reach the server a moment after they close.
    while !four_letter(s.addr, "mntr").contains("zk_connection_rejected") {
        assert!(Instant::now() < deadline, "mntr never answered once the connections were released");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(mntr_value(s.addr, "zk_connection_rejected") >= 1);
}

fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kb / 1024
}

/// Clients that pipeline writes as fast as they can and never read their replies: the server
/// stops reading them (its memory stays bounded) and keeps serving a session that asks one
/// thing at a time, whose session must not expire meanwhile.
#[test]
fn a_flood_from_clients_that_do_not_read_holds_bounded_memory_and_spares_others() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let s = TestServer::start(|b| b);
    let mut bystander = Client::connect(s.addr);
    bystander.create("/f", b"", 0).unwrap();
    let before = peak_rss_mb();
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..20)
        .map(|_| {
            let (addr, stop) = (s.addr, stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.stream.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
                let mut body = Vec::new();
                RequestHeader { xid: 1, op: op::SET_DATA }.encode(&mut body);
                SetDataRequest { path: "/f".into(), data: Some(vec![7; 1024]), version: -1 }.encode(&mut body);
                let mut frame = Vec::new();
                ferrozk_proto::frame::write_frame(&mut frame, |b| b.extend_from_slice(&body));
                let burst: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 64).collect();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // A write the server does not take in time is cut short; the stream is then
                    // out of step, which does not matter: nothing is read from it.
                    if c.stream.write_all(&burst).is_ok() {
                        sent += 64;
                    }
                }
                (sent, c)
            })
        })
        .collect();
    let mut answered = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let (h, _) = bystander.call(&Request::GetData(GetDataRequest { path: "/f".into(), watch: false }));
        assert_eq!(h.err, 0, "the bystander is served during the flood");
        answered += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|t| t.join().unwrap().0).sum();
    let grew = peak_rss_mb().saturating_sub(before);
    eprintln!("flood: {sent} writes sent, bystander answered {answered} times, peak RSS grew {grew} MB");
    assert!(sent > 20_000, "the flood got going ({sent} writes)");
    // Measured here: 22 MB with the limits, 1175 MB without them (globalOutstandingLimit=0 and
    // no output limits) in the same 5 s, while the bystander got a third of the answers. The
    // bound, with headroom: 1000 requests in flight, up to 1 MB unsent per connection, the log
    // held in memory until the next snapshot, the test's own threads.
    assert!(grew < 200, "peak RSS grew {grew} MB during the flood");
    // The bystander's session lived through it (its timeout is at most 4 s here).
    let (h, _) = bystander.call(&Request::Exists(ExistsRequest { path: "/f".into(), watch: false }));
    assert_eq!(h.err, 0);
}

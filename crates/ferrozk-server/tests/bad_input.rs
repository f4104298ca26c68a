//! Bad input gets ZooKeeper's error or a closed connection, and never harms other sessions.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ferrozk_proto::codes::op;
use ferrozk_proto::*;

/// A healthy session that must keep working through every abuse below.
fn bystander_still_works(c: &mut Client, n: usize) {
    let (path, _) = c.create("/bystander-", format!("{n}").as_bytes(), 2).unwrap();
    assert_eq!(c.get(&path, false).unwrap().0.unwrap(), format!("{n}").as_bytes());
}

#[test]
fn oversize_frame_closes_only_that_connection() {
    let s = TestServer::start(|b| b.jute_max_buffer(1024));
    let mut ok = Client::connect(s.addr);
    let mut bad = Client::connect(s.addr);
    let mut payload = Vec::new();
    RequestHeader { xid: 1, op: op::CREATE }.encode(&mut payload);
    CreateRequest { path: "/big".into(), data: Some(vec![7; 4096]), acl: open_acl(), flags: 0 }.encode(&mut payload);
    write_raw(&mut bad.stream, &payload);
    assert!(is_closed(&mut bad.stream, Duration::from_secs(5)));
    assert_eq!(ok.exists("/big", false), Err(ErrorCode::NoNode));
    bystander_still_works(&mut ok, 1);
    // A negative length is as bad as a huge one.
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut raw, Duration::from_secs(5)));
    bystander_still_works(&mut ok, 2);
}

#[test]
fn garbage_and_truncated_handshakes_are_closed() {
    let s = TestServer::start(|b| b);
    let mut ok = Client::connect(s.addr);
    for garbage in [vec![], vec![1, 2, 3], vec![0xff; 40], b"GET / HTTP/1.1\r\n\r\n".to_vec()] {
        let mut raw = TcpStream::connect(s.addr).unwrap();
        write_raw(&mut raw, &garbage);
        assert!(is_closed(&mut raw, Duration::from_secs(5)), "{garbage:?}");
    }
    // A frame cut off mid-way, then the client goes away.
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.write_all(&[0, 0, 0, 44, 0, 0, 0]).unwrap();
    drop(raw);
    // Plain HTTP on the client port: its first four bytes are a huge length.
    let mut raw = TcpStream::connect(s.addr).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(is_closed(&mut raw, Duration::from_secs(5)));
    bystander_still_works(&mut ok, 1);
}

#[test]
fn truncated_request_records_get_marshalling_errors() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    let mut payload = Vec::new();
    RequestHeader { xid: 9, op: op::CREATE }.encode(&mut payload);
    payload.extend_from_slice(&[0, 0, 0, 10, b'/', b'a']); // a path that claims 10 bytes
    write_raw(&mut c.stream, &payload);
    let (h, _) = c.wait(9);
    assert_eq!(h.err, ErrorCode::MarshallingError.code());
    bystander_still_works(&mut c, 1);
}

#[test]
fn unknown_opcode_gets_unimplemented_then_close() {
    let s = TestServer::start(|b| b);
    let mut ok = Client::connect(s.addr);
    let mut c = Client::connect(s.addr);
    let (h, _) = c.call(&Request::Unknown(999));
    assert_eq!(h.err, ErrorCode::Unimplemented.code());
    assert!(is_closed(&mut c.stream, Duration::from_secs(5)));
    bystander_still_works(&mut ok, 1);
}

#[test]
fn invalid_paths_are_bad_arguments() {
    let s = TestServer::start(|b| b);
    let mut c = Client::connect(s.addr);
    c.create("/a", b"", 0).unwrap();
    // As in ZooKeeper, the parent is looked up before the whole path is validated.
    for p in ["a", "/a/", "//a", "/a/.", "/a/..", "/a\0b", "/\u{1}x"] {
        assert_eq!(c.create(p, b"", 0), Err(ErrorCode::BadArguments), "create {p:?}");
    }
    assert_eq!(c.create("/a/./b", b"", 0), Err(ErrorCode::NoNode));
    assert_eq!(c.set("/a/", b"", -1), Err(ErrorCode::BadArguments));
    assert_eq!(c.delete("nope", -1), Err(ErrorCode::BadArguments));
    assert_eq!(c.delete("/zookeeper", -1), Err(ErrorCode::BadArguments));
    assert_eq!(c.exists("/a\0", false), Err(ErrorCode::BadArguments));
    // A sequential create may end in '/': the suffix makes the name.
    c.create("/seq", b"", 0).unwrap();
    assert_eq!(c.create("/seq/", b"", 2).unwrap().0, "/seq/0000000000");
    bystander_still_works(&mut c, 1);
}

#[test]
fn silent_client_is_closed_after_the_sessionless_timeout() {
    let s = TestServer::start(|b| b.sessionless_timeout_ms(300));
    let mut ok = Client::connect(s.addr);
    let mut silent = TcpStream::connect(s.addr).unwrap();
    assert!(is_closed(&mut silent, Duration::from_secs(5)));
    // The established session is not subject to it.
    std::thread::sleep(Duration::from_millis(400));
    bystander_still_works(&mut ok, 1);
}

#[test]
fn connections_beyond_max_client_cnxns_are_refused() {
    let s = TestServer::start(|b| b.max_client_cnxns(3));
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(s.addr)).collect();
    let mut extra = TcpStream::connect(s.addr).unwrap();
    assert!(is_closed(&mut extra, Duration::from_secs(5)));
    bystander_still_works(&mut held[0], 1);
    // A slot frees when a connection goes.
    held.pop().unwrap().close();
    std::thread::sleep(Duration::from_millis(200));
    let mut again = Client::connect(s.addr);
    bystander_still_works(&mut again, 2);
}

#[test]
fn four_letter_words_honour_the_whitelist() {
    let s = TestServer::start(|b| b.four_letter_words(&["ruok", "srvr"]));
    assert_eq!(four_letter(s.addr, "ruok"), "imok");
    assert!(four_letter(s.addr, "srvr").contains("Mode: standalone"));
    assert_eq!(four_letter(s.addr, "dump"), "dump is not executed because it is not in the whitelist.\n");
}

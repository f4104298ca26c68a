//! A small blocking ZooKeeper client for the server's own tests: raw frames, so tests can also
//! send what no real client would.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrozk_proto::codes::op;
use ferrozk_proto::frame::write_frame;
use ferrozk_proto::*;
use ferrozk_server::{Server, ServerBuilder};

/// A server on a loopback port of its own, with the runtime that drives it.
pub struct TestServer {
    pub rt: tokio::runtime::Runtime,
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

/// A fresh, empty directory for one test's data.
pub fn temp_data_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!("ferrozk-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    d
}

impl TestServer {
    pub fn start(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> TestServer {
        Self::start_in(temp_data_dir(), "127.0.0.1:0".parse().unwrap(), configure)
    }

    /// Starts on a given data directory and address (to restart where another one stopped).
    pub fn start_in(data_dir: PathBuf, addr: SocketAddr, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let builder = configure(Server::builder().client_addr(addr).data_dir(&data_dir).tick_time(200).four_letter_words(&["*"]));
        let server = rt.block_on(builder.start()).unwrap();
        let addr = server.client_addr();
        TestServer { rt, server: Some(server), addr, data_dir }
    }

    /// Stops the server cleanly and starts a new one on the same directory and port.
    pub fn restart(mut self) -> TestServer {
        let (dir, addr) = (self.data_dir.clone(), self.addr);
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
        self.data_dir = PathBuf::new();
        drop(self);
        Self::start_in(dir, addr, |b| b)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            self.rt.block_on(s.shutdown());
        }
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

pub struct Client {
    pub stream: TcpStream,
    pub session: i64,
    pub passwd: Vec<u8>,
    pub timeout: i32,
    xid: i32,
    /// Notifications received while waiting for replies, in arrival order: (type, path).
    pub events: Vec<(i32, String)>,
    /// Every frame in arrival order, tagged: ("event", path) or ("reply", xid as string).
    pub order: Vec<(String, String)>,
}

pub fn write_raw(stream: &mut TcpStream, payload: &[u8]) {
    let mut out = Vec::new();
    write_frame(&mut out, |b| b.extend_from_slice(payload));
    stream.write_all(&out).unwrap();
}

pub fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len) as usize;
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// True when the server has closed the connection (EOF or reset within `wait`).
pub fn is_closed(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

pub fn four_letter(addr: SocketAddr, word: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(word.as_bytes()).unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    out
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::connect_with(addr, 0, vec![0; 16], 30000, 0).expect("session refused")
    }

    /// A handshake with explicit fields; `None` when the server refuses or closes.
    pub fn connect_with(addr: SocketAddr, session: i64, passwd: Vec<u8>, timeout: i32, last_zxid: i64) -> Option<Client> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: last_zxid,
            timeout,
            session_id: session,
            passwd: Some(passwd),
            read_only: Some(false),
        };
        write_raw(&mut stream, &jute::to_bytes(&req));
        let frame = read_frame(&mut stream)?;
        let resp = ConnectResponse::decode(&mut Reader::new(&frame)).unwrap();
        if resp.timeout <= 0 {
            return None;
        }
        Some(Client {
            stream,
            session: resp.session_id,
            passwd: resp.passwd.unwrap_or_default(),
            timeout: resp.timeout,
            xid: 0,
            events: Vec::new(),
            order: Vec::new(),
        })
    }

    pub fn send(&mut self, req: &Request) -> i32 {
        self.xid += 1;
        let xid = match req {
            Request::Ping => -2,
            Request::Auth(_) => -4,
            _ => self.xid,
        };
        let mut body = Vec::new();
        RequestHeader { xid, op: req.opcode() }.encode(&mut body);
        req.encode_body(&mut body);
        write_raw(&mut self.stream, &body);
        xid
    }

    /// Reads frames until the reply to `xid`; returns its header and body bytes.
    pub fn wait(&mut self, xid: i32) -> (ReplyHeader, Vec<u8>) {
        loop {
            let frame = read_frame(&mut self.stream).expect("connection closed while waiting for a reply");
            let mut r = Reader::new(&frame);
            let h = ReplyHeader::decode(&mut r).unwrap();
            let rest = frame[r.position()..].to_vec();
            if h.xid == -1 {
                let ev = WatcherEvent::decode(&mut Reader::new(&rest)).unwrap();
                self.order.push(("event".into(), ev.path.clone()));
                self.events.push((ev.event_type, ev.path));
                continue;
            }
            self.order.push(("reply".into(), h.xid.to_string()));
            if h.xid == xid {
                return (h, rest);
            }
        }
    }

    pub fn call(&mut self, req: &Request) -> (ReplyHeader, Vec<u8>) {
        let xid = self.send(req);
        self.wait(xid)
    }

    pub fn create(&mut self, path: &str, data: &[u8], flags: i32) -> Result<(String, Stat), ErrorCode> {
        let req = CreateRequest { path: path.into(), data: Some(data.to_vec()), acl: open_acl(), flags };
        let (h, body) = self.call(&Request::Create(op::CREATE2, req));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        let r = Create2Response::decode(&mut Reader::new(&body)).unwrap();
        Ok((r.path, r.stat))
    }

    pub fn get(&mut self, path: &str, watch: bool) -> Result<(Option<Vec<u8>>, Stat), ErrorCode> {
        let (h, body) = self.call(&Request::GetData(GetDataRequest { path: path.into(), watch }));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        let r = GetDataResponse::decode(&mut Reader::new(&body)).unwrap();
        Ok((r.data, r.stat))
    }

    pub fn set(&mut self, path: &str, data: &[u8], version: i32) -> Result<Stat, ErrorCode> {
        let (h, body) = self.call(&Request::SetData(SetDataRequest { path: path.into(), data: Some(data.to_vec()), version }));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        Ok(SetDataResponse::decode(&mut Reader::new(&body)).unwrap().stat)
    }

    pub fn delete(&mut self, path: &str, version: i32) -> Result<(), ErrorCode> {
        let (h, _) = self.call(&Request::Delete(DeleteRequest { path: path.into(), version }));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        Ok(())
    }

    pub fn exists(&mut self, path: &str, watch: bool) -> Result<Stat, ErrorCode> {
        let (h, body) = self.call(&Request::Exists(ExistsRequest { path: path.into(), watch }));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        Ok(ExistsResponse::decode(&mut Reader::new(&body)).unwrap().stat)
    }

    pub fn children(&mut self, path: &str, watch: bool) -> Result<Vec<String>, ErrorCode> {
        let (h, body) = self.call(&Request::GetChildren(GetChildrenRequest { path: path.into(), watch }));
        if h.err != 0 {
            return Err(ErrorCode::from_code(h.err).unwrap());
        }
        Ok(GetChildrenResponse::decode(&mut Reader::new(&body)).unwrap().children)
    }

    pub fn close(mut self) {
        let _ = self.call(&Request::CloseSession);
    }
}

pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

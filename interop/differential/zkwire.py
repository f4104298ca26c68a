"""A small synchronous ZooKeeper wire-protocol client for differential testing.

It speaks the jute protocol directly so the test controls every byte: the opcode
(create vs create2 vs createContainer vs createTTL), paths the usual clients
refuse to send, multiRead, addWatch, removeWatches, whoAmI, and the raw error
code of every reply and every multi sub-result.

One `Session` owns one TCP connection and one ZooKeeper session. Requests are
sent one at a time; while waiting for a reply, watch notifications (xid -1)
are queued in `Session.events` in arrival order.
"""

import socket
import struct

# opcodes
NOTIFICATION = 0
CREATE = 1
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_ACL = 6
SET_ACL = 7
GET_CHILDREN = 8
SYNC = 9
PING = 11
GET_CHILDREN2 = 12
CHECK = 13
MULTI = 14
CREATE2 = 15
RECONFIG = 16
CHECK_WATCHES = 17
REMOVE_WATCHES = 18
CREATE_CONTAINER = 19
CREATE_TTL = 21
MULTI_READ = 22
AUTH = 100
SET_WATCHES = 101
SET_WATCHES2 = 105
GET_EPHEMERALS = 103
GET_ALL_CHILDREN_NUMBER = 104
ADD_WATCH = 106
WHO_AM_I = 107
CLOSE_SESSION = -11
ERROR = -1

OPNAMES = {
    CREATE: "create", DELETE: "delete", EXISTS: "exists", GET_DATA: "getData",
    SET_DATA: "setData", GET_ACL: "getACL", SET_ACL: "setACL",
    GET_CHILDREN: "getChildren", SYNC: "sync", PING: "ping",
    GET_CHILDREN2: "getChildren2", CHECK: "check", MULTI: "multi",
    CREATE2: "create2", CHECK_WATCHES: "checkWatches",
    REMOVE_WATCHES: "removeWatches", CREATE_CONTAINER: "createContainer",
    CREATE_TTL: "createTTL", MULTI_READ: "multiRead", AUTH: "auth",
    GET_EPHEMERALS: "getEphemerals",
    GET_ALL_CHILDREN_NUMBER: "getAllChildrenNumber", ADD_WATCH: "addWatch",
    WHO_AM_I: "whoAmI", CLOSE_SESSION: "closeSession", ERROR: "error",
}

ERRNAMES = {
    0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY",
    -3: "DATAINCONSISTENCY", -4: "CONNECTIONLOSS", -5: "MARSHALLINGERROR",
    -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT", -8: "BADARGUMENTS",
    -12: "UNKNOWNSESSION", -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS",
    -100: "APIERROR", -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION",
    -108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS", -111: "NOTEMPTY",
    -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK", -114: "INVALIDACL",
    -115: "AUTHFAILED", -118: "SESSIONMOVED", -119: "NOTREADONLY",
    -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER", -122: "REQUESTTIMEOUT",
    -123: "RECONFIGDISABLED", -124: "SESSIONCLOSEDREQUIRESASLAUTH",
    -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP",
}


def errname(code):
    return ERRNAMES.get(code, str(code))


class ConnectionClosed(Exception):
    """The server closed the connection (or it broke) before a reply came."""


class SessionRefused(ConnectionClosed):
    """The server answered the handshake with timeout <= 0 or session id 0
    (an expired or unknown session, or a wrong password)."""

    def __init__(self, timeout_ms, session_id):
        ConnectionClosed.__init__(self, "session refused (timeout %d, session 0x%x)"
                                  % (timeout_ms, session_id & (2**64 - 1)))
        self.timeout_ms = timeout_ms
        self.session_id = session_id


class ProtocolError(Exception):
    pass


# ---------------------------------------------------------------- jute encoding

class Writer:
    def __init__(self):
        self.parts = []

    def int(self, v):
        self.parts.append(struct.pack(">i", v))
        return self

    def long(self, v):
        self.parts.append(struct.pack(">q", v))
        return self

    def bool(self, v):
        self.parts.append(b"\x01" if v else b"\x00")
        return self

    def buffer(self, b):
        if b is None:
            return self.int(-1)
        self.int(len(b))
        self.parts.append(bytes(b))
        return self

    def string(self, s):
        if s is None:
            return self.int(-1)
        if isinstance(s, str):
            s = s.encode("utf-8", "surrogatepass")
        return self.buffer(s)

    def acl_list(self, acls):
        if acls is None:
            return self.int(-1)
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).string(scheme).string(ident)
        return self

    def string_list(self, items):
        self.int(len(items))
        for s in items:
            self.string(s)
        return self

    def bytes(self):
        return b"".join(self.parts)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("short record: need %d bytes at %d of %d"
                                % (n, self.pos, len(self.data)))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        return self._take(n)

    def string(self):
        b = self.buffer()
        if b is None:
            return None
        return b.decode("utf-8", "surrogateescape")

    def string_list(self):
        n = self.int()
        if n < 0:
            return None
        return [self.string() for _ in range(n)]

    def stat(self):
        return Stat(*struct.unpack(">qqqqiiiqiiq", self._take(68)))

    def acl_list(self):
        n = self.int()
        if n < 0:
            return None
        out = []
        for _ in range(n):
            perms = self.int()
            scheme = self.string()
            ident = self.string()
            out.append((perms, scheme, ident))
        return out


class Stat(tuple):
    FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion",
              "aversion", "ephemeralOwner", "dataLength", "numChildren", "pzxid")

    def __new__(cls, *vals):
        return tuple.__new__(cls, vals)

    def __getattr__(self, name):
        try:
            return self[Stat.FIELDS.index(name)]
        except ValueError:
            raise AttributeError(name)

    def asdict(self):
        return dict(zip(Stat.FIELDS, self))


# ------------------------------------------------------------- request bodies

def enc_path(path):
    return Writer().string(path).bytes()


def enc_path_watch(path, watch):
    return Writer().string(path).bool(watch).bytes()


def enc_create(path, data, acl, flags):
    return Writer().string(path).buffer(data).acl_list(acl).int(flags).bytes()


def enc_create_ttl(path, data, acl, flags, ttl):
    return (Writer().string(path).buffer(data).acl_list(acl).int(flags)
            .long(ttl).bytes())


def enc_path_version(path, version):
    return Writer().string(path).int(version).bytes()


def enc_set_data(path, data, version):
    return Writer().string(path).buffer(data).int(version).bytes()


def enc_set_acl(path, acl, version):
    return Writer().string(path).acl_list(acl).int(version).bytes()


def enc_path_int(path, n):
    return Writer().string(path).int(n).bytes()


def enc_multi(ops):
    """ops: list of (opcode, encoded body). Returns the multi request body."""
    w = Writer()
    for opcode, body in ops:
        w.int(opcode).bool(False).int(-1)
        w.parts.append(body)
    w.int(-1).bool(True).int(-1)
    return w.bytes()


# ----------------------------------------------------------- response parsing

def parse_body(opcode, r):
    """Decode a successful reply body for `opcode` into plain Python values."""
    if opcode in (CREATE,):
        return {"path": r.string()}
    if opcode in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
        return {"path": r.string(), "stat": r.stat()}
    if opcode in (DELETE, CHECK_WATCHES, REMOVE_WATCHES, AUTH, CLOSE_SESSION,
                  PING, SET_WATCHES, SET_WATCHES2):
        return {}
    if opcode == ADD_WATCH:
        # ErrorResponse{err} or nothing, depending on server version
        if r.remaining() >= 4:
            return {"errfield": r.int()}
        return {}
    if opcode == EXISTS:
        return {"stat": r.stat()}
    if opcode == GET_DATA:
        return {"data": r.buffer(), "stat": r.stat()}
    if opcode in (SET_DATA, SET_ACL, CHECK):
        if opcode == CHECK and r.remaining() == 0:
            return {}
        return {"stat": r.stat()}
    if opcode == GET_ACL:
        return {"acl": r.acl_list(), "stat": r.stat()}
    if opcode == GET_CHILDREN:
        return {"children": r.string_list()}
    if opcode == GET_CHILDREN2:
        return {"children": r.string_list(), "stat": r.stat()}
    if opcode == SYNC:
        return {"path": r.string()}
    if opcode == GET_EPHEMERALS:
        return {"ephemerals": r.string_list()}
    if opcode == GET_ALL_CHILDREN_NUMBER:
        return {"total": r.int()}
    if opcode == WHO_AM_I:
        n = r.int()
        ids = []
        for _ in range(max(n, 0)):
            scheme = r.string()
            user = r.string()
            ids.append((scheme, user))
        return {"ids": ids}
    if opcode in (MULTI, MULTI_READ):
        return {"results": parse_multi(r)}
    raise ProtocolError("no parser for opcode %d" % opcode)


def parse_multi(r):
    results = []
    while True:
        typ = r.int()
        done = r.bool()
        err = r.int()
        if done:
            break
        if typ == ERROR:
            results.append({"type": typ, "err": r.int(), "hdr_err": err})
            continue
        if typ in (CREATE,):
            body = {"path": r.string()}
        elif typ in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
            body = {"path": r.string(), "stat": r.stat()}
        elif typ in (DELETE, CHECK):
            body = {}
        elif typ == SET_DATA:
            body = {"stat": r.stat()}
        elif typ == GET_DATA:
            body = {"data": r.buffer(), "stat": r.stat()}
        elif typ == GET_CHILDREN:
            body = {"children": r.string_list()}
        else:
            raise ProtocolError("unknown multi result type %d" % typ)
        body["type"] = typ
        body["hdr_err"] = err
        results.append(body)
    return results


# -------------------------------------------------------------------- session

class Reply:
    __slots__ = ("xid", "zxid", "err", "body")

    def __init__(self, xid, zxid, err, body):
        self.xid = xid
        self.zxid = zxid
        self.err = err
        self.body = body

    def __repr__(self):
        return "Reply(err=%s, zxid=%d, body=%r)" % (errname(self.err),
                                                   self.zxid, self.body)


class Session:
    def __init__(self, host, port, timeout_ms=30000, session_id=0,
                 passwd=b"\x00" * 16, io_timeout=20.0, last_zxid=0):
        self.host = host
        self.port = port
        self.events = []
        self.last_zxid = last_zxid
        self.xid = 0
        self.closed = False
        self.sock = socket.create_connection((host, port), timeout=io_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        w = (Writer().int(0).long(last_zxid).int(timeout_ms).long(session_id)
             .buffer(passwd).bool(False))
        self._send_frame(w.bytes())
        r = Reader(self._recv_frame())
        self.protocol_version = r.int()
        self.timeout_ms = r.int()
        self.session_id = r.long()
        self.passwd = r.buffer()
        self.read_only = r.bool() if r.remaining() else None
        if self.session_id == 0 or self.timeout_ms <= 0:
            self.sock.close()
            self.closed = True
            raise SessionRefused(self.timeout_ms, self.session_id)

    # framing
    def _send_frame(self, payload):
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        except OSError as e:
            self.closed = True
            raise ConnectionClosed("send failed: %s" % e)

    def _recv_exact(self, n):
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                raise
            except OSError as e:
                self.closed = True
                raise ConnectionClosed("recv failed: %s" % e)
            if not chunk:
                self.closed = True
                raise ConnectionClosed("connection closed by server")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _recv_frame(self):
        (n,) = struct.unpack(">i", self._recv_exact(4))
        if n < 0 or n > 64 * 1024 * 1024:
            raise ProtocolError("bad frame length %d" % n)
        return self._recv_exact(n)

    def _next_xid(self):
        self.xid += 1
        return self.xid

    def call(self, opcode, body=b"", xid=None):
        """Send one request and wait for its reply. Returns a Reply; a
        non-zero err leaves body None."""
        if self.closed:
            raise ConnectionClosed("session connection already closed")
        if xid is None:
            xid = self._next_xid()
        self._send_frame(Writer().int(xid).int(opcode).bytes() + body)
        while True:
            r = Reader(self._recv_frame())
            rxid = r.int()
            zxid = r.long()
            err = r.int()
            if rxid == -1:
                typ = r.int()
                state = r.int()
                path = r.string()
                self.events.append((typ, state, path, zxid))
                continue
            if zxid > self.last_zxid:
                self.last_zxid = zxid
            if rxid != xid:
                raise ProtocolError("reply xid %d, expected %d (opcode %d)"
                                    % (rxid, xid, opcode))
            body_out = None
            if err == 0:
                body_out = parse_body(opcode, r)
            return Reply(rxid, zxid, err, body_out)

    def send_raw_frame(self, payload):
        """Send an arbitrary frame (used for oversize-packet probes)."""
        self._send_frame(payload)

    def wait_closed(self, timeout=10.0):
        """Read until the server closes the connection; return events seen."""
        self.sock.settimeout(timeout)
        try:
            while True:
                r = Reader(self._recv_frame())
                rxid = r.int()
                r.long()
                r.int()
                if rxid == -1:
                    typ = r.int()
                    state = r.int()
                    path = r.string()
                    self.events.append((typ, state, path, 0))
        except ConnectionClosed:
            return True
        except socket.timeout:
            return False

    # conveniences
    def add_auth(self, scheme, auth):
        body = Writer().int(0).string(scheme).buffer(auth).bytes()
        return self.call(AUTH, body, xid=-4)

    def ping(self):
        return self.call(PING, b"", xid=-2)

    def sync(self, path="/"):
        return self.call(SYNC, enc_path(path))

    def close(self):
        """closeSession, then close the socket. Returns the reply or None."""
        rep = None
        if not self.closed:
            try:
                rep = self.call(CLOSE_SESSION, b"")
            except (ConnectionClosed, OSError):
                rep = None
        self.drop()
        return rep

    def drop(self):
        """Close the TCP connection without closing the session, and wait (up to 5 s) until
        the server has closed its side too. ZooKeeper forgets a session's connection by
        session id when it handles a connection's close: handled after the session's next
        connection registered, it forgets that one, and a later wrong-password attempt then
        has no connection of the owner's to close. Waiting keeps runs deterministic."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(5.0)
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def take_events(self):
        ev = self.events
        self.events = []
        return ev


def four_letter(host, port, cmd=b"ruok", timeout=2.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out

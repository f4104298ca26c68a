"""Writes seed inputs for the fuzz targets: valid frames of each request kind, so the fuzzer
starts from the protocol's real shapes. Run: python3 fuzz/make_seeds.py"""
import os, struct

def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def s(v): b = v.encode(); return i32(len(b)) + b
def buf(v): return i32(-1) if v is None else i32(len(v)) + v
def b(v): return bytes([1 if v else 0])
OPEN = i32(1) + i32(31) + s("world") + s("anyone")
def frame(xid, op, body): p = i32(xid) + i32(op) + body; return i32(len(p)) + p
def create(path, data=b"x", flags=0, op=1): return frame(1, op, s(path) + buf(data) + OPEN + i32(flags))

reqs = [
    create("/a"), create("/a/b", flags=2), create("/e", flags=1, op=15), create("/c", flags=4, op=19),
    frame(2, 21, s("/t") + buf(b"") + OPEN + i32(5) + i64(100)),
    frame(3, 5, s("/a") + buf(b"yy") + i32(-1)), frame(4, 4, s("/a") + b(True)),
    frame(5, 8, s("/") + b(True)), frame(6, 12, s("/a") + b(False)), frame(7, 3, s("/x") + b(True)),
    frame(8, 7, s("/a") + OPEN + i32(0)), frame(9, 6, s("/a")), frame(10, 13, s("/a") + i32(1)),
    frame(11, 2, s("/a/b0000000000") + i32(-1)),
    frame(12, 14, i32(1) + b(False) + i32(-1) + s("/m") + buf(None) + OPEN + i32(0)
          + i32(2) + b(False) + i32(-1) + s("/zz") + i32(-1) + i32(-1) + b(True) + i32(-1)),
    frame(13, 22, i32(4) + b(False) + i32(-1) + s("/a") + b(False) + i32(-1) + b(True) + i32(-1)),
    frame(14, 106, s("/") + i32(1)), frame(15, 18, s("/") + i32(5)), frame(16, 17, s("/a") + i32(3)),
    frame(17, 101, i64(0) + i32(1) + s("/a") + i32(1) + s("/q") + i32(1) + s("/")),
    frame(18, 103, s("/")), frame(19, 104, s("/")), frame(20, 107, b""), frame(21, 9, s("/")),
    frame(22, 2, s("/zookeeper") + i32(-1)),
    create("/zookeeper/quota/a/zookeeper_limits", b"count=-1,bytes=-1=;countHardLimit=2"),
    create("/zookeeper/quota/a/zookeeper_stats", b"count=0,bytes=0"),
]
os.makedirs("fuzz/corpus/requests", exist_ok=True)
os.makedirs("fuzz/corpus/decode", exist_ok=True)
with open("fuzz/corpus/requests/seed-all", "wb") as f:
    f.write(b"".join(reqs))
for n, r in enumerate(reqs):
    with open(f"fuzz/corpus/decode/seed-{n:02}", "wb") as f:
        f.write(r[4:])
with open("fuzz/corpus/decode/seed-connect", "wb") as f:
    f.write(i32(0) + i64(0) + i32(30000) + i64(0) + buf(b"\0" * 16) + b(False))

#!/usr/bin/env python3
"""A short scripted run that makes each modelled ZooKeeper 3.8-vs-3.9
divergence happen (README.md, "ZooKeeper 3.8 vs 3.9"), against ZooKeeper 3.8
(A) and ferrozk (B), with the same comparator as difftest.py.

    python3 interop/differential/scenario.py [--port-base 21100] [--accept-38-answers]

Exit status 0 when there is no difference and every rule below fired,
1 otherwise, 2 on a setup error. It needs the same prerequisites as run.sh
(run run.sh once first). The random test reaches these cases too, but rarely
(rule 1's watch events in particular), so this checks the rules themselves.
"""

import argparse
import os
import sys
import tempfile
import traceback
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import difftest as dt  # noqa: E402
import servers  # noqa: E402
import zkwire as zw  # noqa: E402

ALICE_ONLY = [(31, "digest", dt.ALICE)]
OPEN = dt.OPEN


def create(slot, path, acl=OPEN, flags=0):
    return {"kind": "create", "slot": slot, "opcode": zw.CREATE, "flags": flags, "ttl": None,
            "path": path, "data": b"x", "acl": acl}


SCRIPT = [
    # rule 1: exists() needs READ in 3.9; 3.8 sets a watch that 3.9 does not
    create(1, "/p", ALICE_ONLY),
    {"kind": "exists", "slot": 0, "path": "/p", "watch": True},
    {"kind": "checkWatches", "slot": 0, "path": "/p", "wtype": 2},
    {"kind": "setACL", "slot": 1, "path": "/p", "acl": OPEN, "version": -1},
    {"kind": "setData", "slot": 1, "path": "/p", "data": b"y", "version": -1},   # 3.8-only event
    {"kind": "setACL", "slot": 1, "path": "/p", "acl": ALICE_ONLY, "version": -1},
    {"kind": "exists", "slot": 3, "path": "/p", "watch": True},
    {"kind": "removeWatches", "slot": 3, "path": "/p", "wtype": 3},
    {"kind": "exists", "slot": 3, "path": "/p", "watch": True},
    {"kind": "setData", "slot": 1, "path": "/p", "data": b"z", "version": "right"},  # fires, filtered
    {"kind": "exists", "slot": 3, "path": "/p", "watch": True},
    {"kind": "setACL", "slot": 1, "path": "/p", "acl": OPEN, "version": -1},
    {"kind": "delete", "slot": 1, "path": "/p", "version": -1},                  # 3.8-only event
    # an ephemeral deleted by closeSession fires a 3.8-only watch of another slot
    create(1, "/r", [(31, "digest", dt.ALICE), (1, "world", "anyone")], flags=1),
    {"kind": "setACL", "slot": 1, "path": "/r", "acl": ALICE_ONLY, "version": -1},
    {"kind": "exists", "slot": 0, "path": "/r", "watch": True},
    {"kind": "setACL", "slot": 1, "path": "/r", "acl": OPEN, "version": -1},
    {"kind": "closeSession", "slot": 1},
    # rule 4: 3.8's checkWatches sees other connections' watches
    create(2, "/q"),
    {"kind": "addWatch", "slot": 2, "path": "/q", "mode": 0},
    {"kind": "checkWatches", "slot": 3, "path": "/q", "wtype": 1},
    {"kind": "checkWatches", "slot": 3, "path": "/q", "wtype": 2},
    {"kind": "checkWatches", "slot": 3, "path": "/q", "wtype": 3},
    # rule 5: flags 5 in a create sub-op after a failing sub-op
    {"kind": "multi", "slot": 0, "ops": [("delete", "/nonexistent", -1),
                                         ("create", zw.CREATE, "/t", b"", OPEN, 5, None)]},
    # rule 5: create2 in a multi is answered with a stat in 3.9
    {"kind": "multi", "slot": 0, "ops": [("create", zw.CREATE2, "/m", b"d", OPEN, 0, None),
                                         ("create", zw.CREATE2, "/m/e", b"", OPEN, 1, None)]},
]

EXPECTED = [
    "exists NOAUTH (ZOOKEEPER-2590)",
    "exists watch set only by 3.8 (ZOOKEEPER-2590)",
    "checkWatches finds the 3.8-only exists watch (ZOOKEEPER-2590)",
    "removeWatches finds the 3.8-only exists watch (ZOOKEEPER-2590)",
    "event from the 3.8-only exists watch (ZOOKEEPER-2590)",
    "checkWatches sees another session's watch in 3.8 (ZOOKEEPER-4466)",
    "multi with an undecodable create fails as a whole (ZOOKEEPER-4026)",
    "multi create2 answered with a stat (ZOOKEEPER-4026)",
]


class ScriptedGen(dt.Gen):
    def __init__(self, seed, disabled):
        dt.Gen.__init__(self, seed, disabled)
        self.script = [dict(x) for x in SCRIPT]

    def op(self):
        return self.script.pop(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("DIFF_PORT_BASE", 21010)))
    ap.add_argument("--accept-38-answers", action="store_true")
    ap.add_argument("--ferrozk-bin", default=os.environ.get(
        "FERROZK_BIN", os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                    "target", "release", "ferrozk")))
    args = ap.parse_args()
    wd = tempfile.mkdtemp(prefix="ferrozk-scenario-")
    pa = dt.free_port(args.port_base)
    pb = dt.free_port(args.port_base + 1, avoid=[pa])
    procs = [servers.Server("A-zookeeper", "zookeeper", pa, wd),
             servers.Server("B-ferrozk", "ferrozk", pb, wd, ferrozk_bin=args.ferrozk_bin)]
    rc = 2
    try:
        for p in procs:
            p.start(3600 * 1000)
            p.wait_ready()
        bes = [dt.Backend("A-zookeeper", "127.0.0.1", pa, "3.8"),
               dt.Backend("B-ferrozk", "127.0.0.1", pb, "3.9")]
        rargs = types.SimpleNamespace(
            seed=0, ops=len(SCRIPT), disabled=sorted(dt.DEFAULT_DISABLED), a="zookeeper",
            b="ferrozk", tree_every=0, extra_cfg_a="", extra_cfg_b="", trace=None,
            accept_38_answers=args.accept_38_answers, sort_acls=False, flavor_a=None,
            flavor_b=None, port_base=args.port_base)
        runner = dt.Runner(rargs, bes)
        runner.gen = ScriptedGen(0, runner.disabled)
        runner.repro = lambda: "python3 interop/differential/scenario.py" + (
            " --accept-38-answers" if args.accept_38_answers else "")
        try:
            runner.run()
            missing = [x for x in EXPECTED if not runner.divergences.get(x)]
            if missing:
                print("FAIL: these rules never fired: %s" % missing)
                rc = 1
            else:
                print("PASS: every modelled divergence fired")
                rc = 0
        except dt.Difference as d:
            print(str(d))
            print("FAIL (server logs in %s)" % wd)
            rc = 1
        print("divergences accepted: %s" % runner.divergences)
        for be in bes:
            be.close_all()
    except Exception:
        traceback.print_exc()
    finally:
        for p in procs:
            p.stop()
        if rc == 0:
            servers.remove_tree(wd)
    return rc


if __name__ == "__main__":
    sys.exit(main())

// Apache Curator 5.4 (Debian) against one ZooKeeper-protocol server.
//
//   java CuratorInterop HOST:PORT RESTART_SCRIPT
//
// Each check prints "PASS name" or "FAIL name: why"; the last line is "N passed, M failed".
// Exit status 1 if anything failed. RESTART_SCRIPT (may be "-") restarts the server in place
// (same port, same data directory) for the reconnection check.

import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;

import org.apache.curator.RetryPolicy;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.CuratorEvent;
import org.apache.curator.framework.api.CuratorEventType;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.api.transaction.OperationType;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.*;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.*;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.queue.*;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.watch.PersistentWatcher;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.retry.RetryOneTime;
import org.apache.curator.utils.Compatibility;
import org.apache.zookeeper.*;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

public class CuratorInterop {
    static String connect;
    static String restartScript;
    static int passed = 0, failed = 0;
    static final List<CuratorFramework> clients = new ArrayList<>();
    static final ExecutorService runner = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r);
        t.setDaemon(true);
        return t;
    });

    interface Body { void run() throws Exception; }

    static void check(String name, int timeoutSec, Body body) {
        long t0 = System.nanoTime();
        Future<?> f = runner.submit(() -> { body.run(); return null; });
        String why = null;
        try {
            f.get(timeoutSec, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            f.cancel(true);
            why = "timed out after " + timeoutSec + "s";
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            why = c.getClass().getSimpleName() + ": " + c.getMessage();
        } catch (InterruptedException e) {
            why = "interrupted";
        }
        long ms = (System.nanoTime() - t0) / 1_000_000;
        if (why == null) { passed++; System.out.println("PASS " + name + " (" + ms + " ms)"); }
        else { failed++; System.out.println("FAIL " + name + ": " + why.replace('\n', ' ') + " (" + ms + " ms)"); }
        System.out.flush();
    }

    static void expect(boolean cond, String what) { if (!cond) throw new AssertionError(what); }
    static void expectEq(Object want, Object got, String what) {
        if (!Objects.equals(want, got)) throw new AssertionError(what + ": want " + want + ", got " + got);
    }
    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }
    static String s(byte[] b) { return b == null ? null : new String(b, StandardCharsets.UTF_8); }

    static CuratorFramework newClient(RetryPolicy retry, int sessionMs) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
            .connectString(connect).retryPolicy(retry)
            .sessionTimeoutMs(sessionMs).connectionTimeoutMs(8000).build();
        c.start();
        if (!c.blockUntilConnected(15, TimeUnit.SECONDS)) throw new AssertionError("not connected within 15 s");
        synchronized (clients) { clients.add(c); }
        return c;
    }
    static CuratorFramework newClient() throws Exception { return newClient(new ExponentialBackoffRetry(200, 3), 15000); }
    static void closeQuietly(AutoCloseable c) { try { if (c != null) c.close(); } catch (Exception e) { } }

    static <T extends Throwable> T expectThrows(Class<T> cls, Body body, String what) throws Exception {
        try {
            body.run();
        } catch (Throwable t) {
            if (cls.isInstance(t)) return cls.cast(t);
            throw new AssertionError(what + ": want " + cls.getSimpleName() + ", got " + t);
        }
        throw new AssertionError(what + ": want " + cls.getSimpleName() + ", got no exception");
    }

    static CuratorFramework c; // the main client

    public static void main(String[] args) throws Exception {
        connect = args[0];
        restartScript = args.length > 1 ? args[1] : "-";
        long t0 = System.currentTimeMillis();

        check("connect: CuratorFramework with ExponentialBackoffRetry reaches CONNECTED", 30, () -> {
            c = newClient();
            expect(c.getZookeeperClient().isConnected(), "isConnected");
        });
        if (c == null) { finish(t0); return; }

        check("connect: negotiated session timeout (asked 15000 ms, tickTime 2000)", 10, () -> {
            expectEq(15000, c.getZookeeperClient().getZooKeeper().getSessionTimeout(), "session timeout");
        });
        check("connect: session timeout clamped to 20*tickTime (asked 100000 ms)", 20, () -> {
            CuratorFramework x = newClient(new RetryOneTime(100), 100000);
            try { expectEq(40000, x.getZookeeperClient().getZooKeeper().getSessionTimeout(), "session timeout"); }
            finally { x.close(); }
        });
        check("connect: session timeout clamped to 2*tickTime (asked 1000 ms)", 20, () -> {
            CuratorFramework x = newClient(new RetryOneTime(100), 1000);
            try { expectEq(4000, x.getZookeeperClient().getZooKeeper().getSessionTimeout(), "session timeout"); }
            finally { x.close(); }
        });
        check("connect: Compatibility reports persistent watchers (ZooKeeper 3.6+ client)", 5, () -> {
            expect(Compatibility.hasPersistentWatchers(), "hasPersistentWatchers");
        });

        check("ensemble tracker: connection string unchanged after getConfig watch", 15, () -> {
            // Curator's EnsembleTracker reads /zookeeper/config on connect and, when it holds
            // server.N lines, replaces the connection string with the client addresses in it.
            Thread.sleep(1500);
            expectEq(connect, c.getZookeeperClient().getCurrentConnectionString(), "connection string");
        });
        check("getConfig: forEnsemble() on a standalone server", 10, () -> {
            Stat st = new Stat();
            byte[] cfg = c.getConfig().storingStatIn(st).forEnsemble();
            System.out.println("  info: /zookeeper/config data=" + (cfg == null ? null : "'" + s(cfg).replace("\n", "\\n") + "'")
                + " version=" + st.getVersion() + " dataLength=" + st.getDataLength());
            expectEq(0, cfg == null ? 0 : cfg.length, "config length on a standalone server");
        });
        check("getData /zookeeper/config and children of /zookeeper", 10, () -> {
            List<String> kids = c.getChildren().forPath("/zookeeper");
            Collections.sort(kids);
            expectEq(Arrays.asList("config", "quota"), kids, "children of /zookeeper");
            Stat st = c.checkExists().forPath("/zookeeper/config");
            expect(st != null, "/zookeeper/config exists");
        });

        check("crud: create/getData/setData/delete with stats and versions", 15, () -> {
            String p = c.create().forPath("/crud", b("v0"));
            expectEq("/crud", p, "created path");
            Stat st = new Stat();
            expectEq("v0", s(c.getData().storingStatIn(st).forPath("/crud")), "data");
            expectEq(0, st.getVersion(), "version");
            expectEq(2, st.getDataLength(), "dataLength");
            expectEq(st.getCzxid(), st.getMzxid(), "czxid==mzxid");
            expectEq(0L, st.getEphemeralOwner(), "ephemeralOwner");
            Stat st2 = c.setData().withVersion(0).forPath("/crud", b("v1"));
            expectEq(1, st2.getVersion(), "version after set");
            expect(st2.getMzxid() > st.getMzxid(), "mzxid grew");
            expectThrows(KeeperException.BadVersionException.class,
                () -> c.setData().withVersion(0).forPath("/crud", b("v2")), "stale setData");
            expectThrows(KeeperException.NodeExistsException.class,
                () -> c.create().forPath("/crud"), "create existing");
            expectThrows(KeeperException.NoNodeException.class,
                () -> c.getData().forPath("/crud/missing"), "getData missing");
            expectThrows(KeeperException.NoNodeException.class,
                () -> c.create().forPath("/nope/child"), "create without parent");
            c.create().forPath("/crud/kid");
            expectThrows(KeeperException.NotEmptyException.class,
                () -> c.delete().forPath("/crud"), "delete non-empty");
            expectThrows(KeeperException.BadVersionException.class,
                () -> c.delete().withVersion(7).forPath("/crud/kid"), "delete wrong version");
            c.delete().deletingChildrenIfNeeded().forPath("/crud");
            expect(c.checkExists().forPath("/crud") == null, "gone");
            // Curator's create() with no data stores the client's local IP address as data.
            c.create().forPath("/crud-default");
            byte[] d = c.getData().forPath("/crud-default");
            expect(d != null && d.length > 0, "default data is the local address");
            c.delete().forPath("/crud-default");
        });

        check("create2: storingStatIn returns the new node's Stat", 10, () -> {
            Stat st = new Stat();
            c.create().storingStatIn(st).forPath("/c2", b("abc"));
            expect(st.getCzxid() > 0, "czxid set, got " + st);
            expectEq(st.getCzxid(), st.getMzxid(), "mzxid==czxid");
            expectEq(st.getCzxid(), st.getPzxid(), "pzxid==czxid");
            expectEq(3, st.getDataLength(), "dataLength");
            expectEq(0, st.getNumChildren(), "numChildren");
            expect(st.getCtime() > 0 && st.getCtime() == st.getMtime(), "ctime==mtime>0");
            Stat st3 = c.checkExists().forPath("/c2");
            expectEq(st, st3, "exists stat == create2 stat");
            c.delete().forPath("/c2");
        });

        check("create: creatingParentContainersIfNeeded makes container parents", 15, () -> {
            c.create().creatingParentContainersIfNeeded().forPath("/cont/a/b/leaf", b("x"));
            Stat sa = c.checkExists().forPath("/cont/a");
            Stat leaf = c.checkExists().forPath("/cont/a/b/leaf");
            expect(sa != null && leaf != null, "parents and leaf exist");
            System.out.println("  info: container /cont/a ephemeralOwner=0x" + Long.toHexString(sa.getEphemeralOwner()));
            // ZooKeeper stores a container's type in ephemeralOwner (Long.MIN_VALUE) but shows 0.
            expectEq(0L, sa.getEphemeralOwner(), "container ephemeralOwner as clients see it");
            expectEq(0L, leaf.getEphemeralOwner(), "leaf ephemeralOwner");
            c.delete().deletingChildrenIfNeeded().forPath("/cont");
        });
        check("create: creatingParentsIfNeeded makes persistent parents", 10, () -> {
            c.create().creatingParentsIfNeeded().forPath("/pers/a/b", b("x"));
            expectEq(0L, c.checkExists().forPath("/pers/a").getEphemeralOwner(), "persistent parent");
            c.delete().deletingChildrenIfNeeded().forPath("/pers");
        });
        check("create: CreateMode.CONTAINER directly", 10, () -> {
            c.create().withMode(CreateMode.CONTAINER).forPath("/cont2");
            expectEq(0L, c.checkExists().forPath("/cont2").getEphemeralOwner(), "container ephemeralOwner as clients see it");
            c.delete().forPath("/cont2");
        });
        check("create: PERSISTENT_WITH_TTL (extendedTypesEnabled) and TTL in ephemeralOwner", 10, () -> {
            c.create().withTtl(60000).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/ttl", b("t"));
            long owner = c.checkExists().forPath("/ttl").getEphemeralOwner();
            System.out.println("  info: TTL node ephemeralOwner=0x" + Long.toHexString(owner));
            // ZooKeeper keeps the TTL in ephemeralOwner (0xFF<<56 | ttl) but shows clients 0.
            expectEq(0L, owner, "TTL node ephemeralOwner as clients see it");
            c.create().withTtl(60000).withMode(CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL).forPath("/ttl/s-");
            expectEq(1, c.getChildren().forPath("/ttl").size(), "ttl sequential child");
            c.delete().deletingChildrenIfNeeded().forPath("/ttl");
        });
        check("create: TTL without ttl value is rejected", 10, () -> {
            expectThrows(Exception.class,
                () -> c.getZookeeperClient().getZooKeeper().create("/ttlbad", b(""), ZooDefs.Ids.OPEN_ACL_UNSAFE,
                    CreateMode.PERSISTENT_WITH_TTL, new Stat(), 0), "ttl=0");
            expect(c.checkExists().forPath("/ttlbad") == null, "not created");
        });
        check("create: sequential names, ephemeral owner, withProtection", 15, () -> {
            c.create().forPath("/seq");
            String a = c.create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/seq/n-");
            String b2 = c.create().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath("/seq/n-");
            expectEq("/seq/n-0000000000", a, "first sequential");
            expectEq("/seq/n-0000000001", b2, "second sequential");
            long sid = c.getZookeeperClient().getZooKeeper().getSessionId();
            expectEq(sid, c.checkExists().forPath(b2).getEphemeralOwner(), "ephemeralOwner = session id");
            String prot = c.create().withProtection().withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath("/seq/lock-");
            expect(prot.matches("/seq/_c_[0-9a-f-]{36}-lock-0000000002"), "protected name " + prot);
            expectThrows(KeeperException.NoChildrenForEphemeralsException.class,
                () -> c.create().forPath(b2 + "/kid"), "child of ephemeral");
            c.delete().deletingChildrenIfNeeded().forPath("/seq");
        });
        check("create: orSetData and idempotent create", 10, () -> {
            c.create().orSetData().forPath("/osd", b("1"));
            c.create().orSetData().forPath("/osd", b("2"));
            expectEq("2", s(c.getData().forPath("/osd")), "data after orSetData");
            c.delete().forPath("/osd");
        });
        check("delete: guaranteed() and quietly() on a missing node", 10, () -> {
            c.delete().quietly().forPath("/never-there");
            c.create().forPath("/gd");
            c.delete().guaranteed().forPath("/gd");
            expect(c.checkExists().forPath("/gd") == null, "deleted");
        });

        check("children: getChildren with stat (getChildren2), getAllChildrenNumber, getEphemerals", 10, () -> {
            c.create().forPath("/kids");
            for (int i = 0; i < 5; i++) c.create().forPath("/kids/k" + i);
            c.create().withMode(CreateMode.EPHEMERAL).forPath("/kids/k0/e");
            Stat st = new Stat();
            List<String> k = c.getChildren().storingStatIn(st).forPath("/kids");
            expectEq(5, k.size(), "children");
            expectEq(5, st.getNumChildren(), "numChildren");
            expectEq(5, st.getCversion(), "cversion");
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            expectEq(6, zk.getAllChildrenNumber("/kids"), "getAllChildrenNumber");
            List<String> eph = zk.getEphemerals("/kids");
            expectEq(Collections.singletonList("/kids/k0/e"), eph, "getEphemerals");
            c.delete().deletingChildrenIfNeeded().forPath("/kids");
        });

        check("stat: sequence numbers follow the parent's cversion (ZooKeeper 3.8 numbering)", 10, () -> {
            c.create().forPath("/sq");
            c.create().forPath("/sq/x");
            c.delete().forPath("/sq/x");
            Stat afterDel = c.checkExists().forPath("/sq");
            c.setData().forPath("/sq", b("data changes do not count"));
            String p = c.create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/sq/s-");
            Stat st = c.checkExists().forPath("/sq");
            System.out.println("  info: cversion after create+delete=" + afterDel.getCversion() + ", sequential name " + p + ", cversion after that " + st.getCversion());
            // ZooKeeper 3.8: a delete bumps the parent's cversion, yet the next sequential
            // suffix is 1, not 2 (the suffix counts creates under the parent).
            expectEq(2, afterDel.getCversion(), "cversion after create+delete");
            expectEq("/sq/s-0000000001", p, "sequential name after a create+delete");
            expectEq(3, st.getCversion(), "cversion");
            expectEq(1, st.getNumChildren(), "numChildren");
            Stat kid = c.checkExists().forPath(p);
            expectEq(kid.getCzxid(), st.getPzxid(), "pzxid = last child change");
            c.delete().forPath(p);
            Stat st2 = c.checkExists().forPath("/sq");
            expect(st2.getPzxid() > kid.getCzxid(), "pzxid moves on child delete");
            expectEq(st.getMzxid(), st2.getMzxid(), "mzxid unchanged by child delete");
            c.delete().forPath("/sq");
        });
        check("stat: root and /zookeeper nodes", 10, () -> {
            Stat root = c.checkExists().forPath("/");
            Stat zk = c.checkExists().forPath("/zookeeper");
            Stat quota = c.checkExists().forPath("/zookeeper/quota");
            List<ACL> racl = c.getACL().forPath("/");
            List<ACL> zacl = c.getACL().forPath("/zookeeper");
            List<ACL> cacl = c.getACL().forPath("/zookeeper/config");
            System.out.println("  info: stat / = " + root.toString().trim().replace("\n", " ").replace(",", " "));
            System.out.println("  info: stat /zookeeper = " + zk.toString().trim().replace("\n", " ").replace(",", " "));
            System.out.println("  info: stat /zookeeper/quota = " + quota.toString().trim().replace("\n", " ").replace(",", " "));
            System.out.println("  info: acl / = " + racl + " /zookeeper = " + zacl + " /zookeeper/config = " + cacl);
            expectEq(0L, root.getCzxid(), "root czxid");
            expectEq(ZooDefs.Ids.OPEN_ACL_UNSAFE, racl, "root ACL");
            expectEq(ZooDefs.Ids.READ_ACL_UNSAFE, cacl, "/zookeeper/config ACL");
            expectThrows(KeeperException.NoAuthException.class,
                () -> c.setData().forPath("/zookeeper/config", b("server.1=x")), "setData /zookeeper/config");
        });
        check("create: empty ACL list is InvalidACL", 10, () -> {
            expectThrows(KeeperException.InvalidACLException.class,
                () -> c.getZookeeperClient().getZooKeeper().create("/emptyacl", b(""), new ArrayList<>(), CreateMode.PERSISTENT),
                "empty ACL");
        });
        check("container: reaped after its last child goes; a never-used one is kept", 30, () -> {
            c.create().withMode(CreateMode.CONTAINER).forPath("/cr");
            c.create().withMode(CreateMode.CONTAINER).forPath("/cnever");
            c.create().forPath("/cr/kid");
            c.delete().forPath("/cr/kid");
            long t = System.currentTimeMillis(), deadline = t + 20000;
            while (c.checkExists().forPath("/cr") != null && System.currentTimeMillis() < deadline) Thread.sleep(100);
            expect(c.checkExists().forPath("/cr") == null, "container not reaped in 20 s");
            System.out.println("  info: container reaped after " + (System.currentTimeMillis() - t) + " ms (check interval 1000 ms)");
            expect(c.checkExists().forPath("/cnever") != null, "never-used container was reaped");
            c.delete().forPath("/cnever");
        });
        check("ttl: PERSISTENT_WITH_TTL node without children reaped after its TTL", 30, () -> {
            c.create().withTtl(500).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/ttl500", b("x"));
            long t = System.currentTimeMillis(), deadline = t + 20000;
            while (c.checkExists().forPath("/ttl500") != null && System.currentTimeMillis() < deadline) Thread.sleep(100);
            expect(c.checkExists().forPath("/ttl500") == null, "TTL node not reaped in 20 s");
            System.out.println("  info: TTL node reaped after " + (System.currentTimeMillis() - t) + " ms (ttl 500, check interval 1000 ms)");
        });
        check("auth: addAuthInfo with an unknown scheme gives AuthFailed", 15, () -> {
            BlockingQueue<Watcher.Event.KeeperState> q = new LinkedBlockingQueue<>();
            ZooKeeper raw = new ZooKeeper(connect, 10000, ev -> q.add(ev.getState()));
            try {
                expectEq(Watcher.Event.KeeperState.SyncConnected, q.poll(10, TimeUnit.SECONDS), "connected");
                raw.addAuthInfo("nosuchscheme", b("x"));
                expectEq(Watcher.Event.KeeperState.AuthFailed, q.poll(10, TimeUnit.SECONDS), "state");
                Exception e = expectThrows(KeeperException.class, () -> raw.exists("/", false), "request after AuthFailed");
                System.out.println("  info: request after AuthFailed -> " + e);
            } finally { raw.close(); }
        });
        check("auth: digest auth with a malformed credential (no colon) is accepted", 15, () -> {
            BlockingQueue<Watcher.Event.KeeperState> q = new LinkedBlockingQueue<>();
            ZooKeeper raw = new ZooKeeper(connect, 10000, ev -> q.add(ev.getState()));
            try {
                expectEq(Watcher.Event.KeeperState.SyncConnected, q.poll(10, TimeUnit.SECONDS), "connected");
                raw.addAuthInfo("digest", b("nocolon"));
                Watcher.Event.KeeperState st = q.poll(3, TimeUnit.SECONDS);
                String after;
                try { raw.exists("/", false); after = "ok"; } catch (Exception e) { after = e.toString(); }
                System.out.println("  info: digest 'nocolon' -> state " + st + ", next request " + after);
                // ZooKeeper digests the whole string and accepts it (id "nocolon").
                expectEq(null, st, "state change");
                expectEq("ok", after, "next request");
            } finally { raw.close(); }
        });
        check("multi: check on a missing node is NONODE; create2/createTTL ops in multi", 10, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            try {
                zk.multi(Arrays.asList(Op.check("/multi-missing", -1)));
                throw new AssertionError("multi succeeded");
            } catch (KeeperException e) {
                expectEq(KeeperException.Code.NONODE, e.code(), "code");
            }
            List<OpResult> rs = zk.multi(Arrays.asList(
                Op.create("/m2", b("x"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_WITH_TTL, 60000),
                Op.create("/m2/c", b("y"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.CONTAINER)));
            OpResult.CreateResult r0 = (OpResult.CreateResult) rs.get(0), r1 = (OpResult.CreateResult) rs.get(1);
            expectEq("/m2", r0.getPath(), "ttl path");
            expect(r0.getStat() != null && r0.getStat().getCzxid() > 0, "createTTL in multi returns a stat: " + r0.getStat());
            expect(r1.getStat() != null && r1.getStat().getDataLength() == 1, "createContainer in multi returns a stat: " + r1.getStat());
            c.delete().deletingChildrenIfNeeded().forPath("/m2");
        });
        check("children: getEphemerals() for the whole session and by prefix", 10, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            c.create().forPath("/ep");
            c.create().withMode(CreateMode.EPHEMERAL).forPath("/ep/a1");
            c.create().withMode(CreateMode.EPHEMERAL).forPath("/ep/b1");
            c.create().withMode(CreateMode.EPHEMERAL).forPath("/epx");
            List<String> all = zk.getEphemerals();
            Collections.sort(all);
            List<String> pre = zk.getEphemerals("/ep/a");
            List<String> pre2 = zk.getEphemerals("/ep");
            Collections.sort(pre2);
            System.out.println("  info: getEphemerals() = " + all + " ('/ep/a') = " + pre + " ('/ep') = " + pre2);
            expect(all.containsAll(Arrays.asList("/ep/a1", "/ep/b1", "/epx")), "all: " + all);
            expectEq(Collections.singletonList("/ep/a1"), pre, "prefix /ep/a");
            expectEq(Arrays.asList("/ep/a1", "/ep/b1", "/epx"), pre2, "prefix /ep (string prefix, not path)");
            c.delete().forPath("/epx");
            c.delete().deletingChildrenIfNeeded().forPath("/ep");
        });
        check("watch: PersistentWatcher.close() removes the server-side watch", 15, () -> {
            c.create().forPath("/pw3");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            PersistentWatcher pw = new PersistentWatcher(c, "/pw3", true);
            pw.getListenable().addListener(q::add);
            pw.start();
            Thread.sleep(300);
            c.setData().forPath("/pw3", b("1"));
            WatchedEvent e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.NodeDataChanged, "got " + e);
            pw.close();
            Thread.sleep(300);
            // A raw ZooKeeper watch check: the server should now hold no watch on /pw3 for this session.
            Exception rm = null;
            try { c.getZookeeperClient().getZooKeeper().removeAllWatches("/pw3", Watcher.WatcherType.Any, false); }
            catch (Exception x) { rm = x; }
            System.out.println("  info: removeAllWatches after close -> " + (rm == null ? "ok" : rm.toString()));
            c.setData().forPath("/pw3", b("2"));
            expect(q.poll(500, TimeUnit.MILLISECONDS) == null, "event after close");
            c.delete().forPath("/pw3");
        });

        check("watch: getData watcher fires NodeDataChanged once", 10, () -> {
            c.create().forPath("/w1", b("a"));
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            c.getData().usingWatcher((Watcher) q::add).forPath("/w1");
            c.setData().forPath("/w1", b("b"));
            c.setData().forPath("/w1", b("c"));
            WatchedEvent e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null, "no event");
            expectEq(Watcher.Event.EventType.NodeDataChanged, e.getType(), "type");
            expectEq("/w1", e.getPath(), "path");
            expect(q.poll(300, TimeUnit.MILLISECONDS) == null, "one-shot watch fired twice");
            c.delete().forPath("/w1");
        });
        check("watch: checkExists watcher on a missing node fires NodeCreated", 10, () -> {
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            expect(c.checkExists().usingWatcher((Watcher) q::add).forPath("/w2") == null, "absent");
            c.create().forPath("/w2");
            WatchedEvent e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.NodeCreated, "got " + e);
            c.delete().forPath("/w2");
        });
        check("watch: getChildren watcher fires NodeChildrenChanged; delete fires NodeDeleted", 10, () -> {
            c.create().forPath("/w3");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            c.getChildren().usingWatcher((Watcher) q::add).forPath("/w3");
            c.create().forPath("/w3/x");
            WatchedEvent e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.NodeChildrenChanged && "/w3".equals(e.getPath()), "got " + e);
            c.getData().usingWatcher((Watcher) q::add).forPath("/w3/x");
            c.delete().forPath("/w3/x");
            e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.NodeDeleted && "/w3/x".equals(e.getPath()), "got " + e);
            c.delete().forPath("/w3");
        });
        check("watch: background getData with CuratorListener (inBackground + watched)", 10, () -> {
            c.create().forPath("/w4", b("1"));
            BlockingQueue<CuratorEvent> q = new LinkedBlockingQueue<>();
            org.apache.curator.framework.api.CuratorListener lis = (cl, ev) -> q.add(ev);
            c.getCuratorListenable().addListener(lis);
            c.getData().watched().inBackground().forPath("/w4");
            CuratorEvent ev = q.poll(5, TimeUnit.SECONDS);
            expect(ev != null && ev.getType() == CuratorEventType.GET_DATA && "1".equals(s(ev.getData())), "got " + ev);
            c.setData().forPath("/w4", b("2"));
            ev = q.poll(5, TimeUnit.SECONDS);
            expect(ev != null && ev.getType() == CuratorEventType.WATCHED
                && ev.getWatchedEvent().getType() == Watcher.Event.EventType.NodeDataChanged, "got " + ev);
            c.getCuratorListenable().removeListener(lis);
            c.delete().forPath("/w4");
        });
        check("watch: watches().remove() sends removeWatches; watcher sees DataWatchRemoved", 10, () -> {
            c.create().forPath("/w5");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            Watcher w = q::add;
            c.getData().usingWatcher(w).forPath("/w5");
            c.watches().remove(w).ofType(Watcher.WatcherType.Data).forPath("/w5");
            WatchedEvent e = q.poll(5, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.DataWatchRemoved, "got " + e);
            c.setData().forPath("/w5", b("x"));
            expect(q.poll(300, TimeUnit.MILLISECONDS) == null, "removed watch still fired");
            c.delete().forPath("/w5");
        });
        check("watch: removeAllWatches(Any) on a path with child and data watches", 10, () -> {
            c.create().forPath("/w6");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            Watcher w = q::add;
            c.getData().usingWatcher(w).forPath("/w6");
            c.getChildren().usingWatcher(w).forPath("/w6");
            c.watches().removeAll().ofType(Watcher.WatcherType.Any).forPath("/w6");
            Set<Watcher.Event.EventType> got = new HashSet<>();
            for (int i = 0; i < 2; i++) { WatchedEvent e = q.poll(5, TimeUnit.SECONDS); if (e != null) got.add(e.getType()); }
            expectEq(new HashSet<>(Arrays.asList(Watcher.Event.EventType.DataWatchRemoved,
                Watcher.Event.EventType.ChildWatchRemoved)), got, "removal events");
            c.delete().forPath("/w6");
        });
        check("watch: removing a watch the server does not hold (local=false) -> NoWatcherException", 10, () -> {
            c.create().forPath("/w7");
            Watcher w = ev -> { };
            // The Java client checks its own table first; fake the server side with a raw
            // ZooKeeper call that removes all watches of a type on a path without any.
            expectThrows(KeeperException.NoWatcherException.class,
                () -> c.getZookeeperClient().getZooKeeper().removeAllWatches("/w7", Watcher.WatcherType.Data, false),
                "removeAllWatches with no watches");
            c.delete().forPath("/w7");
        });
        check("watch: addWatch PERSISTENT (non-recursive) via watchers().add()", 10, () -> {
            c.create().forPath("/pw1");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            c.watchers().add().withMode(AddWatchMode.PERSISTENT).usingWatcher((Watcher) q::add).forPath("/pw1");
            c.setData().forPath("/pw1", b("1"));
            c.setData().forPath("/pw1", b("2"));
            c.create().forPath("/pw1/kid");
            c.setData().forPath("/pw1/kid", b("ignored: not recursive"));
            List<String> got = new ArrayList<>();
            for (int i = 0; i < 3; i++) { WatchedEvent e = q.poll(5, TimeUnit.SECONDS); if (e != null) got.add(e.getType() + " " + e.getPath()); }
            expectEq(Arrays.asList("NodeDataChanged /pw1", "NodeDataChanged /pw1", "NodeChildrenChanged /pw1"), got, "events");
            WatchedEvent extra = q.poll(300, TimeUnit.MILLISECONDS);
            expect(extra == null, "unexpected event " + extra);
            c.delete().deletingChildrenIfNeeded().forPath("/pw1");
        });
        check("recipe: PersistentWatcher (recursive) sees create/change/delete below", 15, () -> {
            c.create().forPath("/pw2");
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            PersistentWatcher pw = new PersistentWatcher(c, "/pw2", true);
            pw.getListenable().addListener(q::add);
            pw.start();
            Thread.sleep(500);
            c.create().forPath("/pw2/a", b("1"));
            c.create().forPath("/pw2/a/b", b("1"));
            c.setData().forPath("/pw2/a/b", b("2"));
            c.delete().forPath("/pw2/a/b");
            List<String> got = new ArrayList<>();
            for (int i = 0; i < 4; i++) { WatchedEvent e = q.poll(5, TimeUnit.SECONDS); if (e != null) got.add(e.getType() + " " + e.getPath()); }
            expectEq(Arrays.asList("NodeCreated /pw2/a", "NodeCreated /pw2/a/b", "NodeDataChanged /pw2/a/b", "NodeDeleted /pw2/a/b"), got, "events");
            pw.close();
            c.delete().deletingChildrenIfNeeded().forPath("/pw2");
        });

        check("recipe: CuratorCache sees initial data, create, update, delete", 20, () -> {
            c.create().forPath("/cc", b("root"));
            c.create().forPath("/cc/pre", b("p"));
            BlockingQueue<String> q = new LinkedBlockingQueue<>();
            CountDownLatch init = new CountDownLatch(1);
            CuratorCache cache = CuratorCache.build(c, "/cc");
            cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(n -> q.add("create " + n.getPath() + " " + s(n.getData())))
                .forChanges((o, n) -> q.add("change " + n.getPath() + " " + s(o.getData()) + "->" + s(n.getData())))
                .forDeletes(o -> q.add("delete " + o.getPath()))
                .forInitialized(init::countDown)
                .build());
            cache.start();
            expect(init.await(10, TimeUnit.SECONDS), "initialized");
            Set<String> initial = new HashSet<>();
            for (int i = 0; i < 2; i++) initial.add(q.poll(5, TimeUnit.SECONDS));
            expectEq(new HashSet<>(Arrays.asList("create /cc root", "create /cc/pre p")), initial, "initial events");
            c.create().forPath("/cc/a", b("1"));
            expectEq("create /cc/a 1", q.poll(5, TimeUnit.SECONDS), "create event");
            c.setData().forPath("/cc/a", b("2"));
            expectEq("change /cc/a 1->2", q.poll(5, TimeUnit.SECONDS), "change event");
            c.delete().forPath("/cc/a");
            expectEq("delete /cc/a", q.poll(5, TimeUnit.SECONDS), "delete event");
            expectEq(2, (int) cache.size(), "cache size");
            cache.close();
            c.delete().deletingChildrenIfNeeded().forPath("/cc");
        });
        check("recipe: TreeCache events", 20, () -> {
            c.create().forPath("/tc");
            BlockingQueue<String> q = new LinkedBlockingQueue<>();
            TreeCache tc = TreeCache.newBuilder(c, "/tc").build();
            tc.getListenable().addListener((cl, ev) -> q.add(ev.getType() + (ev.getData() != null ? " " + ev.getData().getPath() : "")));
            tc.start();
            expectEq("NODE_ADDED /tc", q.poll(5, TimeUnit.SECONDS), "root added");
            expectEq("INITIALIZED", q.poll(5, TimeUnit.SECONDS), "initialized");
            c.create().forPath("/tc/x", b("1"));
            expectEq("NODE_ADDED /tc/x", q.poll(5, TimeUnit.SECONDS), "added");
            c.setData().forPath("/tc/x", b("2"));
            expectEq("NODE_UPDATED /tc/x", q.poll(5, TimeUnit.SECONDS), "updated");
            c.delete().forPath("/tc/x");
            expectEq("NODE_REMOVED /tc/x", q.poll(5, TimeUnit.SECONDS), "removed");
            tc.close();
            c.delete().forPath("/tc");
        });
        check("recipe: NodeCache and PathChildrenCache", 20, () -> {
            c.create().forPath("/nc", b("0"));
            NodeCache nc = new NodeCache(c, "/nc");
            BlockingQueue<String> q = new LinkedBlockingQueue<>();
            nc.getListenable().addListener(() -> q.add("node " + (nc.getCurrentData() == null ? null : s(nc.getCurrentData().getData()))));
            nc.start(true);
            expectEq("0", s(nc.getCurrentData().getData()), "initial");
            c.setData().forPath("/nc", b("1"));
            expectEq("node 1", q.poll(5, TimeUnit.SECONDS), "node changed");
            nc.close();
            PathChildrenCache pcc = new PathChildrenCache(c, "/nc", true);
            pcc.getListenable().addListener((cl, ev) -> q.add(ev.getType() + (ev.getData() != null ? " " + ev.getData().getPath() : "")));
            pcc.start(PathChildrenCache.StartMode.POST_INITIALIZED_EVENT);
            expectEq("INITIALIZED", q.poll(5, TimeUnit.SECONDS), "initialized");
            c.create().forPath("/nc/k", b("v"));
            expectEq("CHILD_ADDED /nc/k", q.poll(5, TimeUnit.SECONDS), "child added");
            c.delete().forPath("/nc/k");
            expectEq("CHILD_REMOVED /nc/k", q.poll(5, TimeUnit.SECONDS), "child removed");
            pcc.close();
            c.delete().forPath("/nc");
        });

        check("recipe: InterProcessMutex, 3 clients x 4 acquisitions, never overlapping", 60, () -> {
            AtomicInteger holders = new AtomicInteger(), maxHolders = new AtomicInteger(), acquired = new AtomicInteger();
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < 3; t++) {
                CuratorFramework x = newClient();
                fs.add(runner.submit(() -> {
                    InterProcessMutex m = new InterProcessMutex(x, "/locks/mutex");
                    for (int i = 0; i < 4; i++) {
                        if (!m.acquire(20, TimeUnit.SECONDS)) throw new AssertionError("acquire timed out");
                        int h = holders.incrementAndGet();
                        maxHolders.accumulateAndGet(h, Math::max);
                        Thread.sleep(30);
                        holders.decrementAndGet();
                        acquired.incrementAndGet();
                        m.release();
                    }
                    x.close();
                    return null;
                }));
            }
            for (Future<?> f : fs) f.get(50, TimeUnit.SECONDS);
            expectEq(12, acquired.get(), "acquisitions");
            expectEq(1, maxHolders.get(), "max simultaneous holders");
            // /locks/mutex is a container: once empty, the reaper (checkIntervalMs=1000 here, as
            // on ZooKeeper) may already have removed it, which also means no lock node is left.
            List<String> left;
            try {
                left = c.getChildren().forPath("/locks/mutex");
            } catch (KeeperException.NoNodeException reaped) {
                left = List.of();
            }
            expectEq(0, left.size(), "lock nodes left");
        });
        check("recipe: InterProcessMutex is re-entrant and acquire(timeout) fails while held", 20, () -> {
            CuratorFramework x = newClient();
            InterProcessMutex m1 = new InterProcessMutex(c, "/locks/re");
            InterProcessMutex m2 = new InterProcessMutex(x, "/locks/re");
            m1.acquire(); m1.acquire();
            expect(!m2.acquire(500, TimeUnit.MILLISECONDS), "second client got a held lock");
            m1.release();
            expect(!m2.acquire(300, TimeUnit.MILLISECONDS), "released once of twice, still held");
            m1.release();
            expect(m2.acquire(5, TimeUnit.SECONDS), "free now");
            m2.release();
            x.close();
        });
        check("recipe: InterProcessReadWriteLock and InterProcessSemaphoreV2", 20, () -> {
            InterProcessReadWriteLock rw = new InterProcessReadWriteLock(c, "/locks/rw");
            CuratorFramework x = newClient();
            InterProcessReadWriteLock rw2 = new InterProcessReadWriteLock(x, "/locks/rw");
            rw.readLock().acquire();
            expect(rw2.readLock().acquire(3, TimeUnit.SECONDS), "two readers");
            expect(!rw2.writeLock().acquire(300, TimeUnit.MILLISECONDS), "writer blocked by reader");
            rw.readLock().release(); rw2.readLock().release();
            expect(rw2.writeLock().acquire(5, TimeUnit.SECONDS), "writer after readers");
            rw2.writeLock().release();
            InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(c, "/locks/sem", 2);
            Collection<Lease> leases = sem.acquire(2, 5, TimeUnit.SECONDS);
            expect(leases != null && leases.size() == 2, "two leases");
            InterProcessSemaphoreV2 sem2 = new InterProcessSemaphoreV2(x, "/locks/sem", 2);
            expect(sem2.acquire(300, TimeUnit.MILLISECONDS) == null, "third lease refused");
            sem.returnAll(leases);
            Lease l = sem2.acquire(5, TimeUnit.SECONDS);
            expect(l != null, "lease after return");
            sem2.returnLease(l);
            x.close();
        });
        check("recipe: InterProcessSemaphoreMutex (non-reentrant)", 15, () -> {
            InterProcessSemaphoreMutex m = new InterProcessSemaphoreMutex(c, "/locks/sm");
            expect(m.acquire(5, TimeUnit.SECONDS), "acquire");
            expect(!m.acquire(300, TimeUnit.MILLISECONDS), "not re-entrant");
            m.release();
        });

        check("recipe: LeaderLatch with 2 participants hands over when the leader closes", 40, () -> {
            CuratorFramework x1 = newClient(), x2 = newClient();
            LeaderLatch l1 = new LeaderLatch(x1, "/election/latch", "p1");
            LeaderLatch l2 = new LeaderLatch(x2, "/election/latch", "p2");
            l1.start(); l2.start();
            long deadline = System.currentTimeMillis() + 10000;
            while (!l1.hasLeadership() && !l2.hasLeadership() && System.currentTimeMillis() < deadline) Thread.sleep(50);
            expect(l1.hasLeadership() ^ l2.hasLeadership(), "exactly one leader: " + l1.hasLeadership() + "/" + l2.hasLeadership());
            LeaderLatch leader = l1.hasLeadership() ? l1 : l2, other = leader == l1 ? l2 : l1;
            Thread.sleep(300);
            expectEq(leader.getId(), other.getLeader().getId(), "other sees the leader");
            expectEq(2, other.getParticipants().size(), "participants");
            leader.close();
            expect(other.await(10, TimeUnit.SECONDS), "hand-over");
            expect(other.hasLeadership(), "other leads");
            other.close();
            x1.close(); x2.close();
        });
        check("recipe: LeaderSelector runs takeLeadership in both, one at a time", 40, () -> {
            CuratorFramework x1 = newClient(), x2 = newClient();
            AtomicInteger inside = new AtomicInteger(), max = new AtomicInteger();
            CountDownLatch done = new CountDownLatch(2);
            List<LeaderSelector> sels = new ArrayList<>();
            for (CuratorFramework x : Arrays.asList(x1, x2)) {
                LeaderSelector sel = new LeaderSelector(x, "/election/sel", new LeaderSelectorListenerAdapter() {
                    @Override public void takeLeadership(CuratorFramework cf) throws Exception {
                        max.accumulateAndGet(inside.incrementAndGet(), Math::max);
                        Thread.sleep(200);
                        inside.decrementAndGet();
                        done.countDown();
                    }
                });
                sels.add(sel);
                sel.start();
            }
            expect(done.await(20, TimeUnit.SECONDS), "both led");
            expectEq(1, max.get(), "simultaneous leaders");
            for (LeaderSelector s : sels) s.close();
            x1.close(); x2.close();
        });

        check("recipe: DistributedBarrier releases a waiter on removeBarrier", 20, () -> {
            DistributedBarrier bar = new DistributedBarrier(c, "/barrier/b");
            bar.setBarrier();
            CuratorFramework x = newClient();
            Future<Boolean> w = runner.submit(() -> new DistributedBarrier(x, "/barrier/b").waitOnBarrier(15, TimeUnit.SECONDS));
            Thread.sleep(500);
            expect(!w.isDone(), "waiter passed a set barrier");
            bar.removeBarrier();
            expect(w.get(10, TimeUnit.SECONDS), "waiter released");
            x.close();
        });
        check("recipe: DistributedDoubleBarrier with 2 members enters and leaves", 30, () -> {
            CuratorFramework x = newClient();
            DistributedDoubleBarrier d1 = new DistributedDoubleBarrier(c, "/barrier/dd", 2);
            DistributedDoubleBarrier d2 = new DistributedDoubleBarrier(x, "/barrier/dd", 2);
            Future<Boolean> f = runner.submit(() -> d2.enter(15, TimeUnit.SECONDS) && d2.leave(15, TimeUnit.SECONDS));
            expect(d1.enter(15, TimeUnit.SECONDS), "enter");
            expect(d1.leave(15, TimeUnit.SECONDS), "leave");
            expect(f.get(15, TimeUnit.SECONDS), "other member");
            x.close();
        });
        check("recipe: DistributedQueue put 5 / consume 5 in order", 30, () -> {
            BlockingQueue<String> got = new LinkedBlockingQueue<>();
            QueueSerializer<String> ser = new QueueSerializer<String>() {
                public byte[] serialize(String item) { return b(item); }
                public String deserialize(byte[] bytes) { return s(bytes); }
            };
            QueueConsumer<String> cons = new QueueConsumer<String>() {
                public void consumeMessage(String m) { got.add(m); }
                public void stateChanged(CuratorFramework cf, ConnectionState st) { }
            };
            DistributedQueue<String> q = QueueBuilder.builder(c, cons, ser, "/queue/dq").buildQueue();
            q.start();
            for (int i = 0; i < 5; i++) q.put("item" + i);
            List<String> all = new ArrayList<>();
            for (int i = 0; i < 5; i++) { String m = got.poll(10, TimeUnit.SECONDS); if (m != null) all.add(m); }
            expectEq(Arrays.asList("item0", "item1", "item2", "item3", "item4"), all, "consumed");
            q.close();
        });
        check("recipe: SimpleDistributedQueue offer/take across clients", 20, () -> {
            CuratorFramework x = newClient();
            SimpleDistributedQueue q1 = new SimpleDistributedQueue(c, "/queue/simple");
            SimpleDistributedQueue q2 = new SimpleDistributedQueue(x, "/queue/simple");
            Future<byte[]> f = runner.submit(() -> q2.take());
            Thread.sleep(300);
            q1.offer(b("hello"));
            expectEq("hello", s(f.get(10, TimeUnit.SECONDS)), "taken");
            expect(q1.poll() == null, "empty");
            x.close();
        });
        check("recipe: SharedCount trySetCount and listener in another client", 20, () -> {
            CuratorFramework x = newClient();
            SharedCount a = new SharedCount(c, "/shared/count", 0);
            SharedCount bb = new SharedCount(x, "/shared/count", 0);
            BlockingQueue<Integer> q = new LinkedBlockingQueue<>();
            bb.addListener(new SharedCountListener() {
                public void countHasChanged(SharedCountReader r, int n) { q.add(n); }
                public void stateChanged(CuratorFramework cf, ConnectionState st) { }
            });
            a.start(); bb.start();
            org.apache.curator.framework.recipes.shared.VersionedValue<Integer> stale = a.getVersionedValue();
            expect(a.trySetCount(stale, 5), "trySetCount");
            expectEq(5, q.poll(5, TimeUnit.SECONDS), "listener");
            expect(!bb.trySetCount(stale, 9), "stale version refused");
            expectEq(5, a.getCount(), "count");
            a.close(); bb.close(); x.close();
        });
        check("recipe: DistributedAtomicLong increment x10 from 2 clients", 30, () -> {
            CuratorFramework x = newClient();
            List<Future<?>> fs = new ArrayList<>();
            for (CuratorFramework cf : Arrays.asList(c, x)) {
                fs.add(runner.submit(() -> {
                    DistributedAtomicLong al = new DistributedAtomicLong(cf, "/shared/along", new ExponentialBackoffRetry(10, 20));
                    for (int i = 0; i < 10; i++) {
                        AtomicValue<Long> v = al.increment();
                        if (!v.succeeded()) throw new AssertionError("increment failed");
                    }
                    return null;
                }));
            }
            for (Future<?> f : fs) f.get(25, TimeUnit.SECONDS);
            expectEq(20L, new DistributedAtomicLong(c, "/shared/along", new RetryOneTime(10)).get().postValue(), "value");
            x.close();
        });
        check("recipe: GroupMember and PersistentNode (ephemeral)", 20, () -> {
            CuratorFramework x = newClient();
            GroupMember g1 = new GroupMember(c, "/group", "m1", b("one"));
            GroupMember g2 = new GroupMember(x, "/group", "m2", b("two"));
            g1.start(); g2.start();
            long deadline = System.currentTimeMillis() + 10000;
            while (g1.getCurrentMembers().size() < 2 && System.currentTimeMillis() < deadline) Thread.sleep(50);
            expectEq(new HashSet<>(Arrays.asList("m1", "m2")), g1.getCurrentMembers().keySet(), "members");
            g2.close();
            x.close();
            deadline = System.currentTimeMillis() + 10000;
            while (g1.getCurrentMembers().size() > 1 && System.currentTimeMillis() < deadline) Thread.sleep(50);
            expectEq(Collections.singleton("m1"), g1.getCurrentMembers().keySet(), "members after close");
            g1.close();
            PersistentNode pn = new PersistentNode(c, CreateMode.EPHEMERAL, false, "/pnode", b("p"));
            pn.start();
            expect(pn.waitForInitialCreate(5, TimeUnit.SECONDS), "created");
            c.delete().forPath("/pnode");
            deadline = System.currentTimeMillis() + 10000;
            while (c.checkExists().forPath("/pnode") == null && System.currentTimeMillis() < deadline) Thread.sleep(50);
            expect(c.checkExists().forPath("/pnode") != null, "PersistentNode re-created its node");
            pn.close();
        });

        check("transaction: forOperations create/setData/check/delete commit", 10, () -> {
            c.create().forPath("/tx", b("0"));
            CuratorOp op1 = c.transactionOp().create().forPath("/tx/a", b("a"));
            CuratorOp op2 = c.transactionOp().setData().withVersion(0).forPath("/tx", b("1"));
            CuratorOp op3 = c.transactionOp().check().withVersion(1).forPath("/tx");
            CuratorOp op4 = c.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/tx/s-");
            CuratorOp op5 = c.transactionOp().delete().forPath("/tx/a");
            List<CuratorTransactionResult> rs = c.transaction().forOperations(op1, op2, op3, op4, op5);
            expectEq(5, rs.size(), "results");
            expectEq(OperationType.CREATE, rs.get(0).getType(), "op0 type");
            expectEq("/tx/a", rs.get(0).getResultPath(), "op0 path");
            expectEq(1, rs.get(1).getResultStat().getVersion(), "op1 stat version");
            expectEq(OperationType.CHECK, rs.get(2).getType(), "op2 type");
            expectEq("/tx/s-0000000001", rs.get(3).getResultPath(), "sequential in a transaction");
            expectEq(OperationType.DELETE, rs.get(4).getType(), "op4 type");
            expectEq(Collections.singletonList("s-0000000001"), c.getChildren().forPath("/tx"), "children");
        });
        check("transaction: a failing check rolls back and reports per-op results", 10, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            try {
                zk.multi(Arrays.asList(
                    Op.create("/tx/b", b("b"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                    Op.check("/tx", 99),
                    Op.setData("/tx", b("x"), -1)));
                throw new AssertionError("multi succeeded");
            } catch (KeeperException e) {
                expectEq(KeeperException.Code.BADVERSION, e.code(), "exception code");
                List<OpResult> rs = e.getResults();
                List<Integer> codes = new ArrayList<>();
                for (OpResult r : rs) codes.add(r instanceof OpResult.ErrorResult ? ((OpResult.ErrorResult) r).getErr() : 999);
                expectEq(Arrays.asList(0, -103, -2), codes, "per-op error codes");
            }
            expect(c.checkExists().forPath("/tx/b") == null, "rolled back");
            expectEq("1", s(c.getData().forPath("/tx")), "data unchanged");
        });
        check("transaction: read-only multi (getData/getChildren ops)", 10, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            List<OpResult> rs = zk.multi(Arrays.asList(Op.getData("/tx"), Op.getChildren("/tx"), Op.getData("/tx/none")));
            expectEq(3, rs.size(), "results");
            expect(rs.get(0) instanceof OpResult.GetDataResult, "getData result " + rs.get(0));
            expectEq("1", s(((OpResult.GetDataResult) rs.get(0)).getData()), "data");
            expectEq(Collections.singletonList("s-0000000001"), ((OpResult.GetChildrenResult) rs.get(1)).getChildren(), "children");
            expect(rs.get(2) instanceof OpResult.ErrorResult && ((OpResult.ErrorResult) rs.get(2)).getErr() == -101, "missing node error " + rs.get(2));
        });
        check("transaction: mixing read and write ops is refused", 10, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            Exception e = expectThrows(Exception.class,
                () -> zk.multi(Arrays.asList(Op.getData("/tx"), Op.setData("/tx", b("z"), -1))), "mixed multi");
            System.out.println("  info: mixed multi -> " + e);
            expectEq("1", s(c.getData().forPath("/tx")), "data unchanged");
            c.delete().deletingChildrenIfNeeded().forPath("/tx");
        });
        check("transaction: legacy inTransaction() API", 10, () -> {
            @SuppressWarnings("deprecation")
            Collection<CuratorTransactionResult> rs = c.inTransaction().create().forPath("/ltx").and().setData().forPath("/ltx", b("q")).and().commit();
            expectEq(2, rs.size(), "results");
            c.delete().forPath("/ltx");
        });

        check("pipelining: background setData/getData(watched)/setData in a row; read sees its own position", 30, () -> {
            // Curator's inBackground() calls return at once; the ZooKeeper client sends them on
            // one socket back to back. A read must see the session's earlier writes and none of
            // its later ones, and a watch it sets must fire for the later write.
            int rounds = 20, stale = 0, future = 0, missed = 0;
            for (int i = 0; i < rounds; i++) {
                String path = "/pipe" + i;
                c.create().forPath(path, b("old"));
                CountDownLatch done = new CountDownLatch(3);
                AtomicReference<String> read = new AtomicReference<>();
                BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
                c.setData().inBackground((cf, ev) -> done.countDown()).forPath(path, b("mid"));
                c.getData().usingWatcher((Watcher) q::add).inBackground((cf, ev) -> { read.set(s(ev.getData())); done.countDown(); }).forPath(path);
                c.setData().inBackground((cf, ev) -> done.countDown()).forPath(path, b("new"));
                expect(done.await(10, TimeUnit.SECONDS), "callbacks");
                if ("old".equals(read.get())) stale++;
                if ("new".equals(read.get())) future++;
                if (q.poll(1, TimeUnit.SECONDS) == null) missed++;
                c.delete().forPath(path);
            }
            System.out.println("  info: " + rounds + " rounds: getData saw a later write " + future + "x, an earlier state " + stale + "x; watch never fired " + missed + "x");
            expectEq(0, future, "reads that saw the session's later write");
            expectEq(0, stale, "reads that missed the session's earlier write");
            expectEq(0, missed, "watches that never fired");
        });
        check("ordering: async replies and watch events are dispatched in zxid order", 30, () -> {
            // ZooKeeper: "Watches are ordered with respect to other events, other watches, and
            // asynchronous replies." Two background writes; a watch on the second one's node.
            int rounds = 20, bad = 0;
            String example = null;
            for (int i = 0; i < rounds; i++) {
                String a = "/orda" + i, bpath = "/ordb" + i;
                c.create().forPath(a, b("0"));
                c.create().forPath(bpath, b("0"));
                List<String> order = Collections.synchronizedList(new ArrayList<>());
                CountDownLatch done = new CountDownLatch(3);
                c.getData().usingWatcher((Watcher) e -> { order.add("watch(b)"); done.countDown(); }).forPath(bpath);
                c.setData().inBackground((cf, ev) -> { order.add("reply(a)"); done.countDown(); }).forPath(a, b("1"));
                c.setData().inBackground((cf, ev) -> { order.add("reply(b)"); done.countDown(); }).forPath(bpath, b("1"));
                expect(done.await(10, TimeUnit.SECONDS), "callbacks " + order);
                if (!order.equals(Arrays.asList("reply(a)", "watch(b)", "reply(b)"))) { bad++; example = order.toString(); }
                c.delete().forPath(a);
                c.delete().forPath(bpath);
            }
            System.out.println("  info: " + rounds + " rounds: out-of-order dispatch " + bad + "x" + (example == null ? "" : ", e.g. " + example));
            expectEq(0, bad, "rounds dispatched out of order (want reply(a), watch(b), reply(b))");
        });
        check("reconnect: watches set before a disconnect, changes made while away (setWatches/setWatches2 replay)", 60, () -> {
            if ("-".equals(restartScript)) return;
            // A HostProvider that can point the client at a closed port keeps it away while
            // another client changes things after the server restart.
            AtomicBoolean hold = new AtomicBoolean(false);
            java.net.InetSocketAddress real = new java.net.InetSocketAddress(connect.split(":")[0], Integer.parseInt(connect.split(":")[1]));
            org.apache.zookeeper.client.HostProvider hp = new org.apache.zookeeper.client.HostProvider() {
                public int size() { return 1; }
                public java.net.InetSocketAddress next(long spin) {
                    try { Thread.sleep(Math.min(spin, 200)); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
                    return hold.get() ? new java.net.InetSocketAddress("127.0.0.1", 1) : real;
                }
                public void onConnected() { }
                public boolean updateServerList(Collection<java.net.InetSocketAddress> l, java.net.InetSocketAddress cur) { return false; }
            };
            BlockingQueue<String> states = new LinkedBlockingQueue<>();
            ZooKeeper zk = new ZooKeeper(connect, 20000, ev -> { if (ev.getType() == Watcher.Event.EventType.None) states.add(ev.getState().toString()); }, false, hp);
            try {
                expectEq("SyncConnected", states.poll(10, TimeUnit.SECONDS), "connected");
                for (String n : new String[] {"/rw", "/rw/data", "/rw/kids", "/rw/pers", "/rw/rec", "/rw/same"}) c.create().forPath(n, b("0"));
                BlockingQueue<String> ev = new LinkedBlockingQueue<>();
                Watcher w = e -> { if (e.getType() != Watcher.Event.EventType.None) ev.add(e.getType() + " " + e.getPath()); };
                zk.getData("/rw/data", w, null);
                zk.exists("/rw/new", w);
                zk.getChildren("/rw/kids", w);
                zk.getData("/rw/same", w, null);
                zk.addWatch("/rw/pers", w, AddWatchMode.PERSISTENT);
                zk.addWatch("/rw/rec", w, AddWatchMode.PERSISTENT_RECURSIVE);
                hold.set(true);
                Process p = new ProcessBuilder("bash", restartScript).inheritIO().start();
                expectEq(0, p.waitFor(), "restart script");
                expect(c.getZookeeperClient().blockUntilConnectedOrTimedOut(), "main client back");
                c.setData().forPath("/rw/data", b("1"));
                c.create().forPath("/rw/new");
                c.create().forPath("/rw/kids/k");
                c.setData().forPath("/rw/pers", b("1"));
                c.create().forPath("/rw/rec/x");
                hold.set(false);
                String st;
                while ((st = states.poll(20, TimeUnit.SECONDS)) != null && !st.equals("SyncConnected")) { }
                expectEq("SyncConnected", st, "reconnected");
                Thread.sleep(1000);
                Set<String> replayed = new TreeSet<>();
                String e;
                while ((e = ev.poll(200, TimeUnit.MILLISECONDS)) != null) replayed.add(e);
                System.out.println("  info: replayed after reconnect: " + replayed);
                // ZooKeeper 3.8 replays one-shot watches whose node changed after relativeZxid and
                // re-adds persistent watches without replaying what they missed.
                expectEq(new TreeSet<>(Arrays.asList("NodeChildrenChanged /rw/kids", "NodeCreated /rw/new", "NodeDataChanged /rw/data")), replayed, "replayed events");
                c.setData().forPath("/rw/same", b("1"));
                c.setData().forPath("/rw/pers", b("2"));
                c.create().forPath("/rw/rec/y");
                Set<String> later = new TreeSet<>();
                for (int i = 0; i < 3; i++) { e = ev.poll(5, TimeUnit.SECONDS); if (e != null) later.add(e); }
                expectEq(new TreeSet<>(Arrays.asList("NodeCreated /rw/rec/y", "NodeDataChanged /rw/pers", "NodeDataChanged /rw/same")), later, "watches still armed");
            } finally {
                zk.close();
                c.delete().deletingChildrenIfNeeded().forPath("/rw");
                c.delete().quietly().forPath("/rw/new");
            }
        });
        check("ttl: a TTL node touched by setData outlives its TTL; then expires", 40, () -> {
            c.create().withTtl(1500).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath("/ttltouch", b("x"));
            for (int i = 0; i < 8; i++) {
                Thread.sleep(500);
                c.setData().forPath("/ttltouch", b("x" + i));
            }
            expect(c.checkExists().forPath("/ttltouch") != null, "touched TTL node reaped");
            long t = System.currentTimeMillis(), deadline = t + 20000;
            while (c.checkExists().forPath("/ttltouch") != null && System.currentTimeMillis() < deadline) Thread.sleep(100);
            expect(c.checkExists().forPath("/ttltouch") == null, "not reaped");
            System.out.println("  info: touched TTL node reaped " + (System.currentTimeMillis() - t) + " ms after the last setData (ttl 1500)");
        });
        check("container: reaped after its only (ephemeral) child's session closes", 30, () -> {
            CuratorFramework x = newClient();
            x.create().creatingParentContainersIfNeeded().withMode(CreateMode.EPHEMERAL).forPath("/ceph/parent/e");
            x.close();
            long deadline = System.currentTimeMillis() + 20000;
            while ((c.checkExists().forPath("/ceph") != null) && System.currentTimeMillis() < deadline) Thread.sleep(100);
            expect(c.checkExists().forPath("/ceph/parent") == null, "/ceph/parent not reaped");
            expect(c.checkExists().forPath("/ceph") == null, "/ceph not reaped (after its child container went)");
        });
        check("acl: exists() and watches on a node the client may not READ (3.8 semantics)", 20, () -> {
            String digest = DigestAuthenticationProvider.generateDigest("frank:pw");
            List<ACL> only = Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("digest", digest)));
            CuratorFramework f = CuratorFrameworkFactory.builder().connectString(connect)
                .retryPolicy(new RetryOneTime(100)).authorization("digest", b("frank:pw")).build();
            f.start();
            expect(f.blockUntilConnected(10, TimeUnit.SECONDS), "connected");
            synchronized (clients) { clients.add(f); }
            f.create().forPath("/secret", b("open parent"));
            // c (no auth) watches for a node it will not be able to read, and recursively below /secret
            BlockingQueue<String> ev = new LinkedBlockingQueue<>();
            c.checkExists().usingWatcher((Watcher) e -> ev.add("exists-watch " + e.getType() + " " + e.getPath())).forPath("/secret/hidden");
            c.watchers().add().withMode(AddWatchMode.PERSISTENT_RECURSIVE).usingWatcher((Watcher) e -> ev.add("recursive " + e.getType() + " " + e.getPath())).forPath("/secret");
            f.create().withACL(only).forPath("/secret/hidden", b("s"));
            Set<String> got = new TreeSet<>();
            String e;
            while ((e = ev.poll(1, TimeUnit.SECONDS)) != null) got.add(e);
            String existsResult;
            try { Stat st = c.checkExists().forPath("/secret/hidden"); existsResult = st == null ? "null" : "stat(version=" + st.getVersion() + ")"; }
            catch (Exception x) { existsResult = x.getClass().getSimpleName(); }
            System.out.println("  info: events for a node created unreadable: " + got + "; exists() by a client without READ -> " + existsResult);
            f.delete().forPath("/secret/hidden");
            f.delete().forPath("/secret");
            f.close();
            // exists() checks READ since 3.9 (ZOOKEEPER-2590), which ferrozk follows; 3.8.0 gives the Stat.
            boolean v39 = !"zookeeper".equals(System.getenv("CLIENTS_BACKEND"));
            expectEq(v39 ? "NoAuthException" : "stat(version=0)", existsResult, "exists() on an unreadable node");
            // Debian's 3.8.0 (+deb12u2, with the CVE-2024-23944 fix) checks READ before it
            // delivers a notification: neither watch fires.
            expectEq(new TreeSet<>(), got, "notifications for an unreadable node");
        });

        check("acl: creatingParentsIfNeeded below a parent the client may CREATE in but not READ", 15, () -> {
            // ZKPaths.mkdirs calls exists() on every ancestor first.
            List<ACL> createOnly = Collections.singletonList(new ACL(ZooDefs.Perms.CREATE | ZooDefs.Perms.DELETE, ZooDefs.Ids.ANYONE_ID_UNSAFE));
            c.create().withACL(createOnly).forPath("/dropbox");
            String result;
            try { c.create().creatingParentsIfNeeded().forPath("/dropbox/inbox/item", b("x")); result = "created"; }
            catch (Exception x) { result = x.getClass().getSimpleName(); }
            System.out.println("  info: creatingParentsIfNeeded under a CREATE-only parent -> " + result);
            c.delete().quietly().forPath("/dropbox/inbox/item");
            c.delete().quietly().forPath("/dropbox/inbox");
            c.delete().forPath("/dropbox");
            // With 3.9's exists() READ check (ZOOKEEPER-2590), which ferrozk follows, Curator's
            // exists() on the unreadable ancestor fails; 3.8.0 lets it through.
            boolean v39 = !"zookeeper".equals(System.getenv("CLIENTS_BACKEND"));
            expectEq(v39 ? "NoAuthException" : "created", result, "result");
        });
        check("acl: digest ACL, authorization(), NoAuth, getACL/setACL", 15, () -> {
            String digest = DigestAuthenticationProvider.generateDigest("alice:secret");
            List<ACL> acl = Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id("digest", digest)));
            c.create().withACL(acl).forPath("/acl", b("secret"));
            expectThrows(KeeperException.NoAuthException.class, () -> c.getData().forPath("/acl"), "read without auth");
            CuratorFramework a = CuratorFrameworkFactory.builder().connectString(connect)
                .retryPolicy(new RetryOneTime(100)).authorization("digest", b("alice:secret")).build();
            a.start();
            expect(a.blockUntilConnected(10, TimeUnit.SECONDS), "connected");
            synchronized (clients) { clients.add(a); }
            expectEq("secret", s(a.getData().forPath("/acl")), "read with auth");
            Stat st = new Stat();
            List<ACL> got = a.getACL().storingStatIn(st).forPath("/acl");
            expectEq(acl, got, "getACL");
            a.setACL().withACL(ZooDefs.Ids.READ_ACL_UNSAFE).forPath("/acl");
            expectEq(1, a.checkExists().forPath("/acl").getAversion(), "aversion");
            expectEq("secret", s(c.getData().forPath("/acl")), "world-readable now");
            expectThrows(KeeperException.NoAuthException.class, () -> c.setData().forPath("/acl", b("x")), "write refused");
            // auth scheme ACL: "auth" id becomes the digest of the authenticated user
            a.create().withACL(ZooDefs.Ids.CREATOR_ALL_ACL).forPath("/acl2");
            expectEq(acl, a.getACL().forPath("/acl2"), "CREATOR_ALL_ACL expanded");
            expectThrows(KeeperException.InvalidACLException.class,
                () -> c.create().withACL(ZooDefs.Ids.CREATOR_ALL_ACL).forPath("/acl3"), "auth ACL without auth");
            a.delete().forPath("/acl2");
            a.close();
            c.delete().forPath("/acl");
        });

        check("namespace: usingNamespace creates the namespace node on first use", 10, () -> {
            CuratorFramework ns = c.usingNamespace("ns1");
            ns.create().forPath("/x", b("1"));
            expect(c.checkExists().forPath("/ns1/x") != null, "namespaced path");
            expectEq("1", s(ns.getData().forPath("/x")), "read through namespace");
            c.delete().deletingChildrenIfNeeded().forPath("/ns1");
        });
        check("sync: sync().forPath then read", 10, () -> {
            CountDownLatch l = new CountDownLatch(1);
            AtomicInteger rc = new AtomicInteger(-999);
            c.sync().inBackground((cf, ev) -> { rc.set(ev.getResultCode()); l.countDown(); }).forPath("/");
            expect(l.await(5, TimeUnit.SECONDS), "sync callback");
            expectEq(0, rc.get(), "sync result code");
        });
        check("data: 1000000-byte value round trip; > jute.maxbuffer refused", 30, () -> {
            byte[] big = new byte[1000000];
            Arrays.fill(big, (byte) 'z');
            c.create().forPath("/big", big);
            expectEq(1000000, c.getData().forPath("/big").length, "read back");
            c.delete().forPath("/big");
            // a raw client without Curator's retries
            CountDownLatch conn = new CountDownLatch(1);
            ZooKeeper raw = new ZooKeeper(connect, 10000, ev -> { if (ev.getState() == Watcher.Event.KeeperState.SyncConnected) conn.countDown(); });
            try {
                expect(conn.await(10, TimeUnit.SECONDS), "raw connected");
                byte[] huge = new byte[1100000];
                Exception e = expectThrows(Exception.class, () -> raw.create("/huge", huge, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT), "oversize create");
                System.out.println("  info: oversize create -> " + e);
                expect(c.checkExists().forPath("/huge") == null, "not created");
            } finally { raw.close(); }
        });
        check("session: ephemeral node vanishes for others when its client closes", 20, () -> {
            CuratorFramework x = newClient();
            x.create().withMode(CreateMode.EPHEMERAL).forPath("/eph", b("e"));
            BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
            c.checkExists().usingWatcher((Watcher) q::add).forPath("/eph");
            x.close();
            WatchedEvent e = q.poll(10, TimeUnit.SECONDS);
            expect(e != null && e.getType() == Watcher.Event.EventType.NodeDeleted, "got " + e);
        });
        check("session: two handles re-attach to one session (sessionId+password)", 20, () -> {
            ZooKeeper zk = c.getZookeeperClient().getZooKeeper();
            CountDownLatch conn = new CountDownLatch(1);
            ZooKeeper same = new ZooKeeper(connect, 15000, ev -> { if (ev.getState() == Watcher.Event.KeeperState.SyncConnected) conn.countDown(); },
                zk.getSessionId(), zk.getSessionPasswd());
            try {
                expect(conn.await(10, TimeUnit.SECONDS), "re-attached");
                expectEq(zk.getSessionId(), same.getSessionId(), "same session");
            } finally {
                // Not close(): that would close the shared session. Drop the handle locally so
                // that it stops taking the connection back from the main client.
                same.getTestable().injectSessionExpiration();
            }
            // wrong password -> expired
            CountDownLatch exp = new CountDownLatch(1);
            byte[] bad = zk.getSessionPasswd().clone();
            bad[0] ^= 1;
            ZooKeeper wrong = new ZooKeeper(connect, 15000, ev -> { if (ev.getState() == Watcher.Event.KeeperState.Expired) exp.countDown(); },
                zk.getSessionId(), bad);
            expect(exp.await(10, TimeUnit.SECONDS), "wrong password gives Expired");
            wrong.close();
            // the first handle may have been moved off by the second one; Curator reconnects it
            Thread.sleep(500);
            expect(c.getZookeeperClient().blockUntilConnectedOrTimedOut(), "main client still usable");
            c.checkExists().forPath("/");
        });

        if (!"-".equals(restartScript)) {
            check("restart: server restart keeps session, ephemerals and watches (SUSPENDED->RECONNECTED)", 60, () -> {
                CuratorFramework x = newClient(new ExponentialBackoffRetry(200, 10), 20000);
                long sid = x.getZookeeperClient().getZooKeeper().getSessionId();
                x.create().withMode(CreateMode.EPHEMERAL).forPath("/survivor", b("s"));
                c.create().forPath("/watched", b("0"));
                BlockingQueue<WatchedEvent> q = new LinkedBlockingQueue<>();
                x.getData().usingWatcher((Watcher) q::add).forPath("/watched");
                BlockingQueue<ConnectionState> states = new LinkedBlockingQueue<>();
                x.getConnectionStateListenable().addListener((cf, st) -> states.add(st));
                Process p = new ProcessBuilder("bash", restartScript).inheritIO().start();
                expectEq(0, p.waitFor(), "restart script status");
                List<ConnectionState> seen = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 30000;
                while (!seen.contains(ConnectionState.RECONNECTED) && !seen.contains(ConnectionState.LOST) && System.currentTimeMillis() < deadline) {
                    ConnectionState st = states.poll(1, TimeUnit.SECONDS);
                    if (st != null) seen.add(st);
                }
                expect(seen.contains(ConnectionState.RECONNECTED), "states " + seen);
                expect(!seen.contains(ConnectionState.LOST), "states " + seen);
                expectEq(sid, x.getZookeeperClient().getZooKeeper().getSessionId(), "same session");
                expect(c.getZookeeperClient().blockUntilConnectedOrTimedOut(), "main client reconnected");
                expect(c.checkExists().forPath("/survivor") != null, "ephemeral survived");
                c.setData().forPath("/watched", b("1"));
                WatchedEvent e;
                List<String> evs = new ArrayList<>();
                do { e = q.poll(10, TimeUnit.SECONDS); if (e != null) evs.add(e.getState() + "/" + e.getType()); }
                while (e != null && e.getType() == Watcher.Event.EventType.None);
                expect(e != null && e.getType() == Watcher.Event.EventType.NodeDataChanged, "watch re-registered after restart, got " + evs);
                x.close();
                c.delete().forPath("/watched");
            });
        }

        finish(t0);
    }

    static void finish(long t0) {
        synchronized (clients) { for (CuratorFramework x : clients) closeQuietly(x); }
        System.out.println("curator checks took " + (System.currentTimeMillis() - t0) / 1000.0 + " s");
        System.out.println(passed + " passed, " + failed + " failed");
        System.out.flush();
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }
}

// A Java client (ZooKeeper 3.8's own) that stays connected while Apache ZooKeeper is stopped
// and ferrozk starts on its data directory (cutover.py drives it over stdin and stdout).
//
//   java CutoverClient host:port
//   prints  READY 0x<session> <lock node> <member node>   once it holds its nodes and watch
//   reads   CHECK   then checks its session and nodes, prints CHECKED, and waits for the
//                   change the driver makes to /cutover/config (persistent watch)
//   prints  PASS name / FAIL name: why, then DONE
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;

public class CutoverClient {
    static int failed = 0;

    static void check(String name, boolean ok, String why) {
        System.out.println(ok ? "PASS " + name : "FAIL " + name + ": " + why);
        if (!ok) failed++;
    }

    public static void main(String[] args) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        AtomicBoolean expired = new AtomicBoolean(false);
        ZooKeeper zk = new ZooKeeper(args[0], 15000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) connected.countDown();
            if (e.getState() == Watcher.Event.KeeperState.Expired) expired.set(true);
        });
        if (!connected.await(30, TimeUnit.SECONDS)) throw new IllegalStateException("not connected");
        long session = zk.getSessionId();
        String lock = zk.create("/cutover/jlock/java-lock-", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE,
                CreateMode.EPHEMERAL_SEQUENTIAL);
        String member = zk.create("/cutover/members/java", new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE,
                CreateMode.EPHEMERAL);
        CountDownLatch changed = new CountDownLatch(1);
        AtomicReference<String> seen = new AtomicReference<>("");
        zk.addWatch("/cutover/config", (WatchedEvent e) -> {
            if (e.getType() == Watcher.Event.EventType.NodeDataChanged) {
                seen.set(e.getPath());
                changed.countDown();
            }
        }, AddWatchMode.PERSISTENT);
        System.out.printf("READY 0x%x %s %s%n", session, lock, member);
        System.out.flush();

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line = in.readLine();
        if (!"CHECK".equals(line)) throw new IllegalStateException("expected CHECK, got " + line);
        // The client reconnects by itself; wait until it is connected again.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!zk.getState().isConnected() && System.nanoTime() < deadline) Thread.sleep(50);
        check("reconnected", zk.getState().isConnected(), "state " + zk.getState());
        check("session kept", zk.getSessionId() == session && !expired.get(),
                String.format("0x%x now, expired=%s", zk.getSessionId(), expired.get()));
        for (String path : new String[] {lock, member}) {
            Stat st = zk.exists(path, false);
            check("ephemeral kept " + path, st != null && st.getEphemeralOwner() == session,
                    st == null ? "gone" : String.format("owner 0x%x", st.getEphemeralOwner()));
        }
        System.out.println("CHECKED");
        System.out.flush();
        check("persistent watch fired", changed.await(20, TimeUnit.SECONDS) && "/cutover/config".equals(seen.get()),
                "no NodeDataChanged within 20 s");
        zk.close();
        System.out.println("DONE " + failed);
        System.out.flush();
        System.exit(failed == 0 ? 0 : 1);
    }
}

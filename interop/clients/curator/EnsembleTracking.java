// One Curator 5.4 client with its default ensemble tracking (EnsembleTracker rewrites the
// connection string from /zookeeper/config), driven by ensemble_tracking.py over stdin/stdout:
//
//   java EnsembleTracking CONNECT_STRING
//
// Prints "READY" once connected. Commands, one a line:
//   tracked HOST:PORT,...  waits up to 15 s for the connection string to hold exactly these
//                          hosts (in any order) for 2 s in a row; prints "TRACKED <connection string>"
//   work                   within 60 s, creates and deletes a node (retrying through connection
//                          loss and session expiry); prints "WORK ok <connection string>" or
//                          "WORK fail <last error> <connection string>"
//   quit
import java.io.*;
import java.util.*;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;

public class EnsembleTracking {
    static Set<String> hosts(String connect) {
        return new TreeSet<>(Arrays.asList(connect.split(",")));
    }

    public static void main(String[] args) throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.builder()
                .connectString(args[0])
                .sessionTimeoutMs(4000)
                .connectionTimeoutMs(2000)
                .retryPolicy(new ExponentialBackoffRetry(100, 3, 1000))
                .build();
        c.start();
        if (!c.blockUntilConnected(30, java.util.concurrent.TimeUnit.SECONDS)) {
            System.out.println("ERROR not connected");
            System.exit(1);
        }
        System.out.println("READY");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String[] cmd = line.trim().split(" ");
            if (cmd[0].equals("tracked")) {
                // Equal for 2 s in a row: the tracker rewrites the string a moment after it
                // connects or sees a change, so an early match proves nothing.
                Set<String> want = hosts(cmd.length > 1 ? cmd[1] : "");
                String now = c.getZookeeperClient().getCurrentConnectionString();
                long equalSince = -1;
                for (long end = System.currentTimeMillis() + 15_000; System.currentTimeMillis() < end; ) {
                    now = c.getZookeeperClient().getCurrentConnectionString();
                    if (!hosts(now).equals(want)) {
                        equalSince = -1;
                    } else if (equalSince < 0) {
                        equalSince = System.currentTimeMillis();
                    } else if (System.currentTimeMillis() - equalSince >= 2_000) {
                        break;
                    }
                    Thread.sleep(100);
                }
                System.out.println("TRACKED " + now);
            } else if (cmd[0].equals("work")) {
                String last = "none";
                boolean ok = false;
                for (long end = System.currentTimeMillis() + 60_000; !ok && System.currentTimeMillis() < end; ) {
                    try {
                        String p = c.create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath("/tracking-", new byte[0]);
                        c.delete().forPath(p);
                        ok = true;
                    } catch (Exception e) {
                        last = e.getClass().getSimpleName();
                        Thread.sleep(200);
                    }
                }
                String now = c.getZookeeperClient().getCurrentConnectionString();
                System.out.println(ok ? "WORK ok " + now : "WORK fail " + last + " " + now);
            } else if (cmd[0].equals("quit")) {
                break;
            }
        }
        c.close();
        System.exit(0);
    }
}

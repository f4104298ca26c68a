//! `ferrozk cli` against an in-process ferrozk server: outputs and exit statuses of commands given
//! on the command line and of scripts read from standard input, as zkCli prints them.

use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};

use ferrozk_cli::{run_with, Input, Output};
use ferrozk_server::Server;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn server(name: &str) -> Server {
    let d = std::env::temp_dir().join(format!("ferrozk-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let mut b = Server::builder().client_addr("127.0.0.1:0".parse().unwrap()).data_dir(d).tick_time(200);
    b.config_mut().extended_types_enabled = true;
    b.config_mut().enforce_quota = true;
    b.start().await.unwrap()
}

/// Runs `ferrozk cli ARGS` with `stdin` as its (non-terminal) input; returns the exit status
/// and standard output and error interleaved as written, without the connection banner lines.
async fn cli(args: &[&str], stdin: &str) -> (i32, String) {
    let buf = Buf::default();
    let out = Output::new(Box::new(buf.clone()), Box::new(buf.clone()));
    let input = Input::Lines(Box::new(Cursor::new(stdin.as_bytes().to_vec())));
    let code = run_with(args.iter().map(|s| s.to_string()).collect(), input, out).await;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.retain(|l| {
        !l.starts_with("Connecting to ")
            && *l != "Welcome to ZooKeeper!"
            && *l != "JLine support is disabled"
            && !l.ends_with("type:None path:null")
    });
    // A watch event is "\nWATCHER::\n\nWatchedEvent ...": keep only the event line.
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].is_empty() && lines.get(i + 1) == Some(&"WATCHER::") {
            i += 3;
            continue;
        }
        if lines[i].is_empty() && lines.get(i + 1).is_some_and(|l| l.starts_with("WatchedEvent ")) {
            i += 1;
            continue;
        }
        kept.push(lines[i]);
        i += 1;
    }
    (code, kept.join("\n"))
}

fn stat_shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| match l.split_once(" = ") {
            Some((k, _)) if ["cZxid", "mZxid", "pZxid", "ctime", "mtime", "ephemeralOwner"].contains(&k) => {
                format!("{k} = *")
            }
            _ => l.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn one_command_from_the_arguments_sets_the_exit_status() {
    let s = server("oneshot").await;
    let cs = s.connect_string();
    assert_eq!(cli(&["-server", &cs, "create", "/a", "hello world"], "").await, (0, "Created /a".into()));
    assert_eq!(cli(&["-server", &cs, "get", "/a"], "").await, (0, "hello world".into()));
    assert_eq!(cli(&["-server", &cs, "ls", "/"], "").await, (0, "[a, zookeeper]".into()));
    assert_eq!(cli(&["-server", &cs, "get", "/nope"], "").await, (1, "Node does not exist: /nope".into()));
    assert_eq!(cli(&["-server", &cs, "create", "/a"], "").await, (1, "Node already exists: /a".into()));
    assert_eq!(
        cli(&["-server", &cs, "create", "-z", "/b"], "").await,
        (1, "org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: -z".into())
    );
    let (code, text) = cli(&["-server", &cs, "bogus"], "").await;
    assert_eq!(code, 127);
    assert!(text.starts_with("ZooKeeper -server host:port -client-configuration properties-file cmd args\n\taddWatch "));
    assert!(text.ends_with("\twhoami \nCommand not found: Command not found bogus"), "{text}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_script_on_standard_input() {
    let s = server("script").await;
    let script = "\
create /n data
get -s /n
set -v 5 /n x
set -s /n \"two words\"
create /n/c
delete /n
delete /zookeeper
create -e /n/e
create -e /n/e/x
get /n/e
create bad
ls -s /n
getAllChildrenNumber /
stat /nope
quit
";
    let (code, text) = cli(&["-server", &s.connect_string()], script).await;
    // quit exits with the status of the command before it (stat failed).
    assert_eq!(code, 1);
    let want = "\
Created /n
data
cZxid = *
ctime = *
mZxid = *
mtime = *
pZxid = *
cversion = 0
dataVersion = 0
aclVersion = 0
ephemeralOwner = *
dataLength = 4
numChildren = 0
version No is not valid : /n
cZxid = *
ctime = *
mZxid = *
mtime = *
pZxid = *
cversion = 0
dataVersion = 1
aclVersion = 0
ephemeralOwner = *
dataLength = 9
numChildren = 0
Created /n/c
Node not empty: /n
Arguments are not valid : /zookeeper
Created /n/e
Ephemerals cannot have children: /n/e/x
null
Path must start with / character
[c, e]
cZxid = *
ctime = *
mZxid = *
mtime = *
pZxid = *
cversion = 2
dataVersion = 1
aclVersion = 0
ephemeralOwner = *
dataLength = 9
numChildren = 2
6
Node does not exist: /nope";
    assert_eq!(stat_shape(&text), want.lines().map(String::from).collect::<Vec<_>>(), "{text}");
    s.shutdown().await;
}

#[tokio::test]
async fn watches_are_printed_as_they_fire() {
    let s = server("watch").await;
    let script = "\
create /w a
get -w /w
ls -w /w
set /w b
set /w c
create /w/k
addWatch -m PERSISTENT_RECURSIVE /w
create /w/k/deep
deleteall /w
removewatches /w
stat -w /w
create /w
printwatches off
get -w /w
set /w d
";
    let (code, text) = cli(&["-server", &s.connect_string()], script).await;
    assert_eq!(code, 0);
    let want = "\
Created /w
a
[]
WatchedEvent state:SyncConnected type:NodeDataChanged path:/w
WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/w
Created /w/k
WatchedEvent state:SyncConnected type:NodeCreated path:/w/k/deep
Created /w/k/deep
WatchedEvent state:SyncConnected type:NodeDeleted path:/w/k/deep
WatchedEvent state:SyncConnected type:NodeDeleted path:/w/k
WatchedEvent state:SyncConnected type:NodeDeleted path:/w
WatchedEvent state:SyncConnected type:PersistentWatchRemoved path:/w
Node does not exist: /w
WatchedEvent state:SyncConnected type:NodeCreated path:/w
Created /w
null";
    assert_eq!(text, want);
    s.shutdown().await;
}

#[tokio::test]
async fn acls_auth_and_quotas() {
    let s = server("acl").await;
    let script = "\
create /acl x digest:user1:+7K83PhyQ3ijGj0ADmljf0quVwQ=:cdrwa
get /acl
getAcl /acl
create /bad x sasl:foo
addauth digest user1:pass1
setAcl /acl world:anyone:rz
get /acl
whoami
create /q
setquota -n 2 /q
setquota -B 5 /q
listquota /q
get /zookeeper/quota/q/zookeeper_limits
create /q/a 0123456789
create -t 3600000 /q/t
create -t 0 /t
delquota /q
listquota /q
";
    let (code, text) = cli(&["-server", &s.connect_string()], script).await;
    assert_eq!(code, 0);
    let want = "\
Created /acl
Insufficient permission : /acl
Insufficient permission : /acl
sasl:foo does not have the form scheme:id:perm
KeeperErrorCode = InvalidACL
Acl is not valid : null
Unknown perm type: z
x
Auth scheme: User
digest: user1
ip: 127.0.0.1
Created /q
listquota-placeholder
count=2,bytes=-1=;byteHardLimit=5;countHardLimit=-1
Quota has exceeded : /q/a
Created /q/t
ttl must be positive and cannot be larger than: 1099511627775
absolute path is /zookeeper/quota/q/zookeeper_limits
quota for /q does not exist.";
    let want = want.replace(
        "listquota-placeholder",
        "absolute path is /zookeeper/quota/q/zookeeper_limits\n\
         Output quota for /q count=2,bytes=-1=;byteHardLimit=5;countHardLimit=-1\n\
         Output stat for /q count=1,bytes=0",
    );
    assert_eq!(text, want);
    s.shutdown().await;
}

#[tokio::test]
async fn chroot_close_connect_and_history() {
    let s = server("chroot").await;
    let cs = s.connect_string();
    assert_eq!(cli(&["-server", &cs, "create", "/app"], "").await.0, 0);
    let script = format!(
        "\
create -s /job- x
ls /
close
ls /
connect {cs}
ls /
history
redo 1
printwatches
"
    );
    let (code, text) = cli(&["-server", &format!("{cs}/app")], &script).await;
    assert_eq!(code, 0);
    let want = format!(
        "\
Created /job-0000000000
[job-0000000000]
Not connected
[app, zookeeper]
0 - create -s /job- x
1 - ls /
2 - close
3 - ls /
4 - connect {cs}
5 - ls /
6 - history
[app, zookeeper]
printwatches is on"
    );
    assert_eq!(text, want);
    s.shutdown().await;
}

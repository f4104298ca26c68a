//! zkCli's main loop (`ZooKeeperMain`) and its commands (`org.apache.zookeeper.cli.*`): which
//! stream each line goes to, the messages, the exit codes.
//!
//! Over 800 lines on purpose: one short function per zkCli command, in zkCli's order, so that a
//! command's output can be checked against its Java class side by side.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use ferrozk_proto::codes::{perms, watcher_type, CreateMode};
use ferrozk_proto::{Acl, ErrorCode, Id, Stat};

use crate::api::{check_ttl, ZkErr};
use crate::format::{self, hex_dump, id_to_string, java_sort, perm_string, stat_lines, utf8, StatsTrack};
use crate::opts::{self, flag, options_help, valued, Parsed, Spec};
use crate::session::{EventSink, KeeperError, States, WatchedEvent, Zk};

/// Standard output and standard error of the shell, shared with the task that prints watch
/// events. Every line is flushed as it is written, as Java's `System.out`/`System.err` do.
#[derive(Clone)]
pub struct Output(Arc<Mutex<Streams>>);

type Streams = (Box<dyn Write + Send>, Box<dyn Write + Send>);

impl Output {
    pub fn new(out: Box<dyn Write + Send>, err: Box<dyn Write + Send>) -> Output {
        Output(Arc::new(Mutex::new((out, err))))
    }

    pub fn stdio() -> Output {
        Output::new(Box::new(std::io::stdout()), Box::new(std::io::stderr()))
    }

    /// `System.out.print`: no newline.
    pub fn print(&self, s: &str) {
        let mut g = self.0.lock().unwrap();
        let _ = g.0.write_all(s.as_bytes());
        let _ = g.0.flush();
    }

    pub fn out(&self, s: &str) {
        self.print(&format!("{s}\n"));
    }

    pub fn err(&self, s: &str) {
        let mut g = self.0.lock().unwrap();
        let _ = g.1.write_all(format!("{s}\n").as_bytes());
        let _ = g.1.flush();
    }
}

/// A `CliException`: its message goes to standard error and its code becomes the exit status.
#[derive(Debug, Clone)]
pub struct CliError {
    pub msg: String,
    pub code: i32,
}

impl CliError {
    fn new(msg: impl Into<String>) -> CliError {
        CliError { msg: msg.into(), code: 1 }
    }
}

/// `CliWrapperException`'s message for a `KeeperException`.
pub fn wrapper_message(e: &KeeperError) -> String {
    let p = e.path.clone().unwrap_or_else(|| "null".into());
    match ErrorCode::from_code(e.code) {
        Some(ErrorCode::NoNode) => format!("Node does not exist: {p}"),
        Some(ErrorCode::NoChildrenForEphemerals) => format!("Ephemerals cannot have children: {p}"),
        Some(ErrorCode::NodeExists) => format!("Node already exists: {p}"),
        Some(ErrorCode::NotEmpty) => format!("Node not empty: {p}"),
        Some(ErrorCode::NotReadOnly) => format!("Not a read-only call: {p}"),
        Some(ErrorCode::InvalidAcl) => format!("Acl is not valid : {p}"),
        Some(ErrorCode::NoAuth) => format!("Insufficient permission : {p}"),
        Some(ErrorCode::BadArguments) => format!("Arguments are not valid : {p}"),
        Some(ErrorCode::BadVersion) => format!("version No is not valid : {p}"),
        Some(ErrorCode::ReconfigInProgress) => {
            "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)".into()
        }
        Some(ErrorCode::NewConfigNoQuorum) => "No quorum of new config is connected and up-to-date with the leader of last commmitted config - try invoking reconfiguration after new servers are connected and synced".into(),
        Some(ErrorCode::QuotaExceeded) => format!("Quota has exceeded : {p}"),
        _ => e.to_string(),
    }
}

fn wrap(e: ZkErr) -> CliError {
    match e {
        ZkErr::Keeper(k) => CliError::new(wrapper_message(&k)),
        ZkErr::Illegal(m) => CliError::new(m),
    }
}

fn parse_err(e: opts::ParseError) -> CliError {
    CliError::new(e.to_string())
}

/// `Integer.parseInt`, with the message of its `NumberFormatException`.
fn parse_i32(s: &str) -> Result<i32, CliError> {
    java_int(s).and_then(|v| i32::try_from(v).ok()).ok_or_else(|| number_format(s))
}

fn java_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

fn number_format(s: &str) -> CliError {
    CliError::new(format!("java.lang.NumberFormatException: For input string: \"{s}\""))
}

/// `Integer.decode`: decimal, 0x/# hex, 0 octal, with a sign.
fn java_decode(s: &str) -> Option<i32> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (radix, digits) =
        if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")).or_else(|| body.strip_prefix('#')) {
            (16, h)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    i32::try_from(if neg { -v } else { v }).ok()
}

/// Java's `String.split(sep)`: trailing empty strings dropped.
fn java_split(s: &str, sep: char) -> Vec<&str> {
    if !s.contains(sep) {
        return vec![s];
    }
    let mut v: Vec<&str> = s.split(sep).collect();
    while v.last() == Some(&"") {
        v.pop();
    }
    v
}

/// `MyCommandOptions.parseCommand`: words separated by whitespace, or quoted with " or ' (the
/// quotes are dropped). Follows the regex `\s*([^"']\S*|"[^"]*"|'[^']*')\s*` found repeatedly.
pub fn split_command(line: &str) -> Vec<String> {
    let c: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut from = 0;
    while let Some((word, next)) = next_word(&c, from) {
        words.push(word);
        from = next;
    }
    words
}

fn is_java_space(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// The next match of the word pattern at or after `from`: the word (unquoted) and where the
/// search goes on.
fn next_word(c: &[char], from: usize) -> Option<(String, usize)> {
    for p in from..c.len() {
        let mut ws_end = p;
        while ws_end < c.len() && is_java_space(c[ws_end]) {
            ws_end += 1;
        }
        // \s* gives characters back one at a time until the group can match.
        for k in (p..=ws_end.min(c.len() - 1)).rev() {
            let end = if c[k] != '"' && c[k] != '\'' {
                let mut e = k + 1;
                while e < c.len() && !is_java_space(c[e]) {
                    e += 1;
                }
                Some(e)
            } else {
                c[k + 1..].iter().position(|&x| x == c[k]).map(|i| k + 1 + i + 1)
            };
            let Some(e) = end else { continue };
            let w = &c[k..e];
            let word: String = if w.len() >= 2 && (w[0] == '"' || w[0] == '\'') && w[w.len() - 1] == w[0] {
                w[1..w.len() - 1].iter().collect()
            } else {
                w.iter().collect()
            };
            let mut next = e;
            while next < c.len() && is_java_space(c[next]) {
                next += 1;
            }
            return Some((word, next));
        }
    }
    None
}

/// `AclParser.parse`: bad entries are reported on standard error and left out.
fn parse_acl(s: &str, out: &Output) -> Vec<Acl> {
    let mut acl = Vec::new();
    for a in java_split(s, ',') {
        let (first, last) = (a.find(':'), a.rfind(':'));
        let (Some(first), Some(last)) = (first, last) else {
            out.err(&format!("{a} does not have the form scheme:id:perm"));
            continue;
        };
        if first == last {
            out.err(&format!("{a} does not have the form scheme:id:perm"));
            continue;
        }
        let mut p = 0;
        for ch in a[last + 1..].chars() {
            match ch {
                'r' => p |= perms::READ,
                'w' => p |= perms::WRITE,
                'c' => p |= perms::CREATE,
                'd' => p |= perms::DELETE,
                'a' => p |= perms::ADMIN,
                other => out.err(&format!("Unknown perm type: {other}")),
            }
        }
        acl.push(Acl { perms: p, id: Id { scheme: a[..first].to_string(), id: a[first + 1..last].to_string() } });
    }
    acl
}

fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

const QUOTA_ZK: &str = "/zookeeper/quota";
const LIMIT_NODE: &str = "zookeeper_limits";
const STAT_NODE: &str = "zookeeper_stats";

fn quota_path(p: &str) -> String {
    format!("{QUOTA_ZK}{p}")
}
fn limit_path(p: &str) -> String {
    format!("{QUOTA_ZK}{p}/{LIMIT_NODE}")
}
fn stat_path(p: &str) -> String {
    format!("{QUOTA_ZK}{p}/{STAT_NODE}")
}

/// The commands zkCli lists, with their argument syntax (`commandMap`).
pub const COMMANDS: &[(&str, &str)] = &[
    ("addWatch", "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE"),
    ("addauth", "scheme auth"),
    ("close", ""),
    ("config", "[-c] [-w] [-s]"),
    ("connect", "host:port"),
    ("create", "[-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "[-v version] path"),
    ("deleteall", "path [-b batch size]"),
    ("delquota", "[-n|-b|-N|-B] path"),
    ("get", "[-s] [-w] [-b] [-x] path"),
    ("getAcl", "[-s] path"),
    ("getAllChildrenNumber", "path"),
    ("getEphemerals", "path"),
    ("history", ""),
    ("listquota", "path"),
    ("ls", "[-s] [-w] [-R] path"),
    ("printwatches", "on|off"),
    ("quit", ""),
    ("reconfig", "[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]"),
    ("redo", "cmdno"),
    ("removewatches", "path [-c|-d|-a] [-l]"),
    ("set", "path data [-s] [-v version] [-b]"),
    ("setAcl", "[-s] [-v version] [-R] path acl"),
    ("setquota", "-n|-b|-N|-B val path"),
    ("stat", "[-w] path"),
    ("sync", "path"),
    ("version", ""),
    ("whoami", ""),
];

fn syntax(cmd: &str) -> &'static str {
    COMMANDS.iter().find(|(c, _)| *c == cmd).map(|(_, s)| *s).unwrap_or("")
}

/// `getUsageStr()`: the syntax, and for `get` and `set` the option lines zkCli 3.9 adds.
fn usage_of(cmd: &str) -> String {
    let base = format!("{cmd} {}", syntax(cmd));
    match cmd {
        "get" => format!("{base}\n{}", options_help(GET.opts)),
        "set" => format!("{base}\n{}", options_help(SET.opts)),
        _ => base,
    }
}

fn usage_err(cmd: &str) -> CliError {
    CliError::new(usage_of(cmd))
}

const NONE: Spec = Spec::new(&[]);
const CREATE: Spec = Spec::new(&[flag("e", "ephemeral"), flag("s", "sequential"), flag("c", "container"), valued("t", "ttl")]);
const DELETE: Spec = Spec::new(&[valued("v", "version")]);
const DELETEALL: Spec = Spec::new(&[valued("b", "batch size")]);
const SET: Spec = Spec::new(&[
    flag("s", "Print znode stats additionally"),
    valued("v", "Set with an expected version"),
    flag("b", "Supply data in base64 format"),
]);
const GET: Spec = Spec::new(&[
    flag("s", "Print znode stats additionally"),
    flag("w", "Watch for changes on the znode"),
    flag("b", "Output data in base64 format"),
    flag("x", "Output data in hexdump format"),
]);
const LS: Spec = Spec::new(&[flag("?", "help"), flag("s", "stat"), flag("w", "watch"), flag("R", "recurse")]);
const STAT: Spec = Spec::new(&[flag("w", "watch")]);
const GETACL: Spec = Spec::new(&[flag("s", "stats")]);
const SETACL: Spec = Spec::new(&[flag("s", "stats"), valued("v", "version"), flag("R", "recursive")]);
pub(crate) const SETQUOTA: Spec = Spec {
    opts: &[
        valued("n", "num soft quota"),
        valued("b", "bytes soft quota"),
        valued("N", "num hard quota"),
        valued("B", "bytes hard quota"),
    ],
    group: &["n", "b", "N", "B"],
    group_required: true,
};
const DELQUOTA: Spec = Spec {
    opts: &[
        flag("n", "num soft quota"),
        flag("b", "bytes soft quota"),
        flag("N", "num hard quota"),
        flag("B", "bytes hard quota"),
    ],
    group: &["n", "b", "N", "B"],
    group_required: false,
};
const CONFIG: Spec = Spec::new(&[flag("s", "stats"), flag("w", "watch"), flag("c", "client connection string")]);
const RECONFIG: Spec = Spec::new(&[
    flag("s", "stats"),
    valued("v", "required current config version"),
    valued("file", "path of config file to parse for membership"),
    valued("members", "comma-separated list of config strings for non-incremental reconfig"),
    valued("add", "comma-separated list of config strings for new servers"),
    valued("remove", "comma-separated list of server IDs to remove"),
]);
const REMOVEWATCHES: Spec = Spec::new(&[
    flag("c", "child watcher type"),
    flag("d", "data watcher type"),
    flag("p", "persistent watcher type"),
    flag("r", "persistent recursive watcher type"),
    flag("a", "any watcher type"),
    flag("l", "remove locally when there is no server connection"),
]);
const ADDWATCH: Spec = Spec::new(&[valued("m", "")]);

/// What `visitSubTreeDFS` does at each node.
enum Visit {
    Print,
    SetAcl {
        acl: Vec<Acl>,
        version: i32,
    },
    /// setquota's check that no node below `path` has a quota (`own` is its own quota node).
    QuotaBelow {
        path: String,
        own: String,
    },
}

/// What the main loop does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// `quit`: exit with this status.
    Exit(i32),
}

/// zkCli's options and state (`ZooKeeperMain`).
pub struct Shell {
    pub out: Output,
    pub zk: Option<Zk>,
    /// The same session, for the line editor's completion.
    pub shared_zk: Arc<Mutex<Option<Zk>>>,
    pub host: String,
    pub timeout_ms: i32,
    pub read_only: bool,
    pub wait_for_connection: bool,
    pub history: HashMap<i32, String>,
    pub command_count: i32,
    pub print_watches: Arc<AtomicBool>,
    pub exit_code: i32,
    /// addWatch keeps the mode of its last `-m` (zkCli reuses one command object).
    add_watch_recursive: bool,
    /// The words of the last parsed line: a line with no word runs them again, as zkCli does.
    last_words: Option<Vec<String>>,
}

impl Shell {
    pub fn new(out: Output, timeout_ms: i32, read_only: bool, wait_for_connection: bool) -> Shell {
        Shell {
            out,
            zk: None,
            shared_zk: Arc::new(Mutex::new(None)),
            host: String::new(),
            timeout_ms,
            read_only,
            wait_for_connection,
            history: HashMap::new(),
            command_count: 0,
            print_watches: Arc::new(AtomicBool::new(true)),
            exit_code: 0,
            add_watch_recursive: true,
            last_words: None,
        }
    }

    /// The prompt: `[zk: host(STATE) N] `.
    pub fn prompt(&self) -> String {
        let st = self.zk.as_ref().map(|z| z.state()).unwrap_or(States::NotConnected);
        format!("[zk: {}({}) {}] ", self.host, st.name(), self.command_count)
    }

    fn sink(&self) -> EventSink {
        let out = self.out.clone();
        let on = self.print_watches.clone();
        Arc::new(move |ev: &WatchedEvent| {
            if on.load(Ordering::SeqCst) {
                out.print(&format!("\nWATCHER::\n\n{ev}\n"));
            }
        })
    }

    /// `connectToZK`: closes a live session, then starts a new one to `host`.
    pub async fn connect(&mut self, host: &str) -> Result<(), CliError> {
        if let Some(zk) = &self.zk {
            if zk.state().is_alive() {
                zk.close().await;
            }
        }
        self.host = host.to_string();
        let zk = Zk::new(host, self.timeout_ms, self.read_only, self.sink()).map_err(CliError::new)?;
        if self.wait_for_connection && !zk.wait_connected(Duration::from_millis(self.timeout_ms.max(0) as u64)).await {
            zk.close().await;
            self.zk = Some(zk);
            return Err(CliError::new("KeeperErrorCode = ConnectionLoss"));
        }
        *self.shared_zk.lock().unwrap() = Some(zk.clone());
        self.zk = Some(zk);
        Ok(())
    }

    /// `usage()`, on standard error.
    fn usage(&self) {
        let mut s = String::from("ZooKeeper -server host:port -client-configuration properties-file cmd args");
        for (c, o) in COMMANDS {
            s.push_str(&format!("\n\t{c} {o}"));
        }
        self.out.err(&s);
    }

    /// `executeLine`: one line typed or read.
    pub async fn execute_line(&mut self, line: &str) -> Flow {
        if line.is_empty() {
            return Flow::Continue;
        }
        let words = split_command(line);
        let words = if words.is_empty() { self.last_words.clone().unwrap_or_default() } else { words };
        self.last_words = Some(words.clone());
        self.history.insert(self.command_count, line.to_string());
        let flow = self.process_cmd(words).await;
        self.command_count += 1;
        flow
    }

    /// `processCmd`: runs a command; its error is printed and becomes the exit status.
    pub async fn process_cmd(&mut self, words: Vec<String>) -> Flow {
        match Box::pin(self.process_zk_cmd(words)).await {
            Ok(flow) => {
                if flow == Flow::Continue {
                    self.exit_code = 0;
                }
                flow
            }
            Err(e) => {
                self.exit_code = e.code;
                self.out.err(&e.msg);
                Flow::Continue
            }
        }
    }

    async fn process_zk_cmd(&mut self, args: Vec<String>) -> Result<Flow, CliError> {
        let Some(cmd) = args.first().cloned() else {
            self.usage();
            return Err(CliError::new("No command entered"));
        };
        if !COMMANDS.iter().any(|(c, _)| *c == cmd) {
            self.usage();
            return Err(CliError { msg: format!("Command not found: Command not found {cmd}"), code: 127 });
        }
        match cmd.as_str() {
            "quit" => {
                if let Some(zk) = &self.zk {
                    zk.close().await;
                }
                return Ok(Flow::Exit(self.exit_code));
            }
            "redo" if args.len() >= 2 => {
                let i = java_decode(&args[1]).ok_or_else(|| number_format(&args[1]))?;
                if self.command_count <= i || i < 0 {
                    return Err(CliError::new("Command index out of range"));
                }
                let line = self.history.get(&i).cloned().unwrap_or_default();
                let words = split_command(&line);
                if words.first().map(String::as_str) == Some("redo") {
                    return Err(CliError::new("No redoing redos"));
                }
                self.history.insert(self.command_count, line);
                if let Flow::Exit(c) = Box::pin(self.process_cmd(words)).await {
                    return Ok(Flow::Exit(c));
                }
            }
            "history" => {
                for i in (self.command_count - 10)..=self.command_count {
                    if i < 0 {
                        continue;
                    }
                    let h = self.history.get(&i).cloned().unwrap_or_else(|| "null".into());
                    self.out.out(&format!("{i} - {h}"));
                }
            }
            "printwatches" => {
                if args.len() == 1 {
                    let on = self.print_watches.load(Ordering::SeqCst);
                    self.out.out(&format!("printwatches is {}", if on { "on" } else { "off" }));
                } else {
                    self.print_watches.store(args[1] == "on", Ordering::SeqCst);
                }
            }
            "connect" => {
                let host = if args.len() >= 2 { args[1].clone() } else { self.host.clone() };
                self.connect(&host).await?;
            }
            _ => {}
        }
        let zk = match &self.zk {
            Some(z) if z.state().is_alive() => z.clone(),
            _ => {
                self.out.out("Not connected");
                return Ok(Flow::Continue);
            }
        };
        self.run_command(&zk, &cmd, &args).await?;
        Ok(Flow::Continue)
    }

    async fn run_command(&mut self, zk: &Zk, cmd: &str, args: &[String]) -> Result<(), CliError> {
        match cmd {
            "addWatch" => self.add_watch(zk, args).await,
            "addauth" => self.add_auth(zk, args).await,
            "close" => {
                zk.close().await;
                Ok(())
            }
            "config" => self.config(zk, args).await,
            "create" => self.create(zk, args).await,
            "delete" => self.delete(zk, args).await,
            "deleteall" => self.delete_all(zk, args).await,
            "delquota" => self.del_quota(zk, args).await,
            "get" => self.get(zk, args).await,
            "getAcl" => self.get_acl(zk, args).await,
            "getAllChildrenNumber" => self.get_all_children_number(zk, args).await,
            "getEphemerals" => self.get_ephemerals(zk, args).await,
            "listquota" => self.list_quota(zk, args).await,
            "ls" => self.ls(zk, args).await,
            "reconfig" => self.reconfig(zk, args).await,
            "removewatches" => self.remove_watches(zk, args).await,
            "set" => self.set(zk, args).await,
            "setAcl" => self.set_acl(zk, args).await,
            "setquota" => self.set_quota(zk, args).await,
            "stat" => self.stat(zk, args).await,
            "sync" => self.sync(zk, args).await,
            "version" => self.version(args),
            "whoami" => self.who_am_i(zk).await,
            // connect, history, printwatches, quit, redo: done above.
            _ => Ok(()),
        }
    }

    fn print_stat(&self, s: &Stat) {
        for l in stat_lines(s) {
            self.out.out(&l);
        }
    }

    async fn add_watch(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&ADDWATCH, args).map_err(parse_err)?;
        if p.args.len() != 2 {
            return Err(usage_err("addWatch"));
        }
        if let Some(m) = p.value("m") {
            self.add_watch_recursive = match m.to_uppercase().as_str() {
                "PERSISTENT" => false,
                "PERSISTENT_RECURSIVE" => true,
                _ => return Err(usage_err("addWatch")),
            };
        }
        zk.add_watch(&p.args[1], self.add_watch_recursive).await.map_err(wrap)
    }

    async fn add_auth(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("addauth"));
        }
        let auth = p.args.get(2).map(|a| a.as_bytes().to_vec());
        zk.add_auth(&p.args[1], auth).await;
        Ok(())
    }

    async fn config(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&CONFIG, args).map_err(parse_err)?;
        let (data, stat) = zk.get_config(p.has("w")).await.map_err(wrap)?;
        let text = data.map(|d| utf8(&d)).unwrap_or_else(|| "null".into());
        if p.has("c") {
            self.out.out(&client_config_str(&text));
        } else {
            self.out.out(&text);
        }
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn create(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&CREATE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("create"));
        }
        let (e, s, c, t) = (p.has("e"), p.has("s"), p.has("c"), p.has("t"));
        if c && (e || s) {
            return Err(CliError::new("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential."));
        }
        let ttl = if t {
            java_int(p.value("t").unwrap_or("")).ok_or_else(|| CliError::new("-t argument must be a long value"))?
        } else {
            0
        };
        if t && e {
            return Err(CliError::new("TTLs cannot be used with Ephemeral znodes"));
        }
        if t && c {
            return Err(CliError::new("TTLs cannot be used with Container znodes"));
        }
        let mode = if e && s {
            CreateMode::EphemeralSequential
        } else if e {
            CreateMode::Ephemeral
        } else if s {
            if t {
                CreateMode::PersistentSequentialWithTtl
            } else {
                CreateMode::PersistentSequential
            }
        } else if c {
            CreateMode::Container
        } else if t {
            CreateMode::PersistentWithTtl
        } else {
            CreateMode::Persistent
        };
        if t {
            check_ttl(ttl).map_err(CliError::new)?;
        }
        let path = &p.args[1];
        let data = p.args.get(2).map(|d| d.as_bytes().to_vec());
        let acl = match p.args.get(3) {
            Some(a) => parse_acl(a, &self.out),
            None => open_acl(),
        };
        match zk.create(path, data, acl, mode, t.then_some(ttl)).await {
            Ok(created) => {
                self.out.err(&format!("Created {created}"));
                Ok(())
            }
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::EphemeralOnLocalSession) => {
                self.out.err("Unable to create ephemeral node on a local session");
                Err(wrap(ZkErr::Keeper(k)))
            }
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::InvalidAcl) => {
                self.out.err(&k.to_string());
                Err(wrap(ZkErr::Keeper(k)))
            }
            Err(e) => Err(wrap(e)),
        }
    }

    async fn delete(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&DELETE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("delete"));
        }
        if p.args.len() > 2 {
            self.out.err("'delete path [version]' has been deprecated. Please use 'delete [-v version] path' instead.");
        }
        let version = match p.value("v") {
            Some(v) => parse_i32(v)?,
            None => -1,
        };
        zk.delete(&p.args[1], version).await.map_err(wrap)
    }

    async fn delete_all(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&DELETEALL, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("deleteall"));
        }
        let batch = match p.value("b") {
            Some(b) => java_int(b)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| CliError::new("-b argument must be an int value"))?,
            None => 1000,
        };
        let root = &p.args[1];
        format::validate_path(root).map_err(CliError::new)?;
        // ZKUtil.listSubTreeBFS, then delete the deepest first, in multis of `batch`.
        let mut tree = vec![root.clone()];
        let mut i = 0;
        while i < tree.len() {
            let node = tree[i].clone();
            let (children, _) = zk.get_children(&node, false).await.map_err(wrap)?;
            for c in children {
                tree.push(if node == "/" { format!("/{c}") } else { format!("{node}/{c}") });
            }
            i += 1;
        }
        let mut ok = true;
        if batch > 0 {
            let reversed: Vec<String> = tree.into_iter().rev().collect();
            for chunk in reversed.chunks(batch as usize) {
                if !ok {
                    break;
                }
                if zk.multi_delete(chunk).await != 0 {
                    ok = false;
                }
            }
        } else {
            for node in tree.iter().rev() {
                zk.delete(node, -1).await.map_err(wrap)?;
            }
        }
        if !ok {
            self.out.err("Failed to delete some node(s) in the subtree!");
        }
        Ok(())
    }

    async fn del_quota(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&DELQUOTA, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("delquota"));
        }
        let path = &p.args[1];
        let any = ["n", "b", "N", "B"].iter().any(|o| p.has(o));
        match self.del_quota_inner(zk, path, &p, any).await {
            Ok(()) => Ok(()),
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NoNode) => {
                self.out.err(&format!("quota for {path} does not exist."));
                Ok(())
            }
            Err(e) => Err(wrap(e)),
        }
    }

    async fn del_quota_inner(&self, zk: &Zk, path: &str, p: &Parsed, any: bool) -> Result<(), ZkErr> {
        let parent = quota_path(path);
        let limits = limit_path(path);
        if zk.exists(&limits, false).await?.is_none() {
            self.out.out(&format!("Quota does not exist for {path}"));
            return Ok(());
        }
        let (data, _) = zk.get_data(&limits, false).await?;
        let mut track = StatsTrack::parse(&utf8(&data.unwrap_or_default())).map_err(ZkErr::Illegal)?;
        if !any {
            let (children, _) = zk.get_children(&parent, false).await?;
            for c in children {
                zk.delete(&format!("{parent}/{c}"), -1).await?;
            }
            // Trim the quota tree upwards while a node is left without children.
            let mut at = parent;
            while at != QUOTA_ZK {
                let (children, _) = zk.get_children(&at, false).await?;
                if !children.is_empty() {
                    break;
                }
                zk.delete(&at, -1).await?;
                at = at[..at.rfind('/').unwrap_or(0)].to_string();
            }
        } else {
            for (o, key) in
                [("n", StatsTrack::COUNT), ("b", StatsTrack::BYTES), ("N", StatsTrack::COUNT_HARD), ("B", StatsTrack::BYTES_HARD)]
            {
                if p.has(o) {
                    track.set(key, -1);
                }
            }
            zk.set_data(&limits, Some(track.to_string().into_bytes()), -1).await?;
        }
        Ok(())
    }

    async fn get(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let mut words = args.to_vec();
        let mut p = opts::parse(&GET, &words).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("get"));
        }
        if p.args.len() > 2 {
            words[2] = "-w".into();
            self.out.err("'get path [watch]' has been deprecated. Please use 'get [-s] [-w] path' instead.");
            p = opts::parse(&GET, &words).map_err(parse_err)?;
        }
        let path = p.args.get(1).cloned().unwrap_or_default();
        let (data, stat) = zk.get_data(&path, p.has("w")).await.map_err(wrap)?;
        let data = data.unwrap_or_else(|| b"null".to_vec());
        let text = if p.has("x") {
            hex_dump(&data)
        } else if p.has("b") {
            base64::engine::general_purpose::STANDARD.encode(&data)
        } else {
            utf8(&data)
        };
        self.out.out(&text);
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn get_acl(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&GETACL, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("getAcl"));
        }
        let (acl, stat) = zk.get_acl(&p.args[1]).await.map_err(wrap)?;
        for a in &acl {
            self.out.out(&format!("{}: {}", id_to_string(&a.id), perm_string(a.perms)));
        }
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn get_all_children_number(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("getAllChildrenNumber"));
        }
        let n = zk.get_all_children_number(&p.args[1]).await.map_err(wrap)?;
        self.out.out(&n.to_string());
        Ok(())
    }

    async fn get_ephemerals(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        let prefix = p.args.get(1).map(String::as_str).unwrap_or("/");
        let list = zk.get_ephemerals(prefix).await.map_err(wrap)?;
        self.out.out(&format!("[{}]", list.join(", ")));
        Ok(())
    }

    async fn list_quota(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("listquota"));
        }
        let path = &p.args[1];
        self.out.err(&format!("absolute path is {}", limit_path(path)));
        let result: Result<(StatsTrack, StatsTrack), ZkErr> = async {
            let (q, _) = zk.get_data(&limit_path(path), false).await?;
            let q = StatsTrack::parse(&utf8(&q.unwrap_or_default())).map_err(ZkErr::Illegal)?;
            let (s, _) = zk.get_data(&stat_path(path), false).await?;
            let s = StatsTrack::parse(&utf8(&s.unwrap_or_default())).map_err(ZkErr::Illegal)?;
            Ok((q, s))
        }
        .await;
        match result {
            Ok((q, s)) => {
                self.out.out(&format!("Output quota for {path} {q}"));
                self.out.out(&format!("Output stat for {path} {s}"));
                Ok(())
            }
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NoNode) => {
                self.out.err(&format!("quota for {path} does not exist."));
                Ok(())
            }
            Err(e) => Err(wrap(e)),
        }
    }

    async fn ls(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let mut words = args.to_vec();
        let mut p = opts::parse(&LS, &words).map_err(parse_err)?;
        if p.has("?") {
            self.out.out(&format!("usage: ls [options] path\n{}", options_help(LS.opts)));
        }
        if p.args.len() > 2 {
            words[2] = "-w".into();
            self.out.err("'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.");
            p = opts::parse(&LS, &words).map_err(parse_err)?;
        }
        if p.args.len() < 2 {
            return Err(usage_err("ls"));
        }
        let path = &p.args[1];
        let watch = p.has("w");
        if p.has("R") {
            return self.visit_dfs(zk, path, watch, &mut Visit::Print).await.map_err(wrap);
        }
        let (mut children, stat) = zk.get_children(path, watch).await.map_err(wrap)?;
        java_sort(&mut children);
        self.out.print(&format!("[{}]\n", children.join(", ")));
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    /// `ZKUtil.visitSubTreeDFS`: the node, then at each level all children before going down
    /// into each; `v` says what is done at each node.
    async fn visit_dfs(&self, zk: &Zk, path: &str, watch: bool, v: &mut Visit) -> Result<(), ZkErr> {
        format::validate_path(path).map_err(ZkErr::Illegal)?;
        zk.get_data(path, watch).await?;
        self.on_visit(zk, v, path).await?;
        self.visit_children(zk, path.to_string(), watch, v).await
    }

    async fn visit_children(&self, zk: &Zk, node: String, watch: bool, v: &mut Visit) -> Result<(), ZkErr> {
        let mut children = match zk.get_children(&node, watch).await {
            Ok((c, _)) => c,
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NoNode) => return Ok(()),
            Err(e) => return Err(e),
        };
        java_sort(&mut children);
        let base = if node == "/" { String::from("/") } else { format!("{node}/") };
        for c in &children {
            self.on_visit(zk, v, &format!("{base}{c}")).await?;
        }
        for c in children {
            Box::pin(self.visit_children(zk, format!("{base}{c}"), watch, v)).await?;
        }
        Ok(())
    }

    async fn on_visit(&self, zk: &Zk, v: &mut Visit, path: &str) -> Result<(), ZkErr> {
        match v {
            Visit::Print => self.out.out(path),
            Visit::SetAcl { acl, version } => match zk.set_acl(path, acl.clone(), *version).await {
                Ok(_) => {}
                // Printed without a newline, and the walk goes on.
                Err(ZkErr::Keeper(k)) => self.out.print(&k.to_string()),
                Err(e) => return Err(e),
            },
            Visit::QuotaBelow { path: of, own } => {
                let children = match zk.get_children(path, false).await {
                    Ok((c, _)) => c,
                    Err(_) => return Ok(()),
                };
                if path != own.as_str() && children.iter().any(|c| c == LIMIT_NODE) {
                    return Err(ZkErr::Illegal(format!("{of} has a child {} which has a quota", &path[QUOTA_ZK.len()..])));
                }
            }
        }
        Ok(())
    }

    async fn reconfig(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&RECONFIG, args).map_err(parse_err)?;
        let (file, members, add, remove) = (p.has("file"), p.has("members"), p.has("add"), p.has("remove"));
        if !(file || members || add || remove) {
            return Err(usage_err("reconfig"));
        }
        let version = match p.value("v") {
            Some(v) => {
                i64::from_str_radix(v, 16).map_err(|_| CliError::new("-v must be followed by a long (configuration version)"))?
            }
            None => -1,
        };
        if (file || members) && (add || remove) {
            return Err(CliError::new("Can't use -file or -members together with -add or -remove (mixing incremental and non-incremental modes is not allowed)"));
        }
        if file && members {
            return Err(CliError::new("Can't use -file and -members together (conflicting non-incremental modes)"));
        }
        let joining = p.value("add").map(|s| s.to_lowercase());
        let leaving = p.value("remove").map(|s| s.to_lowercase());
        let mut new_members = p.value("members").map(|s| s.to_lowercase());
        if let Some(f) = p.value("file") {
            let text = std::fs::read_to_string(f).map_err(|e| {
                // FileNotFoundException's message: the path and the system's reason.
                let reason = e.to_string();
                let reason = reason.split(" (os error").next().unwrap_or("").to_string();
                CliError::new(format!("Error processing {f}{f} ({reason})"))
            })?;
            let lines: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("server.") || l.starts_with("group.") || l.starts_with("weight."))
                .map(|l| l.replace(' ', ""))
                .collect();
            new_members = Some(lines.join("\n"));
        }
        let (data, stat) = zk.reconfig(&joining, &leaving, &new_members, version).await.map_err(wrap)?;
        self.out.out(&format!("Committed new configuration:\n{}", utf8(&data.unwrap_or_default())));
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn remove_watches(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&REMOVEWATCHES, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("removewatches"));
        }
        let t = if p.has("c") {
            watcher_type::CHILDREN
        } else if p.has("d") {
            watcher_type::DATA
        } else if p.has("p") {
            watcher_type::PERSISTENT
        } else if p.has("r") {
            watcher_type::PERSISTENT_RECURSIVE
        } else {
            watcher_type::ANY
        };
        zk.remove_all_watches(&p.args[1], t, p.has("l")).await.map_err(wrap)
    }

    async fn set(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&SET, args).map_err(parse_err)?;
        if p.args.len() < 3 {
            return Err(usage_err("set"));
        }
        let data = if p.has("b") {
            base64::engine::general_purpose::STANDARD
                .decode(p.args[2].as_bytes())
                .map_err(|e| CliError::new(format!("java.lang.IllegalArgumentException: {e}")))?
        } else {
            p.args[2].as_bytes().to_vec()
        };
        let version = match p.value("v") {
            Some(v) => parse_i32(v)?,
            None => -1,
        };
        let stat = zk.set_data(&p.args[1], Some(data), version).await.map_err(wrap)?;
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn set_acl(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&SETACL, args).map_err(parse_err)?;
        if p.args.len() < 3 {
            return Err(usage_err("setAcl"));
        }
        let path = &p.args[1];
        let acl = parse_acl(&p.args[2], &self.out);
        let version = match p.value("v") {
            Some(v) => parse_i32(v)?,
            None => -1,
        };
        if p.has("R") {
            let mut v = Visit::SetAcl { acl, version };
            self.visit_dfs(zk, path, false, &mut v).await.map_err(wrap)?;
            return Ok(());
        }
        let stat = zk.set_acl(path, acl, version).await.map_err(wrap)?;
        if p.has("s") {
            self.print_stat(&stat);
        }
        Ok(())
    }

    async fn set_quota(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&SETQUOTA, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("setquota"));
        }
        let path = p.args[1].clone();
        if path.starts_with(QUOTA_ZK) {
            self.out.err(&format!("cannot set a quota under the path: {QUOTA_ZK}"));
            return Ok(());
        }
        let mut quota = StatsTrack::default();
        quota.set(StatsTrack::COUNT, -1);
        quota.set(StatsTrack::BYTES, -1);
        quota.set(StatsTrack::COUNT_HARD, -1);
        quota.set(StatsTrack::BYTES_HARD, -1);
        for (o, key, count) in [
            ("n", StatsTrack::COUNT, true),
            ("b", StatsTrack::BYTES, false),
            ("N", StatsTrack::COUNT_HARD, true),
            ("B", StatsTrack::BYTES_HARD, false),
        ] {
            let Some(v) = p.value(o) else { continue };
            let n = if count { java_int(v).and_then(|n| i32::try_from(n).ok()).map(i64::from) } else { java_int(v) };
            let Some(n) = n else {
                self.out.err("NumberFormatException happens when parsing the option value");
                return Ok(());
            };
            if count && n <= 0 {
                self.out.err("the num quota must be greater than zero");
                return Ok(());
            }
            if !count && n < 0 {
                self.out.err("the bytes quota must be greater than or equal to zero");
                return Ok(());
            }
            quota.set(key, n);
        }
        self.create_quota(zk, &path, quota).await.map_err(wrap)
    }

    /// `SetQuotaCommand.createQuota`.
    async fn create_quota(&self, zk: &Zk, path: &str, quota: StatsTrack) -> Result<(), ZkErr> {
        if zk.exists(path, false).await?.is_none() {
            return Err(ZkErr::Illegal(format!("{path} does not exist.")));
        }
        // A quota below this path?
        let own = quota_path(path);
        let mut v = Visit::QuotaBelow { path: path.to_string(), own: own.clone() };
        match self.visit_dfs(zk, &own, false, &mut v).await {
            Ok(()) => {}
            Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NoNode) => {}
            Err(e) => return Err(e),
        }
        // A quota above it?
        let splits = java_split(path, '/');
        let mut qp = QUOTA_ZK.to_string();
        for part in splits.iter().take(splits.len().saturating_sub(1)).skip(1) {
            qp = format!("{qp}/{part}");
            let children = match zk.get_children(&qp, false).await {
                Ok((c, _)) => c,
                Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NoNode) => break,
                Err(e) => return Err(e),
            };
            if children.is_empty() {
                break;
            }
            if qp != own && children.iter().any(|c| c == LIMIT_NODE) {
                return Err(ZkErr::Illegal(format!("{path} has a parent {} which has a quota", &qp[QUOTA_ZK.len()..])));
            }
        }
        if zk.exists(QUOTA_ZK, false).await?.is_none() {
            let mut r = zk.create("/zookeeper", None, open_acl(), CreateMode::Persistent, None).await;
            if r.is_ok() {
                r = zk.create(QUOTA_ZK, None, open_acl(), CreateMode::Persistent, None).await;
            }
            match r {
                Ok(_) => {}
                Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        let mut qp = QUOTA_ZK.to_string();
        for part in splits.iter().skip(1) {
            qp = format!("{qp}/{part}");
            if zk.exists(&qp, false).await?.is_none() {
                match zk.create(&qp, None, open_acl(), CreateMode::Persistent, None).await {
                    Ok(_) => {}
                    Err(ZkErr::Keeper(k)) if k.is(ErrorCode::NodeExists) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let stat_node = format!("{qp}/{STAT_NODE}");
        let limit_node = format!("{qp}/{LIMIT_NODE}");
        let read = |d: Option<Vec<u8>>| StatsTrack::parse(&utf8(&d.unwrap_or_default())).map_err(ZkErr::Illegal);
        if zk.exists(&limit_node, false).await?.is_none() {
            zk.create(&limit_node, Some(quota.to_string().into_bytes()), open_acl(), CreateMode::Persistent, None).await?;
            let mut stats = StatsTrack::default();
            stats.set(StatsTrack::COUNT, 0);
            stats.set(StatsTrack::BYTES, 0);
            zk.create(&stat_node, Some(stats.to_string().into_bytes()), open_acl(), CreateMode::Persistent, None).await?;
            let q = read(zk.get_data(&limit_node, false).await?.0)?;
            let s = read(zk.get_data(&stat_node, false).await?.0)?;
            self.check_quota(&q, &s);
        } else {
            let mut q = read(zk.get_data(&limit_node, false).await?.0)?;
            for key in [StatsTrack::COUNT, StatsTrack::BYTES, StatsTrack::COUNT_HARD, StatsTrack::BYTES_HARD] {
                if quota.get(key) > -1 {
                    q.set(key, quota.get(key));
                }
            }
            let s = read(zk.get_data(&stat_node, false).await?.0)?;
            self.check_quota(&q, &s);
            zk.set_data(&limit_node, Some(q.to_string().into_bytes()), -1).await?;
        }
        Ok(())
    }

    fn check_quota(&self, q: &StatsTrack, s: &StatsTrack) {
        let (count, bytes) = (s.get(StatsTrack::COUNT), s.get(StatsTrack::BYTES));
        let (qc, qch) = (q.get(StatsTrack::COUNT), q.get(StatsTrack::COUNT_HARD));
        let (qb, qbh) = (q.get(StatsTrack::BYTES), q.get(StatsTrack::BYTES_HARD));
        if (qc > -1 && qc < count) || (qch > -1 && qch < count) {
            self.out.out(&format!("[Warning]: the count quota you create is less than the existing count:{count}"));
        }
        if (qb > -1 && qb < bytes) || (qbh > -1 && qbh < bytes) {
            self.out.out(&format!("[Warning]: the bytes quota you create is less than the existing bytes:{bytes}"));
        }
    }

    async fn stat(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let mut words = args.to_vec();
        let mut p = opts::parse(&STAT, &words).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("stat"));
        }
        if p.args.len() > 2 {
            words[2] = "-w".into();
            self.out.err("'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.");
            p = opts::parse(&STAT, &words).map_err(parse_err)?;
        }
        let path = p.args.get(1).cloned().unwrap_or_default();
        match zk.exists(&path, p.has("w")).await.map_err(wrap)? {
            Some(stat) => {
                self.print_stat(&stat);
                Ok(())
            }
            None => Err(CliError::new(format!("Node does not exist: {path}"))),
        }
    }

    async fn sync(&mut self, zk: &Zk, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        if p.args.len() < 2 {
            return Err(usage_err("sync"));
        }
        let fut = zk.sync(&p.args[1]);
        match tokio::time::timeout(Duration::from_secs(30), fut).await {
            Err(_) => Err(CliError::new("null")),
            Ok(r) => {
                let rc = r.map_err(wrap)?;
                if rc == 0 {
                    self.out.out("Sync is OK");
                } else {
                    self.out.out(&format!("Sync has failed. rc={rc}"));
                }
                Ok(())
            }
        }
    }

    fn version(&mut self, args: &[String]) -> Result<(), CliError> {
        let p = opts::parse(&NONE, args).map_err(parse_err)?;
        if p.args.len() > 1 {
            return Err(usage_err("version"));
        }
        self.out.out(&format!("ZooKeeper CLI version: ferrozk {} (zkCli 3.9 compatible)", env!("CARGO_PKG_VERSION")));
        Ok(())
    }

    async fn who_am_i(&mut self, zk: &Zk) -> Result<(), CliError> {
        let ids = zk.who_am_i().await.map_err(wrap)?;
        self.out.out("Auth scheme: User");
        for c in ids {
            self.out.out(&format!("{}: {}", c.auth_scheme, c.user));
        }
        Ok(())
    }
}

/// `ConfigUtils.getClientConfigStr`: the config version and the servers' client addresses.
fn client_config_str(config: &str) -> String {
    let mut version = String::new();
    let mut addrs = Vec::new();
    for line in config.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k == "version" {
            version = v.to_string();
        }
        if !k.starts_with("server.") {
            continue;
        }
        // host:port:port[:role][;[clientHost:]clientPort]
        if let Some((_, client)) = v.split_once(';') {
            let client = client.trim();
            let addr = match client.rsplit_once(':') {
                Some((h, p)) => format!("{h}:{p}"),
                None => format!("0.0.0.0:{client}"),
            };
            addrs.push(addr);
        } else {
            addrs.push(String::new());
        }
    }
    format!("{version} {}", addrs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_zkcli() {
        assert_eq!(split_command("create /a \"x y\" 'z'"), vec!["create", "/a", "x y", "z"]);
        assert_eq!(split_command("create /q1 \"abc"), vec!["create", "/q1", "abc"]);
        assert_eq!(split_command("create /q2 \"a b\" \"c"), vec!["create", "/q2", "a b", "c"]);
        assert_eq!(split_command("   "), vec![" "]);
        assert_eq!(split_command("ls /  "), vec!["ls", "/"]);
        assert_eq!(split_command("\""), Vec::<String>::new());
        assert_eq!(split_command("create /a \"\""), vec!["create", "/a", ""]);
    }

    #[test]
    fn java_number_parsing() {
        assert_eq!(java_decode("0x10"), Some(16));
        assert_eq!(java_decode("010"), Some(8));
        assert_eq!(java_decode("-3"), Some(-3));
        assert_eq!(java_decode("abc"), None);
        assert_eq!(java_int("+5"), Some(5));
        assert_eq!(java_int("5x"), None);
        assert_eq!(java_split("a,b,,", ','), vec!["a", "b"]);
        assert_eq!(java_split(",a", ','), vec!["", "a"]);
    }

    #[test]
    fn usage_texts() {
        assert_eq!(
            usage_of("set"),
            "set path data [-s] [-v version] [-b]\n -b         Supply data in base64 format\n -s         Print znode stats additionally\n -v <arg>   Set with an expected version"
        );
        assert_eq!(client_config_str(""), " ");
        assert_eq!(
            client_config_str("server.1=a:2888:3888:participant;0.0.0.0:2181\nversion=100000000"),
            "100000000 0.0.0.0:2181"
        );
    }
}

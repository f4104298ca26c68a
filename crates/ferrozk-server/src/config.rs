//! `zoo.cfg`: Java-properties syntax, ZooKeeper's keys and defaults.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Settings for one server, as read from `zoo.cfg` or set through [`crate::ServerBuilder`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub tick_time: u64,
    pub data_dir: PathBuf,
    pub data_log_dir: Option<PathBuf>,
    /// Where clients connect; port 0 picks a free port.
    pub client_addr: SocketAddr,
    pub max_client_cnxns: usize,
    pub min_session_timeout: Option<u64>,
    pub max_session_timeout: Option<u64>,
    /// Four-letter words allowed on the client port (`*` = all). ZooKeeper's default: `srvr`.
    pub four_letter_whitelist: Vec<String>,
    pub jute_max_buffer: usize,
    pub extended_types_enabled: bool,
    /// `user:base64(sha1(user:password))` of the super user.
    pub super_digest: Option<String>,
    pub read_only_mode: bool,
    pub enforce_quota: bool,
    pub container_check_interval_ms: u64,
    /// How long a connection may take to send its ConnectRequest
    /// (`zookeeper.nio.sessionlessCnxnTimeout`).
    pub sessionless_cnxn_timeout_ms: u64,
    /// Entries between snapshots (`snapCount`; each server picks a random point in the upper
    /// half, as ZooKeeper does, so members of an ensemble do not snapshot together).
    pub snap_count: u64,
    /// `autopurge.snapRetainCount` (at least 3) and `autopurge.purgeInterval` (hours; 0 = never
    /// purge, as in ZooKeeper).
    pub snap_retain_count: usize,
    pub purge_interval_hours: u64,
    /// `secureClientPort` (and `secureClientPortAddress`): TLS for clients.
    pub secure_client_addr: Option<SocketAddr>,
    pub tls: TlsSettings,
    /// `server.N` lines: the ensemble's members. Empty for a standalone server.
    pub members: Vec<Member>,
    /// This server's id: the `myid` file in dataDir (read at start) unless set here.
    pub my_id: Option<u64>,
    /// `reconfigEnabled`: the reconfig operation is allowed (ZooKeeper's default: false).
    pub reconfig_enabled: bool,
    /// `linearizableReads`: every read waits for the leader's read index (a ferrozk extra).
    pub linearizable_reads: bool,
    /// `sessionPasswords=zookeeper`: new sessions get the password Apache ZooKeeper would give
    /// them (a function of the session id), so that they survive a move back to ZooKeeper
    /// (`ferrozk export`); the default, `random`, gives each a random one (a ferrozk extra).
    pub zookeeper_session_passwords: bool,
    /// `globalOutstandingLimit`: client requests in flight on this server before connections
    /// holding more than their share stop being read (0: no limit).
    pub global_outstanding_limit: usize,
    /// `maxCnxns`: client connections on this server at once (0: no limit).
    pub max_cnxns: usize,
    /// `maxClientOutputBytes` (a ferrozk key): unsent bytes (replies and notifications) a
    /// connection may hold before it is closed; `None`: 8 x `jute.maxbuffer`.
    pub max_client_output_bytes: Option<usize>,
    /// Keys present in the file that this version does not act on.
    pub unused_keys: Vec<String>,
}

/// One `server.N=host:quorumPort:electionPort[:participant|observer][;[clientAddress:]clientPort]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub host: String,
    /// ferrozk's replication traffic (Raft and forwarded writes) uses this port.
    pub quorum_port: u16,
    /// Accepted for compatibility; ferrozk elects over the quorum port.
    pub election_port: u16,
    pub observer: bool,
    /// Where the member serves clients, when its line says (`;[host:]port`).
    pub client_addr: Option<SocketAddr>,
    /// That address as `/zookeeper/config` shows it: as written, `0.0.0.0:port` for a bare
    /// port (ZooKeeper's form; Curator reads a wildcard as the member's own host).
    pub client_spec: Option<String>,
}

impl Member {
    /// Parses the value of a `server.N` line.
    pub fn parse(id: u64, value: &str) -> Result<Member, String> {
        let (addrs, client) = match value.split_once(';') {
            Some((a, c)) => (a.trim(), Some(c.trim())),
            None => (value.trim(), None),
        };
        let parts: Vec<&str> = addrs.split(':').collect();
        if parts.len() < 3 || parts.len() > 4 {
            return Err("expected host:quorumPort:electionPort[:participant|observer]".into());
        }
        let port = |p: &str| p.parse::<u16>().map_err(|_| format!("'{p}' is not a port number"));
        let observer = match parts.get(3).map(|r| r.to_ascii_lowercase()) {
            None => false,
            Some(r) if r == "participant" => false,
            Some(r) if r == "observer" => true,
            Some(r) => return Err(format!("unknown role '{r}' (participant or observer)")),
        };
        let (client_addr, client_spec) = match client {
            None | Some("") => (None, None),
            Some(c) => match c.rsplit_once(':') {
                Some((host, p)) => {
                    let p = port(p)?;
                    let ip = host.trim_start_matches('[').trim_end_matches(']');
                    let addr = match ip.parse::<IpAddr>() {
                        Ok(ip) => SocketAddr::new(ip, p),
                        Err(_) => (host, p)
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut a| a.next())
                            .ok_or_else(|| format!("client address '{host}' does not resolve"))?,
                    };
                    (Some(addr), Some(format!("{host}:{p}")))
                }
                None => {
                    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port(c)?);
                    (Some(addr), Some(addr.to_string()))
                }
            },
        };
        Ok(Member {
            id,
            host: parts[0].to_string(),
            quorum_port: port(parts[1])?,
            election_port: port(parts[2])?,
            observer,
            client_addr,
            client_spec,
        })
    }

    /// `host:quorumPort`, where the member's peers reach it.
    pub fn peer_addr(&self) -> String {
        format!("{}:{}", self.host, self.quorum_port)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tick_time: 3000,
            data_dir: PathBuf::from("ferrozk-data"),
            data_log_dir: None,
            client_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 2181),
            max_client_cnxns: 60,
            min_session_timeout: None,
            max_session_timeout: None,
            four_letter_whitelist: vec!["srvr".into()],
            jute_max_buffer: ferrozk_proto::frame::DEFAULT_MAX_BUFFER,
            extended_types_enabled: false,
            super_digest: None,
            read_only_mode: false,
            enforce_quota: false,
            container_check_interval_ms: 60_000,
            sessionless_cnxn_timeout_ms: 10_000,
            snap_count: 100_000,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            secure_client_addr: None,
            tls: TlsSettings::default(),
            members: Vec::new(),
            my_id: None,
            linearizable_reads: false,
            zookeeper_session_passwords: false,
            reconfig_enabled: false,
            global_outstanding_limit: 1000,
            max_cnxns: 0,
            max_client_output_bytes: None,
            unused_keys: Vec::new(),
        }
    }
}

/// ZooKeeper's `ssl.*` settings for the secure client port.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `ssl.keyStore.location`: the server's private key and certificate chain (PEM).
    pub key_store: Option<PathBuf>,
    pub key_store_type: Option<String>,
    /// `ssl.trustStore.location`: CA certificates that client certificates must chain to.
    pub trust_store: Option<PathBuf>,
    pub trust_store_type: Option<String>,
    /// `ssl.clientAuth`: need (the default, as in ZooKeeper), want or none.
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    Need,
    Want,
    None,
}

/// The embedded default `ferrozk server` starts with when given no file.
pub const EMBEDDED_DEFAULT: &str = "\
tickTime=2000
dataDir=ferrozk-data
clientPort=2181
4lw.commands.whitelist=srvr,stat,ruok,conf,isro,envi,mntr
";

/// A `zoo.cfg` that cannot be used: says where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Keys a ZooKeeper config may carry that ferrozk accepts but does not act on yet.
const KNOWN_UNUSED: &[&str] = &[
    "initLimit",
    "syncLimit",
    "preAllocSize",
    "admin.enableServer",
    "admin.serverPort",
    "admin.serverAddress",
    "admin.commandURL",
    "standaloneEnabled",
    "peerType",
    "electionAlg",
    "quorumListenOnAllIPs",
    "syncEnabled",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "metricsProvider.className",
    "metricsProvider.httpPort",
    "metricsProvider.httpHost",
    "metricsProvider.exportJvmInfo",
    "authProvider.1",
    "snapSizeLimitInKb",
    "clientPortListenBacklog",
];

/// Splits Java-properties text into (line number, key, value), in file order.
pub fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let sep = line.find(['=', ':']).unwrap_or(line.len());
        let (k, v) = line.split_at(sep);
        let v = v.get(1..).unwrap_or("");
        out.push((i + 1, k.trim().to_string(), v.trim().to_string()));
    }
    out
}

impl ServerConfig {
    /// Reads a `zoo.cfg`. Relative `dataDir`s are taken relative to the working directory,
    /// as ZooKeeper does.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigError> {
        let mut c = ServerConfig::default();
        let mut client_port: Option<u16> = None;
        let mut client_ip: Option<IpAddr> = None;
        let mut secure_port: Option<u16> = None;
        let mut secure_ip: Option<IpAddr> = None;
        let mut seen = BTreeMap::new();
        for (line, key, value) in parse_properties(text) {
            let bad = |what: &str| ConfigError(format!("{origin}:{line}: invalid value '{value}' for {key}: {what}"));
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad("expected a non-negative integer"));
            let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
                "true" | "yes" => Ok(true),
                "false" | "no" => Ok(false),
                _ => Err(bad("expected true or false")),
            };
            let bare = key.strip_prefix("zookeeper.").unwrap_or(&key);
            match bare {
                "tickTime" => {
                    c.tick_time = num(&value)?;
                    if c.tick_time == 0 {
                        return Err(bad("must be positive"));
                    }
                }
                "dataDir" => c.data_dir = PathBuf::from(&value),
                "dataLogDir" => c.data_log_dir = Some(PathBuf::from(&value)),
                "clientPort" => client_port = Some(value.parse::<u16>().map_err(|_| bad("expected a port number"))?),
                "clientPortAddress" => client_ip = Some(value.parse::<IpAddr>().map_err(|_| bad("expected an IP address"))?),
                "maxClientCnxns" => c.max_client_cnxns = num(&value)? as usize,
                "maxCnxns" => c.max_cnxns = num(&value)? as usize,
                "globalOutstandingLimit" => c.global_outstanding_limit = num(&value)? as usize,
                "maxClientOutputBytes" => {
                    let v = num(&value)? as usize;
                    if v == 0 {
                        return Err(bad("must be positive"));
                    }
                    c.max_client_output_bytes = Some(v);
                }
                "minSessionTimeout" => c.min_session_timeout = Some(num(&value)?),
                "maxSessionTimeout" => c.max_session_timeout = Some(num(&value)?),
                "4lw.commands.whitelist" => {
                    c.four_letter_whitelist = value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
                }
                "jute.maxbuffer" => {
                    let v = parse_java_int(&value).ok_or_else(|| bad("expected an integer"))?;
                    if v <= 0 {
                        return Err(bad("must be positive"));
                    }
                    c.jute_max_buffer = v as usize;
                }
                "extendedTypesEnabled" => c.extended_types_enabled = boolean(&value)?,
                "DigestAuthenticationProvider.superDigest" => {
                    if !value.contains(':') {
                        return Err(bad("expected user:base64digest"));
                    }
                    c.super_digest = Some(value.clone());
                }
                "readonlymode.enabled" => c.read_only_mode = boolean(&value)?,
                "enforceQuota" => c.enforce_quota = boolean(&value)?,
                "znode.container.checkIntervalMs" => c.container_check_interval_ms = num(&value)?.max(1),
                "secureClientPort" => secure_port = Some(value.parse::<u16>().map_err(|_| bad("expected a port number"))?),
                "secureClientPortAddress" => {
                    secure_ip = Some(value.parse::<IpAddr>().map_err(|_| bad("expected an IP address"))?)
                }
                "ssl.keyStore.location" => c.tls.key_store = Some(PathBuf::from(&value)),
                "ssl.keyStore.type" => c.tls.key_store_type = Some(value.clone()),
                "ssl.trustStore.location" => c.tls.trust_store = Some(PathBuf::from(&value)),
                "ssl.trustStore.type" => c.tls.trust_store_type = Some(value.clone()),
                "ssl.clientAuth" => {
                    c.tls.client_auth = match value.to_ascii_lowercase().as_str() {
                        "need" | "true" => ClientAuth::Need,
                        "want" => ClientAuth::Want,
                        "none" | "false" => ClientAuth::None,
                        _ => return Err(bad("expected need, want or none")),
                    }
                }
                "serverCnxnFactory" | "ssl.keyStore.password" | "ssl.trustStore.password" => {}
                "snapCount" => c.snap_count = num(&value)?.max(2),
                "autopurge.snapRetainCount" => c.snap_retain_count = (num(&value)? as usize).max(3),
                "autopurge.purgeInterval" => c.purge_interval_hours = num(&value)?,
                "nio.sessionlessCnxnTimeout" => c.sessionless_cnxn_timeout_ms = num(&value)?.max(1),
                k if k.starts_with("server.") => {
                    let id = k["server.".len()..].parse::<u64>().map_err(|_| bad("server.N needs a numeric N"))?;
                    let m = Member::parse(id, &value).map_err(|e| bad(&e))?;
                    if c.members.iter().any(|o| o.id == id) {
                        return Err(bad("duplicate server id"));
                    }
                    c.members.push(m);
                }
                "linearizableReads" => c.linearizable_reads = boolean(&value)?,
                "sessionPasswords" => {
                    c.zookeeper_session_passwords = match value.as_str() {
                        "random" => false,
                        "zookeeper" => true,
                        _ => return Err(bad("expected random or zookeeper")),
                    }
                }
                // ZooKeeper 3.5+ keeps the server lines in a file of their own.
                "dynamicConfigFile" => {
                    let text = std::fs::read_to_string(&value).map_err(|e| bad(&format!("cannot read it: {e}")))?;
                    for (dline, dkey, dvalue) in parse_properties(&text) {
                        let dbad =
                            |what: &str| ConfigError(format!("{value}:{dline}: invalid value '{dvalue}' for {dkey}: {what}"));
                        if let Some(n) = dkey.strip_prefix("server.") {
                            let id = n.parse::<u64>().map_err(|_| dbad("server.N needs a numeric N"))?;
                            let m = Member::parse(id, &dvalue).map_err(|e| dbad(&e))?;
                            if c.members.iter().any(|o| o.id == id) {
                                return Err(dbad("duplicate server id"));
                            }
                            c.members.push(m);
                        } else if dkey != "version" && !dkey.starts_with("group.") && !dkey.starts_with("weight.") {
                            return Err(dbad("only server.N lines belong in a dynamic config file"));
                        }
                    }
                }
                "reconfigEnabled" => c.reconfig_enabled = boolean(&value)?,
                k if k.starts_with("group.") || k.starts_with("weight.") => c.unused_keys.push(key.clone()),
                k if KNOWN_UNUSED.contains(&k)
                    || k.starts_with("ssl.")
                    || k.starts_with("admin.")
                    || k.starts_with("metricsProvider.")
                    || k.starts_with("authProvider.")
                    || k.starts_with("quorum.")
                    || k.starts_with("sasl") =>
                {
                    c.unused_keys.push(key.clone())
                }
                _ => c.unused_keys.push(key.clone()),
            }
            seen.insert(key, line);
        }
        c.members.sort_by_key(|m| m.id);
        // A member's client port may come from its server.N line (ZooKeeper 3.5+ style); the
        // server picks its own once it knows its id.
        let port = match client_port {
            Some(p) => p,
            None if c.members.iter().any(|m| m.client_addr.is_some()) => 0,
            None => return Err(ConfigError(format!("{origin}: clientPort is not set"))),
        };
        c.client_addr = SocketAddr::new(client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
        if c.members.len() == 1 && c.members[0].observer {
            return Err(ConfigError(format!("{origin}: an ensemble needs at least one participant")));
        }
        if let Some(p) = secure_port {
            c.secure_client_addr = Some(SocketAddr::new(secure_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), p));
            if c.tls.key_store.is_none() {
                return Err(ConfigError(format!("{origin}: secureClientPort needs ssl.keyStore.location")));
            }
        }
        if let (Some(min), Some(max)) = (c.min_session_timeout, c.max_session_timeout) {
            if min > max {
                return Err(ConfigError(format!(
                    "{origin}: minSessionTimeout {min} must not be larger than maxSessionTimeout {max}"
                )));
            }
        }
        Ok(c)
    }

    /// Unsent bytes a client connection may hold before it is closed (`maxClientOutputBytes`).
    pub fn client_output_limit(&self) -> usize {
        self.max_client_output_bytes.unwrap_or(self.jute_max_buffer.saturating_mul(8))
    }

    /// The shortest session timeout granted: 2 ticks unless configured.
    pub fn min_timeout(&self) -> u64 {
        self.min_session_timeout.unwrap_or(self.tick_time * 2)
    }

    /// The longest session timeout granted: 20 ticks unless configured.
    pub fn max_timeout(&self) -> u64 {
        self.max_session_timeout.unwrap_or(self.tick_time * 20)
    }

    pub fn four_letter_allowed(&self, cmd: &str) -> bool {
        self.four_letter_whitelist.iter().any(|w| w == "*" || w == cmd) || (cmd == "isro" && self.read_only_mode)
    }
}

/// Java's `Integer.decode`-style value: decimal or 0x-hex.
fn parse_java_int(v: &str) -> Option<i64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_zookeeper_config() {
        let c = ServerConfig::parse(
            "# comment\ntickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zk\nclientPort=2182\n\
             clientPortAddress = 127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=ruok, stat\n\
             jute.maxbuffer=0x100000\nserver.1=localhost:2888:3888\n",
            "zoo.cfg",
        )
        .unwrap();
        assert_eq!(c.tick_time, 2000);
        assert_eq!(c.client_addr, "127.0.0.1:2182".parse().unwrap());
        assert_eq!(c.max_client_cnxns, 0);
        assert_eq!(c.jute_max_buffer, 0x100000);
        assert!(c.four_letter_allowed("stat") && !c.four_letter_allowed("dump"));
        assert_eq!(c.unused_keys, vec!["initLimit", "syncLimit"]);
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.members[0].peer_addr(), "localhost:2888");
        assert_eq!(c.min_timeout(), 4000);
        assert_eq!(c.max_timeout(), 40000);
    }

    #[test]
    fn reads_ensemble_members() {
        let c = ServerConfig::parse(
            "dataDir=/d\nserver.2=10.0.0.2:2888:3888;2181\nserver.1=10.0.0.1:2888:3888:participant;127.0.0.1:2182\n\
             server.3=10.0.0.3:2888:3888:observer\n",
            "zoo.cfg",
        )
        .unwrap();
        assert_eq!(c.members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(c.members[0].client_addr, Some("127.0.0.1:2182".parse().unwrap()));
        assert_eq!(c.members[1].client_addr, Some("0.0.0.0:2181".parse().unwrap()));
        // As /zookeeper/config shows them: ZooKeeper's forms, none for a line without one.
        assert_eq!(c.members[0].client_spec.as_deref(), Some("127.0.0.1:2182"));
        assert_eq!(c.members[1].client_spec.as_deref(), Some("0.0.0.0:2181"));
        assert_eq!(c.members[2].client_spec, None);
        let named = Member::parse(4, "localhost:1:2;localhost:2184").unwrap();
        assert_eq!(named.client_spec.as_deref(), Some("localhost:2184"));
        assert_eq!(named.client_addr.map(|a| a.port()), Some(2184));
        assert!(c.members[2].observer && !c.members[1].observer);
        let e = ServerConfig::parse("clientPort=1\nserver.1=h:1:2:boss\n", "z").unwrap_err();
        assert!(e.0.contains("unknown role 'boss'"), "{e}");
        assert!(ServerConfig::parse("clientPort=1\nserver.x=h:1:2\n", "z").is_err());
        assert!(ServerConfig::parse("clientPort=1\nserver.1=h:1\n", "z").is_err());
    }

    #[test]
    fn reads_server_lines_from_a_dynamic_config_file() {
        let path = std::env::temp_dir().join(format!("ferrozk-dyn-{}.cfg", std::process::id()));
        std::fs::write(&path, "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nserver.2=127.0.0.1:2889:3889:observer;2182\nversion=100000000\n").unwrap();
        let c = ServerConfig::parse(&format!("dataDir=/d\ndynamicConfigFile={}\n", path.display()), "zoo.cfg").unwrap();
        assert_eq!(c.members.len(), 2);
        assert!(c.members[1].observer);
        assert_eq!(c.members[0].client_addr, Some("127.0.0.1:2181".parse().unwrap()));
        assert!(!c.unused_keys.contains(&"dynamicConfigFile".to_string()));
        std::fs::write(&path, "clientPort=1\n").unwrap();
        let e = ServerConfig::parse(&format!("dataDir=/d\ndynamicConfigFile={}\n", path.display()), "zoo.cfg").unwrap_err();
        assert!(e.0.contains("only server.N lines"), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn malformed_values_name_line_key_and_value() {
        let e = ServerConfig::parse("clientPort=2181\ntickTime=fast\n", "zoo.cfg").unwrap_err();
        assert_eq!(e.0, "zoo.cfg:2: invalid value 'fast' for tickTime: expected a non-negative integer");
        assert!(ServerConfig::parse("tickTime=2000\n", "zoo.cfg").unwrap_err().0.contains("clientPort"));
        assert!(ServerConfig::parse("clientPort=99999\n", "z").is_err());
        assert!(ServerConfig::parse(EMBEDDED_DEFAULT, "embedded").is_ok());
    }
}

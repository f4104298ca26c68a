//! The `ZooKeeper` methods zkCli calls, with the Java client's checks before anything is sent
//! (path syntax, TTL range, empty ACL) and its errors: a [`KeeperError`] carrying the client path,
//! or an `IllegalArgumentException` message.

use ferrozk_client::raw::Registration;
use ferrozk_proto::codes::{op, CreateMode};
use ferrozk_proto::jute::write_java_utf8;
use ferrozk_proto::*;

use crate::format::{validate_create_path, validate_path};
use crate::session::{KeeperError, Zk};

/// What a `ZooKeeper` call can throw.
#[derive(Debug, Clone)]
pub enum ZkErr {
    Keeper(KeeperError),
    /// `IllegalArgumentException`: a bad path, TTL or watcher type.
    Illegal(String),
}

impl From<KeeperError> for ZkErr {
    fn from(e: KeeperError) -> Self {
        ZkErr::Keeper(e)
    }
}

pub type ZkResult<T> = Result<T, ZkErr>;

fn decode<T: Decode>(body: &[u8]) -> Result<T, KeeperError> {
    T::decode(&mut Reader::new(body)).map_err(|_| KeeperError::bare(ErrorCode::MarshallingError.code()))
}

fn bytes<T: Encode>(v: &T) -> Vec<u8> {
    jute::to_bytes(v)
}

fn illegal(r: Result<(), String>) -> ZkResult<()> {
    r.map_err(ZkErr::Illegal)
}

/// The largest TTL a znode may have (`EphemeralType.TTL.maxValue()`).
pub const MAX_TTL: i64 = 0x00FF_FFFF_FFFF;

pub fn check_ttl(ttl: i64) -> Result<(), String> {
    if ttl > MAX_TTL || ttl <= 0 {
        return Err(format!("ttl must be positive and cannot be larger than: {MAX_TTL}"));
    }
    Ok(())
}

/// `CreateMode.toString()`.
pub fn mode_name(m: CreateMode) -> &'static str {
    match m {
        CreateMode::Persistent => "PERSISTENT",
        CreateMode::Ephemeral => "EPHEMERAL",
        CreateMode::PersistentSequential => "PERSISTENT_SEQUENTIAL",
        CreateMode::EphemeralSequential => "EPHEMERAL_SEQUENTIAL",
        CreateMode::Container => "CONTAINER",
        CreateMode::PersistentWithTtl => "PERSISTENT_WITH_TTL",
        CreateMode::PersistentSequentialWithTtl => "PERSISTENT_SEQUENTIAL_WITH_TTL",
    }
}

fn write_opt_string(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        None => (-1i32).encode(out),
        Some(s) => {
            let mut b = Vec::new();
            write_java_utf8(s, &mut b);
            (b.len() as i32).encode(out);
            out.extend_from_slice(&b);
        }
    }
}

impl Zk {
    async fn ok(
        &self,
        opcode: i32,
        body: Vec<u8>,
        reg: Option<Registration>,
        path: Option<&str>,
    ) -> Result<Vec<u8>, KeeperError> {
        let (err, body) = self.call(opcode, body, reg).await;
        if err != 0 {
            return Err(KeeperError { code: err, path: path.map(String::from) });
        }
        Ok(body)
    }

    /// `create(path, data, acl, mode)`, or with a TTL the create that takes one.
    pub async fn create(
        &self,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl: Option<i64>,
    ) -> ZkResult<String> {
        illegal(validate_create_path(path, mode.is_sequential()))?;
        let t = ttl.unwrap_or(-1);
        if mode.is_ttl() {
            illegal(check_ttl(t))?;
        } else if t >= 0 {
            return Err(ZkErr::Illegal(format!("ttl not valid for mode: {}", mode_name(mode))));
        }
        if acl.is_empty() {
            return Err(KeeperError::bare(ErrorCode::InvalidAcl.code()).into());
        }
        let sp = self.server_path(path);
        let (opcode, body) = if mode.is_ttl() {
            (op::CREATE_TTL, bytes(&CreateTtlRequest { path: sp, data, acl, flags: mode.flag(), ttl: t }))
        } else if ttl.is_some() {
            let code = if mode.is_container() { op::CREATE_CONTAINER } else { op::CREATE2 };
            (code, bytes(&CreateRequest { path: sp, data, acl, flags: mode.flag() }))
        } else {
            let code = if mode.is_container() { op::CREATE_CONTAINER } else { op::CREATE };
            (code, bytes(&CreateRequest { path: sp, data, acl, flags: mode.flag() }))
        };
        let body = self.ok(opcode, body, None, Some(path)).await?;
        let r: CreateResponse = decode(&body)?;
        Ok(self.client_path(&r.path))
    }

    pub async fn delete(&self, path: &str, version: i32) -> ZkResult<()> {
        illegal(validate_path(path))?;
        // The root is sent as is, chroot or not, so that deleting it always fails.
        let sp = if path == "/" { path.to_string() } else { self.server_path(path) };
        self.ok(op::DELETE, bytes(&DeleteRequest { path: sp, version }), None, Some(path)).await?;
        Ok(())
    }

    pub async fn exists(&self, path: &str, watch: bool) -> ZkResult<Option<Stat>> {
        illegal(validate_path(path))?;
        let reg = watch.then(|| Registration::Exists(self.server_path(path)));
        let req = ExistsRequest { path: self.server_path(path), watch };
        let (err, body) = self.call(op::EXISTS, bytes(&req), reg).await;
        if err == ErrorCode::NoNode.code() {
            return Ok(None);
        }
        if err != 0 {
            return Err(KeeperError::new(err, path).into());
        }
        Ok(Some(decode::<ExistsResponse>(&body)?.stat))
    }

    pub async fn get_data(&self, path: &str, watch: bool) -> ZkResult<(Option<Vec<u8>>, Stat)> {
        illegal(validate_path(path))?;
        let reg = watch.then(|| Registration::Data(self.server_path(path)));
        let req = GetDataRequest { path: self.server_path(path), watch };
        let r: GetDataResponse = decode(&self.ok(op::GET_DATA, bytes(&req), reg, Some(path)).await?)?;
        Ok((r.data, r.stat))
    }

    pub async fn set_data(&self, path: &str, data: Option<Vec<u8>>, version: i32) -> ZkResult<Stat> {
        illegal(validate_path(path))?;
        let req = SetDataRequest { path: self.server_path(path), data, version };
        Ok(decode::<SetDataResponse>(&self.ok(op::SET_DATA, bytes(&req), None, Some(path)).await?)?.stat)
    }

    /// getChildren2: the children in the server's order, and the Stat.
    pub async fn get_children(&self, path: &str, watch: bool) -> ZkResult<(Vec<String>, Stat)> {
        illegal(validate_path(path))?;
        let reg = watch.then(|| Registration::Child(self.server_path(path)));
        let req = GetChildren2Request { path: self.server_path(path), watch };
        let r: GetChildren2Response = decode(&self.ok(op::GET_CHILDREN2, bytes(&req), reg, Some(path)).await?)?;
        Ok((r.children, r.stat))
    }

    pub async fn get_acl(&self, path: &str) -> ZkResult<(Vec<Acl>, Stat)> {
        illegal(validate_path(path))?;
        let req = GetAclRequest { path: self.server_path(path) };
        let r: GetAclResponse = decode(&self.ok(op::GET_ACL, bytes(&req), None, Some(path)).await?)?;
        Ok((r.acl, r.stat))
    }

    pub async fn set_acl(&self, path: &str, acl: Vec<Acl>, version: i32) -> ZkResult<Stat> {
        illegal(validate_path(path))?;
        if acl.is_empty() {
            return Err(KeeperError::bare(ErrorCode::InvalidAcl.code()).into());
        }
        let req = SetAclRequest { path: self.server_path(path), acl, version };
        Ok(decode::<SetAclResponse>(&self.ok(op::SET_ACL, bytes(&req), None, Some(path)).await?)?.stat)
    }

    /// sync: the result code its callback gets.
    pub async fn sync(&self, path: &str) -> ZkResult<i32> {
        illegal(validate_path(path))?;
        let (err, _) = self.call(op::SYNC, bytes(&SyncRequest { path: self.server_path(path) }), None).await;
        Ok(err)
    }

    /// A multi of deletes (version -1); the result code its callback gets.
    pub async fn multi_delete(&self, paths: &[String]) -> i32 {
        let ops = paths.iter().map(|p| MultiOp::Delete(DeleteRequest { path: self.server_path(p), version: -1 })).collect();
        let (err, body) = self.call(op::MULTI, bytes(&MultiRequest { ops }), None).await;
        if err != 0 {
            return err;
        }
        match MultiResponse::decode(&mut Reader::new(&body)) {
            Ok(r) => r
                .results
                .iter()
                .find_map(|res| match res {
                    OpResult::Error(e) if *e != 0 => Some(*e),
                    _ => None,
                })
                .unwrap_or(0),
            Err(_) => ErrorCode::MarshallingError.code(),
        }
    }

    /// getEphemerals: the prefix goes to the server as given (no chroot), as the Java client does.
    pub async fn get_ephemerals(&self, prefix: &str) -> ZkResult<Vec<String>> {
        illegal(validate_path(prefix))?;
        let req = GetEphemeralsRequest { prefix_path: prefix.to_string() };
        Ok(decode::<GetEphemeralsResponse>(&self.ok(op::GET_EPHEMERALS, bytes(&req), None, None).await?)?.ephemerals)
    }

    pub async fn get_all_children_number(&self, path: &str) -> ZkResult<i32> {
        illegal(validate_path(path))?;
        let req = GetAllChildrenNumberRequest { path: self.server_path(path) };
        let body = self.ok(op::GET_ALL_CHILDREN_NUMBER, bytes(&req), None, Some(path)).await?;
        Ok(decode::<GetAllChildrenNumberResponse>(&body)?.total_number)
    }

    pub async fn add_watch(&self, path: &str, recursive: bool) -> ZkResult<()> {
        illegal(validate_path(path))?;
        let (mode, reg) = if recursive {
            (1, Registration::PersistentRecursive(self.server_path(path)))
        } else {
            (0, Registration::Persistent(self.server_path(path)))
        };
        let req = AddWatchRequest { path: self.server_path(path), mode };
        self.ok(op::ADD_WATCH, bytes(&req), Some(reg), Some(path)).await?;
        Ok(())
    }

    /// removeAllWatches of one watcher type on `path`.
    pub async fn remove_all_watches(&self, path: &str, wtype: i32, local: bool) -> ZkResult<()> {
        illegal(validate_path(path))?;
        let req = RemoveWatchesRequest { path: self.server_path(path), watch_type: wtype };
        let reg = Registration::Remove { path: self.server_path(path), watcher_type: wtype, local };
        self.ok(op::REMOVE_WATCHES, bytes(&req), Some(reg), Some(path)).await?;
        Ok(())
    }

    pub async fn who_am_i(&self) -> ZkResult<Vec<ClientInfo>> {
        let body = self.ok(op::WHO_AM_I, Vec::new(), None, None).await?;
        Ok(decode::<WhoAmIResponse>(&body)?.client_info)
    }

    /// getConfig: the data of /zookeeper/config (never chrooted).
    pub async fn get_config(&self, watch: bool) -> ZkResult<(Option<Vec<u8>>, Stat)> {
        const CONFIG: &str = "/zookeeper/config";
        let reg = watch.then(|| Registration::Data(CONFIG.to_string()));
        let req = GetDataRequest { path: CONFIG.to_string(), watch };
        let r: GetDataResponse = decode(&self.ok(op::GET_DATA, bytes(&req), reg, Some(CONFIG)).await?)?;
        Ok((r.data, r.stat))
    }

    /// ZooKeeperAdmin.reconfigure: the new configuration and its Stat.
    pub async fn reconfig(
        &self,
        joining: &Option<String>,
        leaving: &Option<String>,
        members: &Option<String>,
        version: i64,
    ) -> ZkResult<(Option<Vec<u8>>, Stat)> {
        let mut body = Vec::new();
        write_opt_string(&mut body, joining);
        write_opt_string(&mut body, leaving);
        write_opt_string(&mut body, members);
        version.encode(&mut body);
        let r: GetDataResponse = decode(&self.ok(op::RECONFIG, body, None, None).await?)?;
        Ok((r.data, r.stat))
    }
}

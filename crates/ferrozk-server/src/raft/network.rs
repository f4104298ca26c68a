//! Member-to-member transport: length-prefixed bincode frames over TCP on the quorum port.
//! [`PeerClient`] carries openraft's RPCs to one peer; [`serve_peers`] answers them, and takes
//! the writes and session liveness other members forward to this one while it leads.

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) enum PeerRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// The rest of this connection carries [`Forwarded`] messages from a member to the leader.
    ForwardStream {
        from: u64,
    },
    Reconfig {
        origin: u64,
        token: u64,
        plan: ReconfigPlan,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) enum PeerResponse {
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Done (the new config is proposed), or ZooKeeper's error code.
    Reconfig(Result<(), i32>),
}

/// From a member to the leader, in the member's order.
#[derive(Serialize, Deserialize)]
pub enum Forwarded {
    Writes(Vec<Command>),
    /// Sessions whose clients were heard from since the last report (liveness for expiry).
    Touch(Vec<i64>),
}

const MAX_PEER_FRAME: usize = 512 << 20;

pub(super) async fn write_msg<T: Serialize>(s: &mut (impl AsyncWriteExt + Unpin), msg: &T) -> io::Result<()> {
    let body = bincode::serialize(msg).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    s.write_all(&out).await
}

async fn read_msg<T: for<'a> Deserialize<'a>>(s: &mut (impl AsyncReadExt + Unpin)) -> io::Result<T> {
    let len = s.read_u32().await? as usize;
    if len > MAX_PEER_FRAME {
        return Err(io::Error::other(format!("peer frame of {len} bytes")));
    }
    let mut b = vec![0; len];
    s.read_exact(&mut b).await?;
    bincode::deserialize(&b).map_err(io::Error::other)
}

/// Reaches members at the addresses of this server's own `zoo.cfg` (as ZooKeeper does),
/// falling back to the address recorded in the membership.
pub struct Network {
    addrs: BTreeMap<u64, String>,
    /// The shortest time an RPC is given (see `PeerClient::call`): openraft gives a
    /// replication request one heartbeat interval, and a member's fsync on a busy disk may take
    /// longer (`runtime::PatientRuntime` lets openraft wait that long).
    min_ttl: Duration,
}

impl Network {
    pub(super) fn new(config: &ServerConfig) -> Network {
        Network { addrs: local_addrs(config), min_ttl: Duration::from_millis(timing(config).1.max(BUSY_MACHINE_MS)) }
    }
}

pub(super) fn local_addrs(config: &ServerConfig) -> BTreeMap<u64, String> {
    config.members.iter().map(|m| (m.id, m.peer_addr())).collect()
}

pub struct PeerClient {
    target: u64,
    addr: String,
    conn: Option<TcpStream>,
    min_ttl: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &ZkNode) -> PeerClient {
        let addr = self.addrs.get(&target).cloned().unwrap_or_else(|| node.addr.clone());
        PeerClient { target, addr, conn: None, min_ttl: self.min_ttl }
    }
}

impl PeerClient {
    /// A client for one-off requests to member `target` at `addr`, given all the time they ask for.
    pub(super) fn to(target: u64, addr: String) -> PeerClient {
        PeerClient { target, addr, conn: None, min_ttl: Duration::ZERO }
    }

    /// One request and its answer. Cancellation-safe: openraft drops this future when its own
    /// timeout fires, and a connection left with an unread answer on it would hand that answer
    /// to the next request (a stale "conflict" makes a leader believe its follower's log went
    /// backwards). So the connection is taken out while in use and put back only after a
    /// whole round trip.
    pub(super) async fn call(
        &mut self,
        req: PeerRequest,
        ttl: Duration,
    ) -> Result<PeerResponse, RPCError<u64, ZkNode, RaftError<u64>>> {
        let ttl = ttl.max(self.min_ttl);
        let conn = self.conn.take();
        let r = tokio::time::timeout(ttl, async {
            let mut s = match conn {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(&self.addr).await?;
                    let _ = s.set_nodelay(true);
                    s
                }
            };
            write_msg(&mut s, &req).await?;
            let resp = read_msg::<PeerResponse>(&mut s).await?;
            Ok::<_, io::Error>((s, resp))
        })
        .await;
        match r {
            Ok(Ok((s, resp))) => {
                self.conn = Some(s);
                Ok(resp)
            }
            Ok(Err(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(_) => Err(RPCError::Network(NetworkError::new(&io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} in {ttl:?}", self.addr),
            )))),
        }
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<u64, E>) -> RemoteError<u64, ZkNode, RaftError<u64, E>> {
        RemoteError::new(self.target, e)
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<u64, ZkNode, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(&io::Error::other("unexpected answer from a peer")))
}

fn widen<E: std::error::Error>(e: RPCError<u64, ZkNode, RaftError<u64>>) -> RPCError<u64, ZkNode, RaftError<u64, E>> {
    match e {
        RPCError::Unreachable(u) => RPCError::Unreachable(u),
        RPCError::Network(n) => RPCError::Network(n),
        RPCError::PayloadTooLarge(p) => RPCError::PayloadTooLarge(p),
        RPCError::Timeout(t) => RPCError::Timeout(t),
        RPCError::RemoteError(r) => RPCError::Network(NetworkError::new(&io::Error::other(r.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ZkNode, RaftError<u64>>> {
        match self.call(PeerRequest::Append(rpc), option.hard_ttl()).await? {
            PeerResponse::Append(Ok(r)) => Ok(r),
            PeerResponse::Append(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, ZkNode, RaftError<u64, InstallSnapshotError>>> {
        match self.call(PeerRequest::Snapshot(rpc), option.hard_ttl()).await.map_err(widen)? {
            PeerResponse::Snapshot(Ok(r)) => Ok(r),
            PeerResponse::Snapshot(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ZkNode, RaftError<u64>>> {
        match self.call(PeerRequest::Vote(rpc), option.hard_ttl()).await? {
            PeerResponse::Vote(Ok(r)) => Ok(r),
            PeerResponse::Vote(Err(e)) => Err(RPCError::RemoteError(self.remote(e))),
            _ => Err(unexpected()),
        }
    }
}

/// Serves the quorum port: Raft RPCs, and the write streams members forward to the leader.
/// `imported`: the entry this member's ZooKeeper import stands for, if it has one (see
/// `adopt.rs`).
pub async fn serve_peers(listener: TcpListener, raft: Raft, shared: Arc<Shared>, imported: Option<LogId<u64>>) {
    // The connections' tasks live in this set, so that stopping this task (server shutdown)
    // closes them too: a peer must not keep talking to a stopped member's leftovers.
    let mut conns = tokio::task::JoinSet::new();
    // When a leader's replication last reached this member (ms of `Shared::now`), on any
    // connection.
    let replicated = Arc::new(AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((stream, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (raft, shared, replicated) = (raft.clone(), shared.clone(), replicated.clone());
        conns.spawn(async move {
            let mut replicated_here = None;
            if let Err(e) = serve_peer(stream, &raft, &shared, &replicated, &mut replicated_here, imported).await {
                tracing::debug!(%peer, "peer connection ended: {e}");
            }
            if let Some(at) = replicated_here {
                stand_after_lease(&raft, &shared, &replicated, at).await;
            }
        });
    }
}

/// Serves one member's connection; `replicated_here`: when it last carried a leader's
/// replication, if it did.
async fn serve_peer(
    mut s: TcpStream,
    raft: &Raft,
    shared: &Arc<Shared>,
    replicated: &AtomicU64,
    replicated_here: &mut Option<u64>,
    imported: Option<LogId<u64>>,
) -> io::Result<()> {
    loop {
        let req: PeerRequest = read_msg(&mut s).await?;
        if let Some(imported) = imported {
            let (vote, from) = match &req {
                PeerRequest::Append(r) => (Some(&r.vote), Some(r.prev_log_id)),
                PeerRequest::Snapshot(r) => (Some(&r.vote), Some(r.meta.last_log_id)),
                _ => (None, None),
            };
            if let (Some(vote), Some(from)) = (vote, from) {
                if adopt::leader_lacks_import(raft, imported, vote, from) {
                    adopt::set_import_aside_and_restart(&shared.config, imported);
                }
            }
        }
        let resp = match req {
            PeerRequest::Append(r) => {
                let at = shared.now();
                replicated.store(at, Ordering::Relaxed);
                *replicated_here = Some(at);
                PeerResponse::Append(raft.append_entries(r).await)
            }
            PeerRequest::Vote(r) => PeerResponse::Vote(raft.vote(r).await),
            PeerRequest::Snapshot(r) => PeerResponse::Snapshot(raft.install_snapshot(r).await),
            PeerRequest::Reconfig { origin, token, plan } => {
                PeerResponse::Reconfig(lead_reconfig(shared, raft, origin, token, plan).await.map_err(|e| e.code()))
            }
            PeerRequest::ForwardStream { from } => {
                tracing::debug!(member = from, "forwarding stream opened");
                loop {
                    match read_msg::<Forwarded>(&mut s).await? {
                        // Proposed in the member's order; if this member is no longer leader the
                        // entry is dropped and the member, seeing the new leader, fails it.
                        Forwarded::Writes(c) => shared.relay(c).await,
                        Forwarded::Touch(ids) => shared.touch_sessions(&ids),
                    }
                }
            }
        };
        write_msg(&mut s, &resp).await?;
    }
}

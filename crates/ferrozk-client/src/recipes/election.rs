//! Leader election (kazoo's `Election`) and an observer that reports who leads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::lock::{sequence, ReleaseOnDrop};
use super::{Canceller, Lock};
use crate::{Client, ErrorCode, SessionState};

/// Leader election as kazoo's `Election`: candidates queue on a lock; the holder leads until it
/// returns (or its session ends), then the next candidate in line takes over. Each candidate
/// watches only the one ahead of it.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) -> Result<(), ferrozk_client::ErrorCode> {
/// use ferrozk_client::recipes::LeaderElection;
/// let mut election = LeaderElection::new(zk, "/service/leader", "node-a");
/// election.run(async { println!("leading"); /* lead until done */ }).await?;
/// # Ok(()) }
/// ```
pub struct LeaderElection {
    lock: Lock,
}

impl LeaderElection {
    pub fn new(zk: &Client, path: &str, identifier: &str) -> LeaderElection {
        LeaderElection { lock: Lock::new(zk, path, identifier) }
    }

    /// Waits to be elected, runs `lead`, then steps down. `Ok(None)` if cancelled (see
    /// [`LeaderElection::canceller`]) before being elected. If this future is dropped, the
    /// candidate leaves the queue (or steps down, if it was leading). Connection loss is ridden
    /// through while the session lives; if it ends while leading, `lead` is dropped and
    /// `Err(SessionExpired)` says leadership was lost.
    pub async fn run<F, T>(&mut self, lead: F) -> Result<Option<T>, ErrorCode>
    where
        F: std::future::Future<Output = T>,
    {
        if !self.lock.acquire(None).await? {
            return Ok(None);
        }
        let held = ReleaseOnDrop(&mut self.lock);
        // Leadership ends with the session: `lead` is stopped then, and the loss reported.
        let zk = held.0.client().clone();
        let out = tokio::select! {
            out = lead => out,
            _ = zk.session_lost() => return Err(ErrorCode::SessionExpired),
        };
        held.0.release().await?;
        Ok(Some(out))
    }

    /// Makes a `run` still waiting to be elected give up (kazoo's `cancel()`); it does not
    /// interrupt a leader.
    pub fn canceller(&self) -> Canceller {
        self.lock.canceller()
    }

    /// The candidates' identifiers, the leader first (kazoo's `contenders()`).
    pub async fn contenders(&self) -> Result<Vec<String>, ErrorCode> {
        self.lock.contenders().await
    }

    /// The identifier of the current leader, if any candidate is queued.
    pub async fn leader(&self) -> Result<Option<String>, ErrorCode> {
        Ok(self.lock.contenders().await?.into_iter().next())
    }
}

/// Reports who leads the election at a path: once at start, then at every change of leader
/// (`None` while there is no candidate). It needs no candidacy of its own.
///
/// It watches only the leader's node, so candidates joining or leaving the queue behind the
/// leader wake no observer; a change of leader wakes each observer once.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) {
/// use ferrozk_client::recipes::LeaderObserver;
/// let _observer = LeaderObserver::start(zk, "/service/leader", |leader| {
///     println!("leader is now {leader:?}");
/// });
/// # }
/// ```
pub struct LeaderObserver {
    task: JoinHandle<()>,
    /// Watch wake-ups so far (for checking there is no herd).
    pub wakeups: Arc<AtomicU64>,
}

impl LeaderObserver {
    /// Calls `on_change` with the leader's identifier now and whenever the leader changes.
    /// The observer stops when dropped or when the session ends.
    pub fn start<F>(zk: &Client, path: &str, mut on_change: F) -> LeaderObserver
    where
        F: FnMut(Option<&str>) + Send + 'static,
    {
        let wakeups = Arc::new(AtomicU64::new(0));
        let (zk, path, counter) = (zk.clone(), path.trim_end_matches('/').to_string(), wakeups.clone());
        let task = tokio::spawn(async move {
            let mut reported: Option<Option<String>> = None;
            loop {
                match observe_once(&zk, &path, &mut reported, &mut on_change, &counter).await {
                    Ok(()) => {}
                    Err(ErrorCode::ConnectionLoss) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if zk.wait_for(SessionState::Connected).await != SessionState::Connected {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        LeaderObserver { task, wakeups }
    }

    /// The same reports on a channel (it closes when the observer stops).
    pub fn channel(zk: &Client, path: &str) -> (LeaderObserver, mpsc::UnboundedReceiver<Option<String>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let observer = Self::start(zk, path, move |leader| {
            let _ = tx.send(leader.map(str::to_string));
        });
        (observer, rx)
    }
}

impl Drop for LeaderObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One look at the election: report the leader if it changed, then wait for it to go (or, with
/// no candidates, for one to arrive). `reported` holds the leader node last reported.
async fn observe_once<F: FnMut(Option<&str>)>(
    zk: &Client,
    path: &str,
    reported: &mut Option<Option<String>>,
    on_change: &mut F,
    wakeups: &AtomicU64,
) -> Result<(), ErrorCode> {
    let zk = zk.retrying();
    let children = match zk.get_children(path).await {
        Ok((c, _)) => c,
        Err(ErrorCode::NoNode) => Vec::new(),
        Err(e) => return Err(e),
    };
    let leader = children.iter().filter_map(|c| sequence(c, &["__lock__"]).map(|s| (s, c))).min().map(|(_, c)| c.clone());
    let Some(node) = leader else {
        if !matches!(reported, Some(None)) {
            *reported = Some(None);
            on_change(None);
        }
        // Nobody queued: wait for a first candidate (or for the election node itself).
        let fired = match zk.get_children_w(path).await {
            Ok(((c, _), _)) if !c.is_empty() => return Ok(()),
            Ok((_, watch)) => watch.await,
            Err(ErrorCode::NoNode) => match zk.exists_w(path).await? {
                (Some(_), _) => return Ok(()),
                (None, watch) => watch.await,
            },
            Err(e) => return Err(e),
        };
        wakeups.fetch_add(1, Ordering::Relaxed);
        return fired.map(|_| ());
    };
    let node_path = format!("{path}/{node}");
    if reported.as_ref().and_then(|r| r.as_deref()) != Some(node.as_str()) {
        let identifier = match zk.get_data(&node_path).await {
            Ok((data, _)) => String::from_utf8_lossy(&data).into_owned(),
            Err(ErrorCode::NoNode) => return Ok(()),
            Err(e) => return Err(e),
        };
        *reported = Some(Some(node.clone()));
        on_change(Some(&identifier));
    }
    match zk.exists_w(&node_path).await? {
        (None, _) => Ok(()),
        (Some(_), gone) => {
            let fired = gone.await;
            wakeups.fetch_add(1, Ordering::Relaxed);
            fired.map(|_| ())
        }
    }
}

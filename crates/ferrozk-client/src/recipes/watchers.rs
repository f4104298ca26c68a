//! A data watcher (kazoo's `DataWatch`): each new value of a node, for configuration and the
//! like.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::NodeData;
use crate::{Client, ErrorCode, SessionState};

/// Follows one node's value: calls back with its current value at once, then with each new
/// value (`None` while the node does not exist), through deletions and re-creations.
///
/// Built on one-shot watches re-armed after each read (works with any ZooKeeper, and a
/// reconnection replays what was missed). A value is reported when its `(czxid, mzxid)` is new,
/// so each write is reported at most once; writes closer together than a read's round trip may
/// be seen only as their last value. The callback runs on a spawned task, one call at a time;
/// returning `false` stops the watcher.
///
/// ```no_run
/// # async fn demo(zk: &ferrozk_client::Client) {
/// use ferrozk_client::recipes::DataWatch;
/// let _watch = DataWatch::start(zk, "/config/app", |value| {
///     match value {
///         Some(v) => println!("config v{}: {}", v.stat.version, String::from_utf8_lossy(&v.data)),
///         None => println!("config deleted"),
///     }
///     true // keep watching
/// });
/// # }
/// ```
pub struct DataWatch {
    task: JoinHandle<()>,
}

impl DataWatch {
    /// Starts watching; stops when `on_change` returns `false`, when dropped, or when the
    /// session ends.
    pub fn start<F>(zk: &Client, path: &str, mut on_change: F) -> DataWatch
    where
        F: FnMut(Option<&NodeData>) -> bool + Send + 'static,
    {
        let (zk, path) = (zk.clone(), path.to_string());
        let task = tokio::spawn(async move {
            let mut reported: Option<Option<(i64, i64)>> = None;
            loop {
                let read = match zk.get_data_w(&path).await {
                    Ok(((data, stat), changed)) => Ok((Some(NodeData { data, stat }), changed)),
                    // No node: watch for its creation instead.
                    Err(ErrorCode::NoNode) => match zk.exists_w(&path).await {
                        Ok((None, created)) => Ok((None, created)),
                        // Created in between: read it.
                        Ok((Some(_), _)) => continue,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                let (value, changed) = match read {
                    Ok(r) => r,
                    Err(ErrorCode::ConnectionLoss) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if zk.wait_for(SessionState::Connected).await != SessionState::Connected {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(path, "data watch stops: {e}");
                        return;
                    }
                };
                let version = value.as_ref().map(|v| (v.stat.czxid, v.stat.mzxid));
                if reported != Some(version) {
                    reported = Some(version);
                    if !on_change(value.as_ref()) {
                        return;
                    }
                }
                // Fires on the next change; a session end fires it too, and the next read
                // then fails and stops the loop.
                let _ = changed.await;
            }
        });
        DataWatch { task }
    }

    /// The same values on a channel (it closes when the watcher stops).
    pub fn channel(zk: &Client, path: &str) -> (DataWatch, mpsc::UnboundedReceiver<Option<NodeData>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watch = Self::start(zk, path, move |value| tx.send(value.cloned()).is_ok());
        (watch, rx)
    }

    /// Stops the watcher.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for DataWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! openraft's tokio runtime, with one change: a timeout openraft sets on a peer RPC is never
//! shorter than [`RPC_FLOOR`].
//!
//! openraft 0.9 gives an AppendEntries one heartbeat interval (83 ms at tickTime 2000) and
//! abandons it after that. An append of a large entry on a busy two-core machine (or a debug
//! build running many members) takes longer: it was cut off, sent again from the start (more
//! work for the same busy machine), cut off again, and a member that fell behind never caught
//! up. [`super::network::PeerClient`] gives each RPC at least `BUSY_MACHINE_MS`, or the election
//! timeout when that is longer; this floor lets that wait happen. An RPC that needs it holds
//! back only that one member's replication stream: a member that is really gone is noticed by
//! its silence (elections, check-quorum), not by these timeouts.

use std::future::Future;
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};

/// At least every RPC timeout `PeerClient` applies (its floor is the election timeout, at
/// most 1 s, or `BUSY_MACHINE_MS`), so that one governs.
pub(super) const RPC_FLOOR: Duration = Duration::from_millis(1000);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PatientRuntime;

type Tokio = TokioRuntime;

impl AsyncRuntime for PatientRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as AsyncRuntime>::ThreadLocalRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout(duration.max(RPC_FLOOR), future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        Tokio::oneshot()
    }
}

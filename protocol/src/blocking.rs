//! Blocking work (file I/O) started from async code: on tokio's blocking pool, or inline under a simulation.
//!
//! A server runs file work (fsyncs, reading a partition back, creating thousands of files) on tokio's
//! blocking pool, so that a slow disk never stalls the async workers that answer requests and send
//! heartbeats. A turmoil simulation must not: its clock moves with each step of the simulation, not with
//! real time, so work on another thread takes as much *simulated* time as the machine happens to need — on a
//! loaded machine an fsync becomes seconds of simulated silence, and a seed no longer replays. After
//! [`run_inline`], every call runs its work on the calling thread instead, where it takes no simulated time.
//! Simulations call it once, before they start; nothing else does.

use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

static INLINE: AtomicBool = AtomicBool::new(false);

/// The blocking work did not complete: it panicked, or the runtime shut down under it.
#[derive(Debug, Error)]
#[error("blocking work did not complete: {0}")]
pub struct Incomplete(String);

/// From now on, in this process, blocking work runs on the thread that asks for it. For simulations only.
pub fn run_inline() {
    INLINE.store(true, Ordering::Relaxed);
}

fn inline() -> bool {
    INLINE.load(Ordering::Relaxed)
}

/// Runs `work` off the async workers and waits for it.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Incomplete> {
    if inline() {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Incomplete(e.to_string()))
}

/// Starts `work` off the async workers without waiting for it (inline: runs it now).
pub fn spawn(work: impl FnOnce() + Send + 'static) {
    if inline() {
        work();
    } else {
        tokio::task::spawn_blocking(work);
    }
}

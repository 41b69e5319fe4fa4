//! Check-quorum: an active controller (the Raft leader) that has not heard from a majority of the voters
//! for a while steps down, so that a controller cut off from its peers stops presenting itself as active.
//!
//! openraft's own check-quorum only goes half way: once no quorum has acknowledged the leader for its lease
//! (`election_timeout_max`), it refuses new proposals (`ForwardToLeader` with no leader), but it stays
//! `ServerState::Leader` and names itself leader in its metrics for as long as the cut lasts. Brokers
//! asking it, `DescribeQuorum`, and anyone reading the metrics would see two active controllers once the
//! majority has elected another. openraft has no call that makes a leader step down, so [`spawn`] runs a
//! task that watches the leader's `last_quorum_acked` metric and, past [`step_down_after`], delivers to its
//! own Raft a vote request from a phantom candidate, [`PHANTOM_CANDIDATE`], for the leader's own term.
//!
//! Why that vote, and why it is safe:
//!
//! - openraft's vote handling re-checks everything at the moment it runs: it refuses the vote while a quorum
//!   still acknowledges the leader (its quorum-ack lease), and refuses a candidate whose log is behind. So a
//!   step-down decided on slightly stale metrics is refused if an acknowledgement arrived meanwhile.
//! - The vote is `(term, PHANTOM_CANDIDATE)`, not committed. With openraft's "advanced" leader ids (term,
//!   node id), compared in that order, it is greater than the leader's own committed vote `(term, self)`, so
//!   the leader grants it and becomes a follower, but it does **not** raise the term: any leader the majority
//!   elects meanwhile has a later term and is followed as soon as the link is back, without disturbing it.
//!   (A vote for `term + 1` would be as large as that new leader's, and could make it step down.)
//! - No controller has the phantom's id (Kafka node ids are `i32`), so no one ever acts on that vote; the
//!   stepped-down node's next election starts with a pre-vote (see `service::start_on`), which fails while
//!   it is cut off, so its term stays where it is.
//!
//! The task does nothing on a single-voter quorum (its leader is its own majority), and nothing while this
//! controller is not the leader.

use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::InstantOf;
use tokio::task::JoinHandle;

use crate::types::{LogId, NodeId, Raft, TypeConfig, Vote, VoteRequest};

/// The candidate the step-down vote is for: an id no controller has (controller ids are Kafka node ids,
/// non-negative `i32`s), and the largest, so that its vote beats the leader's own within the same term.
pub const PHANTOM_CANDIDATE: NodeId = u64::MAX;

/// How long a leader may go without a majority acknowledging it before it steps down:
/// `election_timeout_max + election_timeout_min`.
///
/// Not sooner: openraft's leader keeps its lease for `election_timeout_max` after the last acknowledged
/// heartbeat (and refuses the step-down vote until then), and a follower cannot start an election before its
/// lease from the leader has lapsed and at least `election_timeout_min` more has passed; stepping down
/// earlier would only turn a short hiccup into an election. Not much later either: by then the majority may
/// have a new leader.
pub fn step_down_after(config: &openraft::Config) -> Duration {
    Duration::from_millis(config.election_timeout_max + config.election_timeout_min)
}

/// How often the task looks at the leader's metrics: four times per heartbeat interval, which bounds how late
/// after [`step_down_after`] the step-down comes. A look is a read of a watch channel: cheap.
fn check_interval(config: &openraft::Config) -> Duration {
    Duration::from_millis((config.heartbeat_interval / 4).max(1))
}

/// The leadership the task is watching: one term of this controller's.
#[derive(Debug, Clone, Copy)]
struct Leading {
    term: u64,
    /// When the task first saw this leadership: stands in for the last quorum acknowledgement until there is
    /// one (a leader cut off right after its election has none).
    seen_at: InstantOf<TypeConfig>,
}

/// Runs check-quorum for controller `id` until the task is aborted or its Raft stops.
pub(crate) fn spawn(id: NodeId, raft: Raft, config: &openraft::Config) -> JoinHandle<()> {
    let limit = step_down_after(config);
    let interval = check_interval(config);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading: Option<Leading> = None;
        loop {
            ticks.tick().await;
            let (term, silent_since) = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                if metrics.running_state.is_err() {
                    return;
                }
                let voters = metrics.membership_config.membership().voter_ids().count();
                if metrics.state != ServerState::Leader || voters <= 1 {
                    leading = None;
                    continue;
                }
                let term = metrics.current_term;
                let seen = match leading {
                    Some(seen) if seen.term == term => seen,
                    _ => Leading {
                        term,
                        seen_at: TypeConfig::now(),
                    },
                };
                leading = Some(seen);
                let acked = metrics.last_quorum_acked.map(|acked| acked.into_inner());
                (term, acked.unwrap_or(seen.seen_at))
            };
            let silent = TypeConfig::now() - silent_since;
            if silent < limit {
                continue;
            }
            match step_down(id, &raft, term).await {
                Ok(true) => tracing::warn!(
                    id,
                    term,
                    silent_ms = silent.as_millis() as u64,
                    "no majority of the controllers acknowledged this active controller: it stepped down"
                ),
                Ok(false) => {}
                Err(Stopped) => return,
            }
        }
    })
}

/// The Raft stopped (shut down, or a fatal storage error).
#[derive(Debug)]
struct Stopped;

/// Makes controller `id`, leader of `term`, grant the phantom candidate's vote, which ends its leadership.
/// Answers whether it did; `false` when it is no longer that leader, or openraft refused the vote (a quorum
/// acknowledged it after all).
async fn step_down(id: NodeId, raft: &Raft, term: u64) -> Result<bool, Stopped> {
    let own = Vote::new_committed(term, id);
    let last_log_id: Option<Option<LogId>> = raft
        .with_raft_state(move |state| {
            (state.server_state == ServerState::Leader && *state.vote_ref() == own)
                .then(|| state.log_ids.last().copied())
        })
        .await
        .map_err(|_| Stopped)?;
    // The phantom's log is the leader's own: it must be at least as long to be granted, and the leader takes
    // no new entries once its lease has lapsed.
    let Some(last_log_id) = last_log_id else {
        return Ok(false);
    };
    let request = VoteRequest::new(Vote::new(term, PHANTOM_CANDIDATE), last_log_id);
    match raft.vote(request).await {
        Ok(response) => {
            if !response.vote_granted {
                tracing::debug!(id, term, vote = %response.vote, "check-quorum step-down refused");
            }
            Ok(response.vote_granted)
        }
        Err(_) => Err(Stopped),
    }
}

//! Broker liveness: heartbeats, session expiry, and the fence and unfence records they lead to.
//!
//! [`BrokerLiveness`] is held in memory by the active controller only. Liveness is not metadata: a heartbeat
//! every two seconds from every broker would flood the metadata log, so only its *consequences* (a broker
//! fenced after missing its session, unfenced once caught up) become records. A controller that becomes
//! active starts every registered broker's session afresh ([`BrokerLiveness::from_image`]), as Kafka does:
//! it cannot know when the previous controller last heard from them.
//!
//! Time is the caller's: every method takes `now_ms`, milliseconds on a monotonic clock with any origin.
//! Nothing here reads a clock, so tests drive time by hand. This module does not decide when to check for
//! expiry (every heartbeat interval or so) nor propose the records.
//!
//! The caller must propose each result's records and wait for them to apply before computing the next
//! result from the new image: a result computed on an image that lacks the previous batch repeats its
//! elections.

use std::collections::BTreeMap;

use crate::control::brokers::{BrokerError, fence_broker, unfence_broker};
use crate::control::election::preferred_leader_elections;
use crate::control::{ControllerResult, is_live};
use crate::image::{BrokerId, MetadataImage, Topic};
use crate::proto::metadata::{MetadataBatch, MetadataRecord};

/// How often a broker heartbeats by default (Kafka's `broker.heartbeat.interval.ms`).
pub const BROKER_HEARTBEAT_INTERVAL_MS: u64 = 2_000;

/// How long a broker stays live without a heartbeat by default (Kafka's `broker.session.timeout.ms`).
pub const BROKER_SESSION_TIMEOUT_MS: u64 = 9_000;

// Four heartbeats may be lost before a session ends.
const _: () = assert!(BROKER_SESSION_TIMEOUT_MS > 4 * BROKER_HEARTBEAT_INTERVAL_MS);

/// What the controller last heard from one run of a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub incarnation: u64,
    pub last_heartbeat_ms: u64,
    /// The metadata log offset the broker has applied, or `None` before its first heartbeat.
    pub applied_offset: Option<u64>,
}

/// A broker's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub broker_id: BrokerId,
    pub incarnation: u64,
    /// The metadata log offset the broker has applied.
    pub applied_offset: u64,
}

/// What a heartbeat asks of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatDecision {
    /// Nothing to commit: the broker is live, or fenced and still catching up.
    Nothing,
    /// The broker is fenced and has caught up: unfence it ([`unfence_caught_up`]).
    Unfence,
}

/// Why a heartbeat is refused. It does not extend any session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// Kafka's BROKER_ID_NOT_REGISTERED.
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// Kafka's STALE_BROKER_EPOCH: a run of the broker other than the registered one (an old process still
    /// running, or a new one whose registration is not committed yet).
    #[error("broker {broker_id}: heartbeat from incarnation {incarnation}, but the registration is {registered}")]
    StaleIncarnation {
        broker_id: BrokerId,
        incarnation: u64,
        registered: u64,
    },
}

impl HeartbeatError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownBroker(_) => 102,
            Self::StaleIncarnation { .. } => 77,
        }
    }
}

/// Brokers' sessions, on the active controller. Bounded by the number of registered brokers: a session is
/// only created for a broker the image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLiveness {
    session_timeout_ms: u64,
    sessions: BTreeMap<BrokerId, Session>,
}

impl Default for BrokerLiveness {
    fn default() -> Self {
        Self::new(BROKER_SESSION_TIMEOUT_MS)
    }
}

impl BrokerLiveness {
    /// No sessions yet; a broker's session ends `session_timeout_ms` after its last heartbeat.
    pub fn new(session_timeout_ms: u64) -> Self {
        assert!(session_timeout_ms > 0, "a session must last some time");
        Self {
            session_timeout_ms,
            sessions: BTreeMap::new(),
        }
    }

    /// For a controller that has just become active: every registered broker gets a full session from
    /// `now_ms`, with no applied offset known.
    pub fn from_image(image: &MetadataImage, now_ms: u64, session_timeout_ms: u64) -> Self {
        let mut liveness = Self::new(session_timeout_ms);
        for broker in image.brokers().values() {
            liveness.registered(broker.id, broker.incarnation, now_ms);
        }
        liveness
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    pub fn session(&self, broker_id: BrokerId) -> Option<&Session> {
        self.sessions.get(&broker_id)
    }

    /// Run `incarnation` of `broker_id` registered at `now_ms`: its session starts, replacing any of an
    /// earlier run (whose heartbeats and applied offset say nothing about this one).
    pub fn registered(&mut self, broker_id: BrokerId, incarnation: u64, now_ms: u64) {
        let session = Session {
            incarnation,
            last_heartbeat_ms: now_ms,
            applied_offset: None,
        };
        self.sessions.insert(broker_id, session);
    }

    /// Records `heartbeat`, received at `now_ms`, against the registration in `image`. A fenced broker that
    /// has applied the metadata log up to `caught_up_offset` (for instance the offset of its registration,
    /// or the committed offset) is to be unfenced.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        heartbeat: Heartbeat,
        now_ms: u64,
        caught_up_offset: u64,
    ) -> Result<HeartbeatDecision, HeartbeatError> {
        let Heartbeat {
            broker_id,
            incarnation,
            applied_offset,
        } = heartbeat;
        let broker = image
            .broker(broker_id)
            .ok_or(HeartbeatError::UnknownBroker(broker_id))?;
        if broker.incarnation != incarnation {
            return Err(HeartbeatError::StaleIncarnation {
                broker_id,
                incarnation,
                registered: broker.incarnation,
            });
        }
        let session = self.sessions.entry(broker_id).or_insert(Session {
            incarnation,
            last_heartbeat_ms: now_ms,
            applied_offset: None,
        });
        if session.incarnation != incarnation {
            *session = Session {
                incarnation,
                last_heartbeat_ms: now_ms,
                applied_offset: None,
            };
        }
        // Heartbeats may be handled out of order; a late one must not shorten the session.
        session.last_heartbeat_ms = session.last_heartbeat_ms.max(now_ms);
        session.applied_offset = Some(
            session
                .applied_offset
                .map_or(applied_offset, |seen| seen.max(applied_offset)),
        );
        if broker.fenced && applied_offset >= caught_up_offset {
            Ok(HeartbeatDecision::Unfence)
        } else {
            Ok(HeartbeatDecision::Nothing)
        }
    }

    /// Brokers whose session ended before `now_ms`: no heartbeat for longer than the session timeout.
    pub fn expired(&self, now_ms: u64) -> Vec<BrokerId> {
        self.sessions
            .iter()
            .filter(|(_, session)| now_ms.saturating_sub(session.last_heartbeat_ms) > self.session_timeout_ms)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// Fences every live broker whose session has ended by `now_ms`, in one batch, with the elections that
/// follow (see [`fence_broker`]). The response lists the brokers fenced. Brokers already fenced in `image`
/// give no records, so calling this again before the broker returns is harmless.
pub fn fence_expired(
    image: &MetadataImage,
    liveness: &BrokerLiveness,
    now_ms: u64,
    unclean_allowed: impl Fn(&Topic) -> bool,
) -> ControllerResult<Vec<BrokerId>> {
    let mut records = Vec::new();
    let mut fenced = Vec::new();
    // Each broker's elections are computed on the image with the previous ones applied: two fenced brokers
    // sharing a partition must not each pick the other as its new leader.
    let mut next = image.clone();
    for broker_id in liveness.expired(now_ms) {
        if !is_live(&next, broker_id) {
            continue;
        }
        let result = fence_broker(&next, broker_id, &unclean_allowed).expect("a live broker is registered");
        next = replayed(&next, &result.records);
        records.extend(result.records);
        fenced.push(broker_id);
    }
    ControllerResult::new(records, fenced)
}

/// Unfences a broker whose heartbeat was answered [`HeartbeatDecision::Unfence`] (see [`unfence_broker`]),
/// and, with `auto_leader_rebalance` (Kafka's `auto.leader.rebalance.enable`), moves leadership back to
/// preferred replicas in the same batch ([`preferred_leader_elections`]).
pub fn unfence_caught_up(
    image: &MetadataImage,
    broker_id: BrokerId,
    unclean_allowed: impl Fn(&Topic) -> bool,
    auto_leader_rebalance: bool,
) -> Result<ControllerResult, BrokerError> {
    let mut result = unfence_broker(image, broker_id, unclean_allowed)?;
    if auto_leader_rebalance {
        let unfenced = replayed(image, &result.records);
        result.records.extend(preferred_leader_elections(&unfenced).records);
    }
    Ok(result)
}

/// `image` with `records` applied, to compute the next records of the same batch on.
fn replayed(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    let batch = MetadataBatch {
        records: records.to_vec(),
    };
    image
        .replay_batch(&batch)
        .expect("control logic produced records that replay refuses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::registration::register_broker;
    use crate::control::testing::{apply, cluster, leaders, partition, set_isr, with_orders};

    fn never(_: &Topic) -> bool {
        false
    }

    fn beat(broker_id: BrokerId, incarnation: u64, applied_offset: u64) -> Heartbeat {
        Heartbeat {
            broker_id,
            incarnation,
            applied_offset,
        }
    }

    /// A fake clock: milliseconds since the test began.
    struct Clock {
        now_ms: u64,
    }

    impl Clock {
        fn advance(&mut self, ms: u64) -> u64 {
            self.now_ms += ms;
            self.now_ms
        }
    }

    #[test]
    fn a_silent_broker_is_fenced_after_its_session_and_returns_once_caught_up() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 3, 3);
        let before = leaders(&image);
        let gone = partition(&image, 0).leader;
        let mut clock = Clock { now_ms: 1_000 };
        let mut liveness = BrokerLiveness::from_image(&image, clock.now_ms, BROKER_SESSION_TIMEOUT_MS);
        let committed = 10;

        // Everyone heartbeats for a while; then `gone` stops.
        for _ in 0..3 {
            let now = clock.advance(BROKER_HEARTBEAT_INTERVAL_MS);
            for id in 1..=3 {
                let decision = liveness.heartbeat(&image, beat(id, 1, committed), now, committed);
                assert_eq!(decision, Ok(HeartbeatDecision::Nothing));
            }
        }
        let last_heard_ms = clock.now_ms;
        let mut image = image;
        while clock.now_ms <= last_heard_ms + BROKER_SESSION_TIMEOUT_MS {
            let result = fence_expired(&image, &liveness, clock.now_ms, never);
            assert!(result.records.is_empty(), "fenced early at {} ms", clock.now_ms);
            let now = clock.advance(BROKER_HEARTBEAT_INTERVAL_MS / 2);
            for id in (1..=3).filter(|&id| id != gone) {
                liveness
                    .heartbeat(&image, beat(id, 1, committed), now, committed)
                    .unwrap();
            }
        }
        assert_eq!(liveness.expired(clock.now_ms), vec![gone]);
        let result = fence_expired(&image, &liveness, clock.now_ms, never);
        assert_eq!(result.response, vec![gone]);
        image = apply(&image, &result);
        assert!(image.broker(gone).unwrap().fenced);
        for index in 0..3 {
            let p = partition(&image, index);
            assert_ne!(p.leader, gone);
            assert!(!p.isr.contains(&gone));
        }
        assert!(!leaders(&image).contains_key(&gone));
        assert!(
            fence_expired(&image, &liveness, clock.now_ms, never).records.is_empty(),
            "a fenced broker is not fenced again"
        );

        // The broker restarts as incarnation 2; the old run's heartbeats are refused.
        let now = clock.advance(1_000);
        let registration = register_broker(&image, gone, 2, Vec::new(), None, never).unwrap();
        image = apply(&image, &registration);
        liveness.registered(gone, 2, now);
        let stale = liveness.heartbeat(&image, beat(gone, 1, committed), now, committed);
        assert_eq!(stale.unwrap_err().kafka_error_code(), 77);
        assert!(liveness.expired(now).is_empty());

        // Behind the log: stays fenced. Caught up: unfenced.
        let caught_up = committed + 1;
        let now = clock.advance(BROKER_HEARTBEAT_INTERVAL_MS);
        let behind = liveness.heartbeat(&image, beat(gone, 2, caught_up - 1), now, caught_up);
        assert_eq!(behind, Ok(HeartbeatDecision::Nothing));
        let now = clock.advance(BROKER_HEARTBEAT_INTERVAL_MS);
        let decision = liveness.heartbeat(&image, beat(gone, 2, caught_up), now, caught_up);
        assert_eq!(decision, Ok(HeartbeatDecision::Unfence));
        image = apply(&image, &unfence_caught_up(&image, gone, never, true).unwrap());
        assert!(!image.broker(gone).unwrap().fenced);
        let decision = liveness.heartbeat(&image, beat(gone, 2, caught_up), now, caught_up);
        assert_eq!(decision, Ok(HeartbeatDecision::Nothing), "a live broker needs nothing");

        // Its partitions' leaders take it back into their ISRs; the rebalance then returns leadership.
        for index in 0..3 {
            let replicas = partition(&image, index).replicas.clone();
            image = set_isr(&image, index, &replicas);
        }
        image = apply(&image, &preferred_leader_elections(&image));
        assert_eq!(leaders(&image), before);
        assert_eq!(partition(&image, 0).leader, gone);
    }

    #[test]
    fn unfencing_with_auto_rebalance_moves_leaders_in_the_same_batch() {
        // Partition 0 prefers `a`, but `b` took over while `a` was away; `a` is back and in sync again.
        let image = with_orders(&cluster(&[(1, None), (2, None)]), 2, 2);
        let (a, b) = (partition(&image, 0).replicas[0], partition(&image, 0).replicas[1]);
        let image = apply(&image, &fence_broker(&image, a, never).unwrap());
        let image = apply(&image, &register_broker(&image, a, 2, Vec::new(), None, never).unwrap());
        let image = apply(&image, &unfence_caught_up(&image, a, never, false).unwrap());
        let image = set_isr(&image, 0, &[a, b]);
        let image = set_isr(&image, 1, &[a, b]);
        assert_eq!(partition(&image, 0).leader, b);

        // The next unfence (here a new broker 3) carries the rebalance when it is on.
        let image = apply(&image, &register_broker(&image, 3, 1, Vec::new(), None, never).unwrap());
        let without = unfence_caught_up(&image, 3, never, false).unwrap();
        assert_eq!(without.records.len(), 1, "only the unfence");
        let with = unfence_caught_up(&image, 3, never, true).unwrap();
        assert_eq!(
            with.records.len(),
            2,
            "the unfence, and partition 0 back to its preferred replica"
        );
        let image = apply(&image, &with);
        assert_eq!(partition(&image, 0).leader, a);
        assert_eq!(partition(&image, 1).leader, partition(&image, 1).replicas[0]);
    }

    #[test]
    fn brokers_expiring_together_are_fenced_in_one_consistent_batch() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 3, 3);
        let mut liveness = BrokerLiveness::new(3_000);
        liveness.registered(1, 1, 0);
        liveness.registered(2, 1, 0);
        liveness.registered(3, 1, 0);
        liveness.heartbeat(&image, beat(3, 1, 0), 2_000, 0).unwrap();
        assert!(liveness.expired(3_000).is_empty(), "a session lasts its whole timeout");
        assert_eq!(liveness.expired(3_001), vec![1, 2]);
        let result = fence_expired(&image, &liveness, 3_001, never);
        assert_eq!(result.response, vec![1, 2]);
        let image = apply(&image, &result);
        for index in 0..3 {
            assert_eq!(
                partition(&image, index).leader,
                3,
                "the one live broker leads everything"
            );
        }
    }

    #[test]
    fn heartbeats_need_a_registration() {
        let image = cluster(&[(1, None)]);
        let mut liveness = BrokerLiveness::default();
        assert_eq!(liveness.session_timeout_ms(), BROKER_SESSION_TIMEOUT_MS);
        let unknown = liveness.heartbeat(&image, beat(7, 1, 0), 0, 0).unwrap_err();
        assert_eq!(unknown.kafka_error_code(), 102);
        assert!(liveness.session(7).is_none());
        // A late heartbeat does not move the session back.
        liveness.heartbeat(&image, beat(1, 1, 5), 5_000, 0).unwrap();
        liveness.heartbeat(&image, beat(1, 1, 3), 4_000, 0).unwrap();
        let session = liveness.session(1).unwrap();
        assert_eq!((session.last_heartbeat_ms, session.applied_offset), (5_000, Some(5)));
    }
}

//! Fetch sessions (KIP-227): a consumer of many partitions names them all once, in a full fetch that opens a
//! session; each later fetch of the session (an incremental fetch) names only the partitions whose position
//! changed, those to add and those to forget, and is answered only with the partitions that have something
//! new. A consumer of thousands of mostly idle partitions then sends and receives a few bytes per poll
//! instead of every partition every time.
//!
//! This module keeps the sessions and decides, without touching a log: [`FetchSessions::plan`] turns a
//! request's session fields into the partitions to read ([`Plan`]), and [`FetchSessions::answered`] into
//! which of them the answer carries, remembering what the client was last told of each. `crate::api::fetch`
//! does the reading in between.
//!
//! The rules are Kafka's (`FetchSession.scala`):
//! - session id 0, epoch 0: a full fetch that opens a new session (if a slot is free);
//! - session id 0, epoch -1: a full fetch without a session (what clients before KIP-227 send);
//! - session id N, epoch 0 or -1: session N is closed, then as above;
//! - session id N, epoch E > 0: an incremental fetch of session N, which must be at epoch E
//!   (`FETCH_SESSION_ID_NOT_FOUND`, `INVALID_FETCH_SESSION_EPOCH` otherwise); the epoch then moves on.
//!
//! A partition is in an incremental answer when it has records, an error, or a high watermark or log start
//! offset other than the client last saw. After an error its remembered high watermark is -1, so it is
//! answered again once the error is gone. Partitions that returned records move to the end of the session's
//! order, so that under a byte limit the others get their turn.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions. When it is full, a new
//! session takes the place of the least recently used one only if that one has been idle for two minutes
//! (Kafka's eviction floor); otherwise the fetch is answered without a session (id 0), which the client
//! takes to mean "send full fetches".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

/// The session id of "no session".
pub const INVALID_SESSION_ID: i32 = 0;
/// The epoch of a full fetch that opens a session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch that opens none.
pub const FINAL_EPOCH: i32 = -1;
/// How long a session must have been unused before a new one may evict it (Kafka's
/// `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS`).
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);
/// Kafka's `max.incremental.fetch.session.cache.slots` default.
pub const CACHE_SLOTS_DEFAULT: usize = 1000;

/// How a fetch names a topic: by id from Fetch v13 on, by name before.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicKey {
    Id(Uuid),
    Name(Arc<str>),
}

/// One partition a fetch reads, with what the client asked of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub topic: TopicKey,
    pub partition: i32,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub log_start_offset: i64,
    pub partition_max_bytes: i32,
}

impl Wanted {
    fn key(&self) -> (TopicKey, i32) {
        (self.topic.clone(), self.partition)
    }
}

/// What a fetch reads, and how its answer is shaped.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// No session: every partition asked is read and answered.
    Sessionless(Vec<Wanted>),
    /// A full fetch that opens a session with its partitions once it is answered.
    Full(Vec<Wanted>),
    /// An incremental fetch of session `id`: every partition of the session is read, in the session's order,
    /// and only those with news are answered.
    Incremental { id: i32, wanted: Vec<Wanted> },
}

impl Plan {
    pub fn wanted(&self) -> &[Wanted] {
        match self {
            Plan::Sessionless(wanted) | Plan::Full(wanted) | Plan::Incremental { wanted, .. } => wanted,
        }
    }
}

/// What the answer for one partition says, as far as a session remembers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub record_bytes: usize,
    pub error: bool,
}

/// The session fields of a fetch answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The session the client is in from now on: `INVALID_SESSION_ID` for none.
    pub session_id: i32,
    /// Which of the plan's partitions the answer carries, in the plan's order.
    pub keep: Vec<bool>,
}

/// Why a fetch's session fields are refused; the whole fetch is answered with this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
    /// An incremental fetch names topics by id in a session opened by name, or the other way round.
    TopicIdMismatch,
}

impl SessionError {
    pub fn response_error(self) -> ResponseError {
        match self {
            SessionError::NotFound => ResponseError::FetchSessionIdNotFound,
            SessionError::InvalidEpoch => ResponseError::InvalidFetchSessionEpoch,
            SessionError::TopicIdMismatch => ResponseError::FetchSessionTopicIdError,
        }
    }
}

/// One partition of a session: what the client asked, and what it was last told.
#[derive(Debug)]
struct Cached {
    wanted: Wanted,
    high_watermark: i64,
    log_start_offset: i64,
}

impl Cached {
    /// Whether an incremental answer carries this partition; remembers what it is told.
    fn must_answer(&mut self, outcome: &Outcome) -> bool {
        let mut answer = outcome.record_bytes > 0;
        if outcome.high_watermark != self.high_watermark {
            answer = true;
            self.high_watermark = outcome.high_watermark;
        }
        if outcome.log_start_offset != self.log_start_offset {
            answer = true;
            self.log_start_offset = outcome.log_start_offset;
        }
        if outcome.error {
            // Forgetting what was sent makes the partition answered again once the error is gone.
            self.high_watermark = -1;
            answer = true;
        }
        answer
    }
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental fetch must carry.
    epoch: i32,
    topic_ids: bool,
    /// The partitions in the order they are read.
    partitions: Vec<Cached>,
    last_used: Instant,
}

impl Session {
    fn position(&self, key: &(TopicKey, i32)) -> Option<usize> {
        self.partitions
            .iter()
            .position(|c| c.wanted.partition == key.1 && c.wanted.topic == key.0)
    }

    /// Applies an incremental fetch: new positions, new partitions, forgotten ones.
    fn update(&mut self, wanted: Vec<Wanted>, forgotten: &[(TopicKey, i32)]) {
        if wanted.is_empty() && forgotten.is_empty() {
            return;
        }
        let mut index: HashMap<(TopicKey, i32), usize> = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, c)| (c.wanted.key(), i))
            .collect();
        for w in wanted {
            match index.get(&w.key()) {
                Some(&i) => self.partitions[i].wanted = w,
                None => {
                    index.insert(w.key(), self.partitions.len());
                    self.partitions.push(Cached {
                        wanted: w,
                        high_watermark: -1,
                        log_start_offset: -1,
                    });
                }
            }
        }
        if !forgotten.is_empty() {
            self.partitions.retain(|c| {
                !forgotten
                    .iter()
                    .any(|f| f.1 == c.wanted.partition && f.0 == c.wanted.topic)
            });
        }
    }
}

/// The epoch after `epoch`: 1 after the largest, so that 0 (a full fetch) never recurs.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX { 1 } else { epoch + 1 }
}

/// The fetch sessions of one broker.
#[derive(Debug)]
pub struct FetchSessions {
    /// A std lock: held only for map operations, never across an await.
    sessions: Mutex<HashMap<i32, Session>>,
    slots: usize,
}

impl FetchSessions {
    pub fn new(slots: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            slots,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a fetch with these session fields reads. `wanted` are the request's partitions, `forgotten` its
    /// forgotten topics, `topic_ids` whether it names topics by id.
    pub fn plan(
        &self,
        session_id: i32,
        epoch: i32,
        topic_ids: bool,
        wanted: Vec<Wanted>,
        forgotten: &[(TopicKey, i32)],
        now: Instant,
    ) -> Result<Plan, SessionError> {
        let mut sessions = self.lock();
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // Any session named by a full fetch is closed.
            if session_id != INVALID_SESSION_ID {
                sessions.remove(&session_id);
            }
            return Ok(if epoch == FINAL_EPOCH || self.slots == 0 {
                Plan::Sessionless(wanted)
            } else {
                Plan::Full(wanted)
            });
        }
        let session = sessions.get_mut(&session_id).ok_or(SessionError::NotFound)?;
        if session.epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        if session.topic_ids != topic_ids {
            return Err(SessionError::TopicIdMismatch);
        }
        session.update(wanted, forgotten);
        if session.partitions.is_empty() {
            sessions.remove(&session_id);
            return Ok(Plan::Sessionless(Vec::new()));
        }
        session.epoch = next_epoch(epoch);
        session.last_used = now;
        let wanted = session.partitions.iter().map(|c| c.wanted.clone()).collect();
        Ok(Plan::Incremental { id: session_id, wanted })
    }

    /// Which partitions of `plan` the answer carries, given what was read of each (`outcomes`, in the plan's
    /// order), and the session the client is in from now on.
    pub fn answered(&self, plan: &Plan, topic_ids: bool, outcomes: &[Outcome], now: Instant) -> Answer {
        let all = || vec![true; outcomes.len()];
        match plan {
            Plan::Sessionless(_) => Answer {
                session_id: INVALID_SESSION_ID,
                keep: all(),
            },
            Plan::Full(wanted) => {
                let partitions = wanted
                    .iter()
                    .zip(outcomes)
                    .map(|(w, o)| {
                        let mut cached = Cached {
                            wanted: w.clone(),
                            high_watermark: -1,
                            log_start_offset: -1,
                        };
                        cached.must_answer(o);
                        cached
                    })
                    .collect();
                let session = Session {
                    epoch: next_epoch(INITIAL_EPOCH),
                    topic_ids,
                    partitions,
                    last_used: now,
                };
                Answer {
                    session_id: self.open(session, now),
                    keep: all(),
                }
            }
            Plan::Incremental { id, wanted } => {
                let mut sessions = self.lock();
                let Some(session) = sessions.get_mut(id) else {
                    // Closed while this fetch read (by a full fetch naming it): answer everything, sessionless.
                    return Answer {
                        session_id: INVALID_SESSION_ID,
                        keep: all(),
                    };
                };
                let mut keep = Vec::with_capacity(outcomes.len());
                let mut with_records = Vec::new();
                for (i, (w, o)) in wanted.iter().zip(outcomes).enumerate() {
                    // The session's order is the plan's unless another fetch of the session came between.
                    let unmoved = session
                        .partitions
                        .get(i)
                        .is_some_and(|c| c.wanted.partition == w.partition && c.wanted.topic == w.topic);
                    let at = if unmoved { Some(i) } else { session.position(&w.key()) };
                    let answer = match at {
                        Some(at) => {
                            if o.record_bytes > 0 {
                                with_records.push(w.key());
                            }
                            session.partitions[at].must_answer(o)
                        }
                        // Forgotten by a later fetch of the session: nothing to remember.
                        None => true,
                    };
                    keep.push(answer);
                }
                for key in with_records {
                    if let Some(i) = session.position(&key) {
                        let cached = session.partitions.remove(i);
                        session.partitions.push(cached);
                    }
                }
                Answer { session_id: *id, keep }
            }
        }
    }

    /// Adds `session` under a new id, evicting an idle session if the cache is full; `INVALID_SESSION_ID` if
    /// there is no room.
    fn open(&self, session: Session, now: Instant) -> i32 {
        let mut sessions = self.lock();
        if sessions.len() >= self.slots {
            let idlest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, s)| (*id, s.last_used));
            match idlest {
                Some((id, last_used)) if now.duration_since(last_used) >= EVICTABLE_AFTER => {
                    sessions.remove(&id);
                }
                _ => return INVALID_SESSION_ID,
            }
        }
        let id = loop {
            // Random ids, so that a client still holding a session of an earlier run of this broker is unlikely
            // to land in someone else's.
            let id = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
            if id != INVALID_SESSION_ID && !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, session);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(partition: i32, offset: i64) -> Wanted {
        Wanted {
            topic: TopicKey::Name("t".into()),
            partition,
            fetch_offset: offset,
            current_leader_epoch: -1,
            log_start_offset: -1,
            partition_max_bytes: 1024,
        }
    }

    fn idle(high_watermark: i64) -> Outcome {
        Outcome {
            high_watermark,
            log_start_offset: 0,
            record_bytes: 0,
            error: false,
        }
    }

    /// Opens a session over partitions 0..n, all idle at high watermark 10.
    fn open(sessions: &FetchSessions, n: i32, now: Instant) -> i32 {
        let plan = sessions
            .plan(
                0,
                INITIAL_EPOCH,
                false,
                (0..n).map(|p| wanted(p, 10)).collect(),
                &[],
                now,
            )
            .unwrap();
        assert!(matches!(plan, Plan::Full(_)));
        let answer = sessions.answered(&plan, false, &vec![idle(10); n as usize], now);
        assert!(answer.keep.iter().all(|k| *k));
        answer.session_id
    }

    #[test]
    fn an_incremental_fetch_reads_the_whole_session_and_answers_only_what_changed() {
        let sessions = FetchSessions::new(10);
        let now = Instant::now();
        let id = open(&sessions, 4, now);
        assert_ne!(id, INVALID_SESSION_ID);

        // Nothing named: all four are read, none has news.
        let plan = sessions.plan(id, 1, false, vec![], &[], now).unwrap();
        assert_eq!(plan.wanted().len(), 4);
        let answer = sessions.answered(&plan, false, &[idle(10); 4], now);
        assert_eq!(
            answer,
            Answer {
                session_id: id,
                keep: vec![false; 4]
            }
        );

        // Partition 2 got a record: its high watermark moved and it returns bytes.
        let plan = sessions.plan(id, 2, false, vec![], &[], now).unwrap();
        let mut outcomes = [idle(10); 4];
        outcomes[2] = Outcome {
            high_watermark: 11,
            record_bytes: 70,
            ..idle(11)
        };
        let answer = sessions.answered(&plan, false, &outcomes, now);
        assert_eq!(answer.keep, vec![false, false, true, false]);

        // The client names partition 2 at its new position; it moved to the end of the order.
        let plan = sessions.plan(id, 3, false, vec![wanted(2, 11)], &[], now).unwrap();
        let order: Vec<_> = plan.wanted().iter().map(|w| (w.partition, w.fetch_offset)).collect();
        assert_eq!(order, vec![(0, 10), (1, 10), (3, 10), (2, 11)]);
    }

    #[test]
    fn an_error_is_always_answered_and_the_partition_again_once_it_clears() {
        let sessions = FetchSessions::new(10);
        let now = Instant::now();
        let id = open(&sessions, 1, now);
        let failed = Outcome {
            error: true,
            ..idle(-1)
        };
        for epoch in 1..=2 {
            let plan = sessions.plan(id, epoch, false, vec![], &[], now).unwrap();
            assert_eq!(sessions.answered(&plan, false, &[failed], now).keep, vec![true]);
        }
        let plan = sessions.plan(id, 3, false, vec![], &[], now).unwrap();
        assert_eq!(sessions.answered(&plan, false, &[idle(10)], now).keep, vec![true]);
        let plan = sessions.plan(id, 4, false, vec![], &[], now).unwrap();
        assert_eq!(sessions.answered(&plan, false, &[idle(10)], now).keep, vec![false]);
    }

    #[test]
    fn sessions_are_checked_and_closed_as_kafka_does() {
        let sessions = FetchSessions::new(10);
        let now = Instant::now();
        let id = open(&sessions, 2, now);
        assert_eq!(
            sessions.plan(id, 5, false, vec![], &[], now),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            sessions.plan(id ^ 1, 1, false, vec![], &[], now),
            Err(SessionError::NotFound)
        );
        assert_eq!(
            sessions.plan(id, 1, true, vec![], &[], now),
            Err(SessionError::TopicIdMismatch)
        );
        // A repeated epoch is refused: the first use moved it on.
        sessions.plan(id, 1, false, vec![], &[], now).unwrap();
        assert_eq!(
            sessions.plan(id, 1, false, vec![], &[], now),
            Err(SessionError::InvalidEpoch)
        );
        // Forgetting every partition closes the session.
        let forgotten = [(TopicKey::Name("t".into()), 0), (TopicKey::Name("t".into()), 1)];
        assert_eq!(
            sessions.plan(id, 2, false, vec![], &forgotten, now),
            Ok(Plan::Sessionless(vec![]))
        );
        assert!(sessions.is_empty());

        // A full fetch naming a session closes it; epoch -1 opens none.
        let id = open(&sessions, 1, now);
        let plan = sessions
            .plan(id, FINAL_EPOCH, false, vec![wanted(0, 1)], &[], now)
            .unwrap();
        assert!(matches!(plan, Plan::Sessionless(_)));
        assert!(sessions.is_empty());
        assert_eq!(
            sessions.answered(&plan, false, &[idle(1)], now).session_id,
            INVALID_SESSION_ID
        );
    }

    #[test]
    fn a_full_cache_evicts_only_sessions_idle_for_two_minutes() {
        let sessions = FetchSessions::new(1);
        let start = Instant::now();
        let first = open(&sessions, 1, start);
        assert_ne!(first, INVALID_SESSION_ID);
        assert_eq!(open(&sessions, 1, start + Duration::from_secs(60)), INVALID_SESSION_ID);
        let second = open(&sessions, 1, start + EVICTABLE_AFTER);
        assert_ne!(second, INVALID_SESSION_ID);
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            sessions.plan(first, 1, false, vec![], &[], start + EVICTABLE_AFTER),
            Err(SessionError::NotFound)
        );
        // No slots: fetches are sessionless.
        let none = FetchSessions::new(0);
        let plan = none
            .plan(0, INITIAL_EPOCH, false, vec![wanted(0, 0)], &[], start)
            .unwrap();
        assert!(matches!(plan, Plan::Sessionless(_)));
    }

    #[test]
    fn epochs_wrap_past_zero() {
        assert_eq!(next_epoch(1), 2);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}

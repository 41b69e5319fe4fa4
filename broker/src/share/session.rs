//! Share sessions (KIP-932): which partitions of a partition leader a share group member fetches from, so that
//! each ShareFetch names only what changed, as fetch sessions do for consumers.
//!
//! Epoch 0 opens a member's session (replacing any it had) with the partitions named; each later ShareFetch
//! or ShareAcknowledge carries the next epoch (1, 2, …), may add partitions and forget some; epoch -1 closes
//! the session, after its acknowledgements are applied. An unknown session is `SHARE_SESSION_NOT_FOUND`, a
//! wrong epoch `INVALID_SHARE_SESSION_EPOCH`. At most `group.share.max.share.sessions` are kept; when they
//! are all taken, one idle for two minutes makes room, else `SHARE_SESSION_LIMIT_REACHED`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::partition::MemberId;

/// The epoch that opens a session, and the one that closes it.
pub const OPEN_EPOCH: i32 = 0;
pub const CLOSE_EPOCH: i32 = -1;
/// How long a session must be unused before a new one may take its slot.
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// A partition of a share session: topic id and partition index.
pub type SharePartitionKey = (Uuid, i32);

#[derive(Debug)]
struct Session {
    /// The epoch the next request must carry.
    epoch: i32,
    partitions: Vec<SharePartitionKey>,
    last_used: Instant,
}

/// What a request does to its session.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Fetch from these partitions (the whole session, in order).
    Fetch(Vec<SharePartitionKey>),
    /// The session is closed; these were its partitions (whose records the member held go back).
    Closed(Vec<SharePartitionKey>),
}

#[derive(Debug)]
pub struct ShareSessions {
    sessions: Mutex<HashMap<(String, MemberId), Session>>,
    slots: usize,
}

impl ShareSessions {
    pub fn new(slots: usize) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            slots,
        }
    }

    /// Applies a request's session fields.
    pub fn step(
        &self,
        group: &str,
        member: &MemberId,
        epoch: i32,
        named: &[SharePartitionKey],
        forgotten: &[SharePartitionKey],
        now: Instant,
    ) -> Result<Step, ResponseError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (group.to_owned(), member.clone());
        match epoch {
            OPEN_EPOCH => {
                if !sessions.contains_key(&key) && sessions.len() >= self.slots {
                    let idlest = sessions
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(k, s)| (k.clone(), s.last_used));
                    match idlest {
                        Some((idle, last_used)) if now.duration_since(last_used) >= EVICTABLE_AFTER => {
                            sessions.remove(&idle);
                        }
                        _ => return Err(ResponseError::ShareSessionLimitReached),
                    }
                }
                let mut partitions = Vec::with_capacity(named.len());
                for p in named {
                    if !partitions.contains(p) {
                        partitions.push(*p);
                    }
                }
                sessions.insert(
                    key,
                    Session {
                        epoch: 1,
                        partitions: partitions.clone(),
                        last_used: now,
                    },
                );
                Ok(Step::Fetch(partitions))
            }
            CLOSE_EPOCH => {
                let session = sessions.remove(&key).ok_or(ResponseError::ShareSessionNotFound)?;
                Ok(Step::Closed(session.partitions))
            }
            epoch => {
                let session = sessions.get_mut(&key).ok_or(ResponseError::ShareSessionNotFound)?;
                if session.epoch != epoch {
                    return Err(ResponseError::InvalidShareSessionEpoch);
                }
                session.partitions.retain(|p| !forgotten.contains(p));
                for p in named {
                    if !session.partitions.contains(p) {
                        session.partitions.push(*p);
                    }
                }
                session.epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
                session.last_used = now;
                Ok(Step::Fetch(session.partitions.clone()))
            }
        }
    }

    /// Closes every session of `member` (it left the group, or its session with the coordinator ended).
    pub fn close_member(&self, group: &str, member: &MemberId) -> Vec<SharePartitionKey> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .remove(&(group.to_owned(), member.clone()))
            .map(|s| s.partitions)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_moves_on_and_closes() {
        let sessions = ShareSessions::new(10);
        let now = Instant::now();
        let m: MemberId = "m".into();
        let (p0, p1) = ((Uuid::from_u128(1), 0), (Uuid::from_u128(1), 1));
        assert_eq!(sessions.step("g", &m, 0, &[p0], &[], now), Ok(Step::Fetch(vec![p0])));
        assert_eq!(
            sessions.step("g", &m, 1, &[p1], &[], now),
            Ok(Step::Fetch(vec![p0, p1]))
        );
        assert_eq!(
            sessions.step("g", &m, 1, &[], &[], now),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(sessions.step("g", &m, 2, &[], &[p0], now), Ok(Step::Fetch(vec![p1])));
        assert_eq!(sessions.step("g", &m, -1, &[], &[], now), Ok(Step::Closed(vec![p1])));
        assert_eq!(
            sessions.step("g", &m, 4, &[], &[], now),
            Err(ResponseError::ShareSessionNotFound)
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = ShareSessions::new(1);
        let now = Instant::now();
        let (a, b): (MemberId, MemberId) = ("a".into(), "b".into());
        sessions.step("g", &a, 0, &[], &[], now).unwrap();
        assert_eq!(
            sessions.step("g", &b, 0, &[], &[], now),
            Err(ResponseError::ShareSessionLimitReached)
        );
        assert!(sessions.step("g", &b, 0, &[], &[], now + EVICTABLE_AFTER).is_ok());
        assert_eq!(sessions.close_member("g", &a), vec![]);
    }
}

//! Share group membership (KIP-932's ShareGroupHeartbeat), kept by the group's coordinator.
//!
//! A member joins with epoch 0 and the topics it subscribes to, heartbeats with the epoch it was last told,
//! and leaves with epoch -1. Every change of membership or subscription moves the group epoch on; a member is
//! told the group epoch as its own, and its assignment whenever that changed. Unlike a consumer group, a
//! share group does not divide partitions: every member is assigned every partition of the topics it
//! subscribes to, and the partitions' leaders hand each record to one member at a time. Parallelism is
//! therefore not bounded by the partition count.
//!
//! A member that does not heartbeat within its session timeout is removed ([`ShareGroups::expire`]); the
//! records it held come back when their acquisition locks expire, or at once when it leaves.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use uuid::Uuid;

use super::partition::MemberId;

/// The most members one share group may have (Kafka's `group.share.max.size` default).
pub const GROUP_SIZE_MAX: usize = 200;
/// The member epoch of a leave.
pub const LEAVE_EPOCH: i32 = -1;

/// What a heartbeat is answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub member_id: MemberId,
    pub member_epoch: i32,
    /// The member's partitions by topic id, when they changed since the member was last told.
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

/// A member as ShareGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub member_id: MemberId,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub assignment: Vec<(Uuid, Vec<i32>)>,
}

/// A share group as ShareGroupDescribe and ListGroups show it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub group_id: String,
    pub epoch: i32,
    pub members: Vec<MemberView>,
}

/// The topics a share group's members may be assigned: name → (id, partition count).
pub type Topics = BTreeMap<String, (Uuid, i32)>;

#[derive(Debug)]
struct Member {
    epoch: i32,
    subscribed: Vec<String>,
    client_id: String,
    client_host: String,
    expires: Instant,
    /// The assignment the member was last told.
    told: Option<Vec<(Uuid, Vec<i32>)>>,
}

#[derive(Debug, Default)]
struct Group {
    epoch: i32,
    members: HashMap<MemberId, Member>,
}

/// The share groups this broker coordinates.
#[derive(Debug, Default)]
pub struct ShareGroups {
    /// A std lock, never held across an await.
    groups: Mutex<HashMap<String, Group>>,
}

/// The fields of one ShareGroupHeartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest<'a> {
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub member_epoch: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed: Option<Vec<String>>,
    pub client_id: &'a str,
    pub client_host: &'a str,
}

impl ShareGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one heartbeat. `topics` are the cluster's topics now, `session` the group's session timeout.
    /// A leave answers with epoch -1 and the member id that left.
    pub fn heartbeat(
        &self,
        request: HeartbeatRequest<'_>,
        topics: &Topics,
        session: Duration,
        now: Instant,
    ) -> Result<Heartbeat, ResponseError> {
        let mut groups = self.lock();
        let group = groups.entry(request.group_id.to_owned()).or_default();
        let member_id: MemberId = if request.member_id.is_empty() {
            // Clients since KIP-1082 make up their own id; an older one may not.
            Uuid::new_v4().to_string().into()
        } else {
            request.member_id.into()
        };
        match request.member_epoch {
            LEAVE_EPOCH => {
                if group.members.remove(&member_id).is_some() {
                    group.epoch += 1;
                }
                if group.members.is_empty() {
                    groups.remove(request.group_id);
                }
                return Ok(Heartbeat {
                    member_id,
                    member_epoch: LEAVE_EPOCH,
                    assignment: None,
                });
            }
            0 => {
                let subscribed = request.subscribed.clone().ok_or(ResponseError::InvalidRequest)?;
                if !group.members.contains_key(&member_id) && group.members.len() >= GROUP_SIZE_MAX {
                    return Err(ResponseError::GroupMaxSizeReached);
                }
                group.epoch += 1;
                group.members.insert(
                    member_id.clone(),
                    Member {
                        epoch: group.epoch,
                        subscribed,
                        client_id: request.client_id.to_owned(),
                        client_host: request.client_host.to_owned(),
                        expires: now + session,
                        told: None,
                    },
                );
            }
            epoch => {
                let member = group
                    .members
                    .get_mut(&member_id)
                    .ok_or(ResponseError::UnknownMemberId)?;
                if epoch != member.epoch {
                    return Err(ResponseError::FencedMemberEpoch);
                }
                member.expires = now + session;
                if let Some(subscribed) = request.subscribed.clone()
                    && subscribed != member.subscribed
                {
                    member.subscribed = subscribed;
                    group.epoch += 1;
                }
            }
        }
        let epoch = group.epoch;
        let member = group.members.get_mut(&member_id).expect("joined or checked above");
        member.epoch = epoch;
        let target = assignment(&member.subscribed, topics);
        let assignment = (member.told.as_ref() != Some(&target)).then(|| {
            member.told = Some(target.clone());
            target
        });
        Ok(Heartbeat {
            member_id,
            member_epoch: epoch,
            assignment,
        })
    }

    /// Removes the members whose session ended by `now`; returns them by group.
    pub fn expire(&self, now: Instant) -> Vec<(String, MemberId)> {
        let mut expired = Vec::new();
        let mut groups = self.lock();
        for (group_id, group) in groups.iter_mut() {
            let before = group.members.len();
            group.members.retain(|id, member| {
                let alive = member.expires > now;
                if !alive {
                    expired.push((group_id.clone(), id.clone()));
                }
                alive
            });
            if group.members.len() != before {
                group.epoch += 1;
            }
        }
        groups.retain(|_, group| !group.members.is_empty());
        expired
    }

    /// A group as it is now, `None` if it has no members.
    pub fn describe(&self, group_id: &str, topics: &Topics) -> Option<GroupView> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let mut members: Vec<MemberView> = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed: m.subscribed.clone(),
                assignment: assignment(&m.subscribed, topics),
            })
            .collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        Some(GroupView {
            group_id: group_id.to_owned(),
            epoch: group.epoch,
            members,
        })
    }

    /// The ids of the groups with members.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// Every partition of every subscribed topic that exists.
fn assignment(subscribed: &[String], topics: &Topics) -> Vec<(Uuid, Vec<i32>)> {
    let mut assigned: Vec<(Uuid, Vec<i32>)> = subscribed
        .iter()
        .filter_map(|name| topics.get(name))
        .map(|(id, partitions)| (*id, (0..*partitions).collect()))
        .collect();
    assigned.sort();
    assigned.dedup();
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(45);

    fn topics() -> Topics {
        BTreeMap::from([("jobs".to_owned(), (Uuid::from_u128(7), 2))])
    }

    fn request<'a>(member_id: &'a str, member_epoch: i32, subscribed: Option<&[&str]>) -> HeartbeatRequest<'a> {
        HeartbeatRequest {
            group_id: "workers",
            member_id,
            member_epoch,
            subscribed: subscribed.map(|s| s.iter().map(|t| t.to_string()).collect()),
            client_id: "test",
            client_host: "/127.0.0.1",
        }
    }

    #[test]
    fn every_member_is_assigned_every_partition_and_told_only_when_it_changes() {
        let groups = ShareGroups::default();
        let now = Instant::now();
        let a = groups
            .heartbeat(request("a", 0, Some(&["jobs"])), &topics(), SESSION, now)
            .unwrap();
        assert_eq!(a.member_epoch, 1);
        assert_eq!(a.assignment, Some(vec![(Uuid::from_u128(7), vec![0, 1])]));
        let b = groups
            .heartbeat(request("b", 0, Some(&["jobs"])), &topics(), SESSION, now)
            .unwrap();
        assert_eq!(b.member_epoch, 2);
        assert_eq!(b.assignment, a.assignment, "the same partitions, shared");
        // a's next heartbeat moves it to the new epoch; its assignment did not change.
        let again = groups
            .heartbeat(request("a", 1, None), &topics(), SESSION, now)
            .unwrap();
        assert_eq!((again.member_epoch, again.assignment), (2, None));
        // A partition added to the topic is told.
        let grown = BTreeMap::from([("jobs".to_owned(), (Uuid::from_u128(7), 3))]);
        let told = groups.heartbeat(request("a", 2, None), &grown, SESSION, now).unwrap();
        assert_eq!(told.assignment, Some(vec![(Uuid::from_u128(7), vec![0, 1, 2])]));
    }

    #[test]
    fn stale_epochs_and_unknown_members_are_refused_and_sessions_end() {
        let groups = ShareGroups::default();
        let now = Instant::now();
        groups
            .heartbeat(request("a", 0, Some(&["jobs"])), &topics(), SESSION, now)
            .unwrap();
        assert_eq!(
            groups.heartbeat(request("a", 7, None), &topics(), SESSION, now),
            Err(ResponseError::FencedMemberEpoch)
        );
        assert_eq!(
            groups.heartbeat(request("z", 1, None), &topics(), SESSION, now),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            groups.heartbeat(request("b", 0, None), &topics(), SESSION, now),
            Err(ResponseError::InvalidRequest),
            "a join names its topics"
        );
        assert_eq!(
            groups.expire(now + SESSION),
            vec![("workers".to_owned(), MemberId::from("a"))]
        );
        assert!(groups.describe("workers", &topics()).is_none());
    }

    #[test]
    fn a_leave_removes_the_member() {
        let groups = ShareGroups::default();
        let now = Instant::now();
        for id in ["a", "b"] {
            groups
                .heartbeat(request(id, 0, Some(&["jobs"])), &topics(), SESSION, now)
                .unwrap();
        }
        let left = groups
            .heartbeat(request("a", LEAVE_EPOCH, None), &topics(), SESSION, now)
            .unwrap();
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
        let view = groups.describe("workers", &topics()).unwrap();
        assert_eq!(view.members.len(), 1);
        assert_eq!(view.epoch, 3);
        assert_eq!(&*view.members[0].member_id, "b");
    }
}

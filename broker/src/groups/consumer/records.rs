//! Consumer-protocol groups as records of `__consumer_offsets`, in the layouts of Kafka 4's group
//! coordinator, so that a new coordinator rebuilds a group, members, epochs and assignments included,
//! without a rebalance, and Kafka's tools could read them.
//!
//! This module owns the byte layouts, the records one change of a group needs ([`diff`]: the group before
//! and after a heartbeat, an expiry or a deletion), and rebuilding groups from the records of a partition
//! ([`Loader`]). It does not write or read the log: [`super::super::offsets`] does.
//!
//! A key is an `i16` record type (Kafka's key "version") and the group id, then the member id for member
//! records, as non-flexible strings (`i16` length, UTF-8). A value is an `i16` version (0), then its fields in
//! Kafka's flexible encoding: compact strings and arrays (unsigned varint of length + 1, 0 for null), 16-byte
//! uuids, big-endian integers, and a tagged-field section (written empty, skipped when read) after every
//! struct and at the end:
//!
//! ```text
//! 3 ConsumerGroupMetadata             (group)         → i32 epoch
//! 4 ConsumerGroupPartitionMetadata    (group)         → [uuid topic id, string name, i32 partitions,
//!                                                        [] partition racks (written empty)]
//! 5 ConsumerGroupMemberMetadata       (group, member) → string? instance id, string? rack, string client id,
//!                                                        string client host, [string] topics, string? regex,
//!                                                        i32 rebalance timeout ms, string? server assignor
//! 6 ConsumerGroupTargetAssignmentMetadata (group)     → i32 assignment epoch
//! 7 ConsumerGroupTargetAssignmentMember (group, member) → [uuid topic id, [i32] partitions]
//! 8 ConsumerGroupCurrentMemberAssignment (group, member) → i32 epoch, i32 previous epoch, i8 state
//!                                                        (0 stable, 1 unrevoked, 2 unreleased),
//!                                                        [assigned], [pending revocation]
//! ```
//!
//! A member that leaves is three tombstones (8, 7, 5, in Kafka's order), a deleted group also those of 6, 4
//! and 3. Compaction keeps the newest record of each key, so records of one member may come back in any
//! order: a member exists once its metadata (5) has been read, whatever came first. Kafka 4.1 stopped writing
//! record 4 (it keeps a hash of the topics instead); Strata writes it, so that a new coordinator knows the
//! topics the target assignment was computed from and does not bump the epoch for nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{Assignment, Group, Member, MemberState};

/// A record for `__consumer_offsets`: its key and its value, `None` for a tombstone.
pub type GroupRecord = (Bytes, Option<Bytes>);

const GROUP_METADATA: i16 = 3;
const PARTITION_METADATA: i16 = 4;
const MEMBER_METADATA: i16 = 5;
const TARGET_METADATA: i16 = 6;
const TARGET_MEMBER: i16 = 7;
const CURRENT_ASSIGNMENT: i16 = 8;
/// Every value's version.
const VALUE_VERSION: i16 = 0;
/// Bound on an array length read from a record (elements of any kind): far above any real group's topics or
/// partitions, it keeps a corrupt length from allocating without bound.
const ARRAY_LEN_MAX: usize = 1 << 20;

/// Whether `key` is a consumer-group record this module reads.
pub fn is_group_record(key: &[u8]) -> bool {
    key.len() >= 2 && (GROUP_METADATA..=CURRENT_ASSIGNMENT).contains(&i16::from_be_bytes([key[0], key[1]]))
}

/// The records that take `group_id` from `before` to `after` (`None`: the group does not exist), in the
/// order Kafka writes them: members' metadata, the topics and the group epoch, the target assignment, then
/// members' current assignments; removed members' tombstones first.
pub fn diff(group_id: &str, before: Option<&Group>, after: Option<&Group>) -> Vec<GroupRecord> {
    let mut records = Vec::new();
    let empty = BTreeMap::new();
    let members_before = before.map_or(&empty, |g| &g.members);
    let members_after = after.map_or(&empty, |g| &g.members);
    for id in members_before.keys().filter(|id| !members_after.contains_key(*id)) {
        for kind in [CURRENT_ASSIGNMENT, TARGET_MEMBER, MEMBER_METADATA] {
            records.push((key(kind, group_id, Some(id)), None));
        }
    }
    let Some(after) = after else {
        if before.is_some() {
            for kind in [TARGET_METADATA, PARTITION_METADATA, GROUP_METADATA] {
                records.push((key(kind, group_id, None), None));
            }
        }
        return records;
    };
    for (id, member) in members_after {
        if members_before.get(id).is_none_or(|old| !same_metadata(old, member)) {
            records.push((key(MEMBER_METADATA, group_id, Some(id)), Some(member_value(member))));
        }
    }
    if before.is_none_or(|b| b.topics != after.topics) {
        records.push((key(PARTITION_METADATA, group_id, None), Some(topics_value(after))));
    }
    if before.is_none_or(|b| b.epoch != after.epoch) {
        records.push((key(GROUP_METADATA, group_id, None), Some(epoch_value(after.epoch))));
    }
    let empty_target = BTreeMap::new();
    let target_before = before.map_or(&empty_target, |g| &g.target);
    for (id, target) in &after.target {
        if target_before.get(id) != Some(target) {
            records.push((key(TARGET_MEMBER, group_id, Some(id)), Some(target_value(target))));
        }
    }
    if before.is_none_or(|b| b.assignment_epoch != after.assignment_epoch) {
        records.push((
            key(TARGET_METADATA, group_id, None),
            Some(epoch_value(after.assignment_epoch)),
        ));
    }
    for (id, member) in members_after {
        if members_before.get(id).is_none_or(|old| !same_current(old, member)) {
            records.push((key(CURRENT_ASSIGNMENT, group_id, Some(id)), Some(current_value(member))));
        }
    }
    records
}

fn same_metadata(a: &Member, b: &Member) -> bool {
    a.instance_id == b.instance_id
        && a.rack_id == b.rack_id
        && a.client_id == b.client_id
        && a.client_host == b.client_host
        && a.subscribed == b.subscribed
        && a.regex == b.regex
        && a.rebalance_timeout == b.rebalance_timeout
        && a.assignor == b.assignor
}

fn same_current(a: &Member, b: &Member) -> bool {
    a.epoch == b.epoch
        && a.previous_epoch == b.previous_epoch
        && a.state == b.state
        && a.assigned == b.assigned
        && a.revoking == b.revoking
}

fn key(kind: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(kind);
    put_string(&mut buf, group);
    if let Some(member) = member {
        put_string(&mut buf, member);
    }
    buf.freeze()
}

fn epoch_value(epoch: i32) -> Bytes {
    let mut buf = value();
    buf.put_i32(epoch);
    end(buf)
}

fn topics_value(group: &Group) -> Bytes {
    let mut buf = value();
    let topics: Vec<(&String, (Uuid, i32))> = group
        .topics
        .iter()
        .filter_map(|(name, resolved)| resolved.map(|r| (name, r)))
        .collect();
    put_len(&mut buf, Some(topics.len()));
    for (name, (id, partitions)) in topics {
        buf.put_slice(id.as_bytes());
        put_compact(&mut buf, Some(name));
        buf.put_i32(partitions);
        put_len(&mut buf, Some(0));
        put_no_tags(&mut buf);
    }
    end(buf)
}

fn member_value(member: &Member) -> Bytes {
    let mut buf = value();
    put_compact(&mut buf, member.instance_id.as_deref());
    put_compact(&mut buf, member.rack_id.as_deref());
    put_compact(&mut buf, Some(&member.client_id));
    put_compact(&mut buf, Some(&member.client_host));
    put_len(&mut buf, Some(member.subscribed.len()));
    for topic in &member.subscribed {
        put_compact(&mut buf, Some(topic));
    }
    put_compact(&mut buf, member.regex.as_deref());
    buf.put_i32(i32::try_from(member.rebalance_timeout.as_millis()).unwrap_or(i32::MAX));
    put_compact(&mut buf, member.assignor.as_deref());
    end(buf)
}

fn target_value(target: &Assignment) -> Bytes {
    let mut buf = value();
    put_assignment(&mut buf, target);
    end(buf)
}

fn current_value(member: &Member) -> Bytes {
    let mut buf = value();
    buf.put_i32(member.epoch);
    buf.put_i32(member.previous_epoch);
    buf.put_i8(match member.state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    });
    put_assignment(&mut buf, &member.assigned);
    put_assignment(&mut buf, &member.revoking);
    end(buf)
}

fn value() -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf
}

/// Closes a value with its (empty) tagged fields.
fn end(mut buf: BytesMut) -> Bytes {
    put_no_tags(&mut buf);
    buf.freeze()
}

/// An empty tagged-field section: a count of 0.
fn put_no_tags(buf: &mut BytesMut) {
    buf.put_u8(0);
}

fn put_assignment(buf: &mut BytesMut, assignment: &Assignment) {
    put_len(buf, Some(assignment.len()));
    for (topic, partitions) in assignment {
        buf.put_slice(topic.as_bytes());
        put_len(buf, Some(partitions.len()));
        for partition in partitions {
            buf.put_i32(*partition);
        }
        put_no_tags(buf);
    }
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

/// A compact array or string length: `None` is null.
fn put_len(buf: &mut BytesMut, len: Option<usize>) {
    let mut n = len.map_or(0, |l| l as u64 + 1);
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

fn put_compact(buf: &mut BytesMut, s: Option<&str>) {
    put_len(buf, s.map(str::len));
    if let Some(s) = s {
        buf.put_slice(s.as_bytes());
    }
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    (buf.remaining() >= len)
        .then(|| String::from_utf8(buf.split_to(len).to_vec()).ok())
        .flatten()
}

fn get_uvarint(buf: &mut Bytes) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// A compact length: `Some(None)` is null.
fn get_len(buf: &mut Bytes) -> Option<Option<usize>> {
    match get_uvarint(buf)? {
        0 => Some(None),
        n => {
            let len = usize::try_from(n - 1).ok()?;
            (len <= ARRAY_LEN_MAX).then_some(Some(len))
        }
    }
}

fn get_compact(buf: &mut Bytes) -> Option<Option<String>> {
    let Some(len) = get_len(buf)? else {
        return Some(None);
    };
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok().map(Some)
}

/// Skips a tagged-field section (Kafka 4.1 adds some to these values; none is needed here).
fn skip_tags(buf: &mut Bytes) -> Option<()> {
    let count = get_uvarint(buf)?;
    for _ in 0..count.min(ARRAY_LEN_MAX as u64) {
        get_uvarint(buf)?;
        let size = usize::try_from(get_uvarint(buf)?).ok()?;
        if buf.remaining() < size {
            return None;
        }
        buf.advance(size);
    }
    Some(())
}

fn get_i32(buf: &mut Bytes) -> Option<i32> {
    (buf.remaining() >= 4).then(|| buf.get_i32())
}

fn get_uuid(buf: &mut Bytes) -> Option<Uuid> {
    (buf.remaining() >= 16).then(|| Uuid::from_slice(&buf.split_to(16)).ok())?
}

fn get_assignment(buf: &mut Bytes) -> Option<Assignment> {
    let mut assignment = Assignment::new();
    for _ in 0..get_len(buf)?? {
        let topic = get_uuid(buf)?;
        let count = get_len(buf)??;
        let partitions: BTreeSet<i32> = (0..count).map(|_| get_i32(buf)).collect::<Option<_>>()?;
        skip_tags(buf)?;
        assignment.entry(topic).or_default().extend(partitions);
    }
    Some(assignment)
}

/// A value's fields after its version, if it is version 0.
fn open(mut value: Bytes) -> Option<Bytes> {
    (value.remaining() >= 2 && value.get_i16() == VALUE_VERSION).then_some(value)
}

/// A group as its records rebuild it.
#[derive(Debug, Default)]
struct Partial {
    epoch: i32,
    assignment_epoch: i32,
    topics: BTreeMap<String, (Uuid, i32)>,
    /// Members whose metadata (5) was read.
    members: BTreeMap<String, Member>,
    /// Current assignments (8), read before or after their member's metadata.
    current: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
}

/// Rebuilds consumer-protocol groups from the records of one partition, replayed in log order.
#[derive(Debug, Default)]
pub struct Loader {
    groups: BTreeMap<String, Partial>,
}

impl Loader {
    /// Replays one record; one this module does not know, or cannot read, is skipped (returns false).
    pub fn replay(&mut self, key: Bytes, value: Option<Bytes>) -> bool {
        self.try_replay(key, value).is_some()
    }

    fn try_replay(&mut self, mut key: Bytes, value: Option<Bytes>) -> Option<()> {
        if key.remaining() < 2 {
            return None;
        }
        let kind = key.get_i16();
        let group_id = get_string(&mut key)?;
        let member_id = matches!(kind, MEMBER_METADATA | TARGET_MEMBER | CURRENT_ASSIGNMENT)
            .then(|| get_string(&mut key))
            .flatten();
        let Some(value) = value else {
            let group = self.groups.get_mut(&group_id)?;
            match (kind, member_id) {
                (GROUP_METADATA, _) => {
                    self.groups.remove(&group_id);
                }
                (PARTITION_METADATA, _) => group.topics.clear(),
                (TARGET_METADATA, _) => group.assignment_epoch = 0,
                (MEMBER_METADATA, Some(id)) => {
                    group.members.remove(&id);
                }
                (TARGET_MEMBER, Some(id)) => {
                    group.target.remove(&id);
                }
                (CURRENT_ASSIGNMENT, Some(id)) => {
                    group.current.remove(&id);
                }
                _ => return None,
            }
            return Some(());
        };
        let mut value = open(value)?;
        let group = self.groups.entry(group_id).or_default();
        match (kind, member_id) {
            (GROUP_METADATA, _) => group.epoch = get_i32(&mut value)?,
            (TARGET_METADATA, _) => group.assignment_epoch = get_i32(&mut value)?,
            (PARTITION_METADATA, _) => {
                let mut topics = BTreeMap::new();
                for _ in 0..get_len(&mut value)?? {
                    let id = get_uuid(&mut value)?;
                    let name = get_compact(&mut value)??;
                    let partitions = get_i32(&mut value)?;
                    // Racks by partition: not used.
                    for _ in 0..get_len(&mut value)?? {
                        get_i32(&mut value)?;
                        for _ in 0..get_len(&mut value)?? {
                            get_compact(&mut value)?;
                        }
                        skip_tags(&mut value)?;
                    }
                    skip_tags(&mut value)?;
                    topics.insert(name, (id, partitions));
                }
                group.topics = topics;
            }
            (MEMBER_METADATA, Some(id)) => {
                let member = group.members.entry(id).or_insert_with(blank_member);
                member.instance_id = get_compact(&mut value)?;
                member.rack_id = get_compact(&mut value)?;
                member.client_id = get_compact(&mut value)?.unwrap_or_default();
                member.client_host = get_compact(&mut value)?.unwrap_or_default();
                let count = get_len(&mut value)??;
                member.subscribed = (0..count)
                    .map(|_| get_compact(&mut value).flatten())
                    .collect::<Option<_>>()?;
                member.regex = get_compact(&mut value)?;
                member.rebalance_timeout = Duration::from_millis(u64::try_from(get_i32(&mut value)?).unwrap_or(0));
                member.assignor = get_compact(&mut value)?;
            }
            (TARGET_MEMBER, Some(id)) => {
                group.target.insert(id, get_assignment(&mut value)?);
            }
            (CURRENT_ASSIGNMENT, Some(id)) => {
                let current = group.current.entry(id).or_insert_with(blank_member);
                current.epoch = get_i32(&mut value)?;
                current.previous_epoch = get_i32(&mut value)?;
                current.state = match value.has_remaining().then(|| value.get_i8())? {
                    1 => MemberState::UnrevokedPartitions,
                    2 => MemberState::UnreleasedPartitions,
                    _ => MemberState::Stable,
                };
                current.assigned = get_assignment(&mut value)?;
                current.revoking = get_assignment(&mut value)?;
            }
            _ => return None,
        }
        Some(())
    }

    /// The groups read, as of `now`: members' sessions (`session_timeout`, until their next heartbeat says
    /// otherwise) and revocation deadlines start from it.
    pub fn finish(self, now: Instant, session_timeout: Duration) -> Vec<(String, Group)> {
        self.groups
            .into_iter()
            .map(|(id, partial)| {
                let mut group = Group::new(now);
                group.epoch = partial.epoch;
                group.assignment_epoch = partial.assignment_epoch;
                let mut current = partial.current;
                for (member_id, mut member) in partial.members {
                    if let Some(assignment) = current.remove(&member_id) {
                        member.epoch = assignment.epoch;
                        member.previous_epoch = assignment.previous_epoch;
                        member.state = assignment.state;
                        member.assigned = assignment.assigned;
                        member.revoking = assignment.revoking;
                    }
                    member.last_seen = now;
                    member.session_timeout = session_timeout;
                    member.revoke_deadline =
                        (member.state == MemberState::UnrevokedPartitions).then(|| now + member.rebalance_timeout);
                    group.members.insert(member_id, member);
                }
                group.target = partial
                    .target
                    .into_iter()
                    .filter(|(member, _)| group.members.contains_key(member))
                    .collect();
                // Regexes matched the topics the assignment was computed from, as far as the new coordinator
                // knows until the members' next heartbeat matches them again.
                for member in group.members.values_mut() {
                    member.pattern = member.regex.as_deref().and_then(|r| super::compile(r).ok());
                }
                group.matched = group
                    .members
                    .values()
                    .filter_map(|m| m.regex.as_ref().zip(m.pattern.as_ref()))
                    .map(|(regex, pattern)| {
                        let names = partial.topics.keys().filter(|t| pattern.is_match(t)).cloned().collect();
                        (regex.clone(), names)
                    })
                    .collect();
                group.topics = group
                    .subscribed_topics()
                    .into_iter()
                    .map(|name| {
                        let resolved = partial.topics.get(&name).copied();
                        (name, resolved)
                    })
                    .collect();
                group.assignor = group.preferred_assignor();
                (id, group)
            })
            .collect()
    }
}

fn blank_member() -> Member {
    Member::new(Duration::ZERO, Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::consumer::tests_support::{Fixture, join_of};

    /// Replays `records` into a fresh loader.
    fn load(records: &[GroupRecord], now: Instant) -> BTreeMap<String, Group> {
        let mut loader = Loader::default();
        for (key, value) in records {
            assert!(is_group_record(key));
            assert!(loader.replay(key.clone(), value.clone()), "readable: {key:?}");
        }
        loader.finish(now, Duration::from_secs(45)).into_iter().collect()
    }

    #[test]
    fn a_group_rebuilt_from_its_records_is_the_group_that_wrote_them() {
        let (t, now) = (Fixture::one_topic(6), Instant::now());
        let mut group = Group::new(now);
        let mut log: Vec<GroupRecord> = Vec::new();
        let mut step = |group: &mut Group, f: &dyn Fn(&mut Group)| {
            let before = group.clone();
            f(group);
            log.extend(diff("g", Some(&before), Some(group)));
        };
        step(&mut group, &|g| {
            g.heartbeat(join_of("a"), &t, now).unwrap();
        });
        step(&mut group, &|g| {
            g.heartbeat(join_of("b"), &t, now).unwrap();
        });
        // a is told to revoke half: it is mid-reconciliation when the coordinator goes.
        step(&mut group, &|g| {
            let mut beat = join_of("a");
            beat.member_epoch = 1;
            beat.owned = None;
            g.heartbeat(beat, &t, now).unwrap();
        });
        let later = now + Duration::from_secs(10);
        let loaded = load(&log, later);
        let back = &loaded["g"];
        assert_eq!(back.view().epoch, group.view().epoch);
        assert_eq!(back.view().assignment_epoch, group.view().assignment_epoch);
        assert_eq!(back.state(), group.state());
        assert_eq!(back.topics, group.topics);
        for (id, member) in &group.members {
            let loaded = &back.members[id];
            assert!(same_metadata(member, loaded) && same_current(member, loaded), "{id}");
            assert_eq!(loaded.last_seen, later, "sessions restart from the load");
        }
        assert_eq!(back.target, group.target);
        assert!(diff("g", Some(&group), Some(back)).is_empty(), "nothing to write again");

        // b leaves, then the group is deleted: nothing of it comes back.
        let before = group.clone();
        let mut beat = join_of("b");
        beat.member_epoch = super::super::LEAVE_EPOCH;
        group.heartbeat(beat, &t, now).unwrap();
        log.extend(diff("g", Some(&before), Some(&group)));
        assert!(!load(&log, later)["g"].has_member("b"));
        log.extend(diff("g", Some(&group), None));
        assert!(load(&log, later).is_empty());
    }

    #[test]
    fn records_compacted_out_of_order_rebuild_the_same_member() {
        let (t, now) = (Fixture::one_topic(2), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join_of("a"), &t, now).unwrap();
        let mut records = diff("g", None, Some(&group));
        // Compaction may leave the current assignment ahead of the metadata.
        records.reverse();
        let loaded = load(&records, now);
        assert_eq!(loaded["g"].members["a"].assigned, group.members["a"].assigned);
        assert_eq!(loaded["g"].members["a"].epoch, 1);
    }

    #[test]
    fn a_current_assignment_is_laid_out_as_kafkas() {
        let mut member = Member::new(Duration::ZERO, Instant::now());
        (member.epoch, member.previous_epoch) = (5, 4);
        member.state = MemberState::UnrevokedPartitions;
        member.assigned.entry(Uuid::from_u128(7)).or_default().insert(0);
        let mut expected = vec![0, 0, 0, 0, 0, 5, 0, 0, 0, 4, 1, 2];
        expected.extend_from_slice(Uuid::from_u128(7).as_bytes());
        // One partition, 0; the struct's tags; no partitions pending revocation; the value's tags.
        expected.extend_from_slice(&[2, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(current_value(&member).as_ref(), expected.as_slice());
        assert_eq!(
            key(CURRENT_ASSIGNMENT, "g", Some("m")).as_ref(),
            &[0, 8, 0, 1, b'g', 0, 1, b'm']
        );
    }

    #[test]
    fn other_records_are_not_ours_and_unknown_tags_are_skipped() {
        assert!(!is_group_record(&[0, 1, 0, 0]), "an offset commit");
        assert!(!is_group_record(&[0, 2, 0, 0]), "a classic group");
        // A value with tagged fields Strata does not know (Kafka 4.1's metadata hash) is read.
        let mut value = BytesMut::new();
        value.put_i16(0);
        value.put_i32(7);
        value.put_slice(&[1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        let mut loader = Loader::default();
        assert!(loader.replay(key(GROUP_METADATA, "g", None), Some(value.freeze())));
        assert_eq!(loader.groups["g"].epoch, 7);
    }
}

//! Kafka's ConsumerProtocol bytes, which classic consumers put in JoinGroup (a Subscription, per protocol)
//! and SyncGroup (an Assignment): what a consumer-protocol group reads of its classic members and writes
//! back to them (KIP-848's online migration). Each is an `i16` version, then the message at that version
//! (Kafka's `ConsumerProtocolSubscription` v0-3 and `ConsumerProtocolAssignment` v0-3); a version past the
//! newest is read as the newest, as Kafka's `ConsumerProtocol` does, since later versions only append
//! fields.
//!
//! This module owns the byte layouts and turning topic names into ids; it decides nothing about groups.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::{Assignment, Topics};

/// The version of the Assignments this coordinator writes: v0 holds everything a server-side assignment
/// has (partitions, no user data), and every client reads it.
const ASSIGNMENT_VERSION: i16 = 0;

/// A classic member's subscription: the topics it names, and the partitions it says it owns (v1+; a v0
/// member owns nothing once it rejoins, as an eager consumer revokes everything first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub owned: Vec<(String, Vec<i32>)>,
}

/// The `i16` version, clamped to what `M` knows; `None` for a negative one or too few bytes.
fn version<M: Message>(bytes: &mut Bytes) -> Option<i16> {
    if bytes.remaining() < 2 {
        return None;
    }
    let version = bytes.get_i16();
    (version >= 0).then(|| version.min(M::VERSIONS.max))
}

/// Reads a ConsumerProtocol Subscription; `None` if the bytes are not one.
pub fn subscription(metadata: &Bytes) -> Option<Subscription> {
    let mut bytes = metadata.clone();
    let version = version::<ConsumerProtocolSubscription>(&mut bytes)?;
    let decoded = ConsumerProtocolSubscription::decode(&mut bytes, version).ok()?;
    Some(Subscription {
        topics: decoded.topics.iter().map(|t| t.to_string()).collect(),
        owned: decoded
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    })
}

/// Reads a ConsumerProtocol Assignment as (topic name, partitions); no bytes is no assignment (a member
/// that has not synced yet). `None` if the bytes are not one.
pub fn assignment(bytes: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut bytes = bytes.clone();
    let version = version::<ConsumerProtocolAssignment>(&mut bytes)?;
    let decoded = ConsumerProtocolAssignment::decode(&mut bytes, version).ok()?;
    Some(
        decoded
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
    )
}

/// Writes `assignment` as a ConsumerProtocol Assignment, with topic names from `topics` (a topic deleted
/// meanwhile is left out: the member's next rejoin drops it anyway).
pub fn encode_assignment(assignment: &Assignment, topics: &dyn Topics) -> Bytes {
    let assigned = assignment
        .iter()
        .filter_map(|(id, partitions)| {
            let name = topics.name(*id)?;
            Some(
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions.iter().copied().collect()),
            )
        })
        .collect();
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    message
        .encode(&mut buf, ASSIGNMENT_VERSION)
        .expect("an assignment at v0 always encodes");
    buf.freeze()
}

/// Topic names and partitions as an [`Assignment`] by topic id; topics `topics` does not know are left
/// out, and so are partitions past a topic's count.
pub fn resolve(named: &[(String, Vec<i32>)], topics: &dyn Topics) -> Assignment {
    let mut assignment = Assignment::new();
    for (name, partitions) in named {
        let Some((id, count)) = topics.by_name(name) else {
            continue;
        };
        let valid = partitions.iter().copied().filter(|p| (0..count).contains(p));
        assignment.entry(id).or_default().extend(valid);
    }
    assignment.retain(|_, partitions| !partitions.is_empty());
    assignment
}

#[cfg(test)]
mod tests {
    use super::super::tests_support::Fixture;
    use super::*;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;

    #[test]
    fn subscriptions_and_assignments_of_every_version_are_read_and_ours_read_back() {
        let t = Fixture::one_topic(4);
        for version in 0..=3i16 {
            let message = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("t")])
                .with_owned_partitions(vec![
                    OwnedTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![1, 3]),
                ]);
            let mut buf = BytesMut::new();
            buf.put_i16(version);
            message.encode(&mut buf, version).unwrap();
            let read = subscription(&buf.freeze()).unwrap();
            assert_eq!(read.topics, vec!["t".to_owned()]);
            let owned = if version == 0 {
                vec![]
            } else {
                vec![("t".to_owned(), vec![1, 3])]
            };
            assert_eq!(read.owned, owned, "v{version}");
        }
        assert_eq!(
            subscription(&Bytes::from_static(b"\0\x01\0\0\0\0\0\0\0\0")),
            None,
            "truncated"
        );
        let assigned = resolve(&[("t".into(), vec![0, 2, 9]), ("gone".into(), vec![0])], &t);
        let bytes = encode_assignment(&assigned, &t);
        assert_eq!(assignment(&bytes), Some(vec![("t".to_owned(), vec![0, 2])]));
        assert_eq!(assignment(&Bytes::new()), Some(vec![]));
        assert_eq!(assignment(&Bytes::from_static(b"\0")), None);
    }
}

//! Conversions between openraft's types and their protobuf form in `proto/raft.proto`.
//!
//! Encoding cannot fail. Decoding checks what protobuf cannot express: required fields are present, and a
//! membership is one openraft accepts.

use std::collections::{BTreeMap, BTreeSet};

use openraft::vote::RaftLeaderId;

use crate::proto::raft as pb;
use crate::types::{Entry, EntryPayload, LeaderId, LogId, Membership, NodeId, StoredMembership, Vote};

/// Why bytes that passed their CRC do not decode. On a checked disk this means a bug or a format change.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("required field {0} is missing")]
    Missing(&'static str),
    #[error("invalid membership: {0}")]
    Membership(String),
}

pub fn log_id_to_pb(log_id: &LogId) -> pb::LogId {
    pb::LogId {
        term: log_id.leader_id.term,
        node_id: log_id.leader_id.node_id,
        index: log_id.index,
    }
}

pub fn log_id_from_pb(log_id: &pb::LogId) -> LogId {
    LogId::new(LeaderId::new(log_id.term, log_id.node_id), log_id.index)
}

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::Vote) -> Vote {
    Vote {
        leader_id: LeaderId::new(vote.term, vote.node_id),
        committed: vote.committed,
    }
}

pub fn membership_to_pb(membership: &Membership) -> pb::Membership {
    pb::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|voters| pb::NodeIds {
                ids: voters.iter().copied().collect(),
            })
            .collect(),
        nodes: membership.nodes().map(|(id, node)| (*id, node.clone())).collect(),
    }
}

pub fn membership_from_pb(membership: &pb::Membership) -> Result<Membership, DecodeError> {
    let configs: Vec<BTreeSet<NodeId>> = membership
        .configs
        .iter()
        .map(|voters| voters.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, _> = membership.nodes.iter().map(|(id, node)| (*id, node.clone())).collect();
    Membership::new(configs, nodes).map_err(|e| DecodeError::Membership(e.to_string()))
}

pub fn stored_membership_to_pb(stored: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: stored.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(stored.membership())),
    }
}

pub fn stored_membership_from_pb(stored: &pb::StoredMembership) -> Result<StoredMembership, DecodeError> {
    let membership = stored
        .membership
        .as_ref()
        .ok_or(DecodeError::Missing("StoredMembership.membership"))?;
    Ok(StoredMembership::new(
        stored.log_id.as_ref().map(log_id_from_pb),
        membership_from_pb(membership)?,
    ))
}

pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(batch) => pb::entry::Payload::Records(batch.clone()),
        EntryPayload::Membership(membership) => pb::entry::Payload::Membership(membership_to_pb(membership)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, DecodeError> {
    let log_id = entry.log_id.as_ref().ok_or(DecodeError::Missing("Entry.log_id"))?;
    let payload = match entry.payload.ok_or(DecodeError::Missing("Entry.payload"))? {
        pb::entry::Payload::Blank(pb::Blank {}) => EntryPayload::Blank,
        pb::entry::Payload::Records(batch) => EntryPayload::Normal(batch),
        pb::entry::Payload::Membership(membership) => EntryPayload::Membership(membership_from_pb(&membership)?),
    };
    Ok(Entry {
        log_id: log_id_from_pb(log_id),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metadata::{MetadataBatch, MetadataRecord, RemoveTopic, metadata_record::Record};
    use crate::proto::raft::ControllerNode;

    fn round_trip(entry: Entry) {
        assert_eq!(entry_from_pb(entry_to_pb(&entry)).unwrap(), entry);
    }

    #[test]
    fn entries_round_trip() {
        let log_id = LogId::new(LeaderId::new(3, 2), 17);
        round_trip(Entry {
            log_id,
            payload: EntryPayload::Blank,
        });
        let record = MetadataRecord {
            record: Some(Record::RemoveTopic(RemoveTopic { topic_id: vec![1; 16] })),
        };
        round_trip(Entry {
            log_id,
            payload: EntryPayload::Normal(MetadataBatch { records: vec![record] }),
        });
        let nodes = BTreeMap::from([(1, ControllerNode::new("a:9093")), (2, ControllerNode::new("b:9093"))]);
        let joint = Membership::new(vec![BTreeSet::from([1]), BTreeSet::from([1, 2])], nodes).unwrap();
        round_trip(Entry {
            log_id,
            payload: EntryPayload::Membership(joint),
        });
    }

    #[test]
    fn missing_fields_are_errors() {
        let no_payload = pb::Entry {
            log_id: Some(pb::LogId::default()),
            payload: None,
        };
        assert!(matches!(
            entry_from_pb(no_payload),
            Err(DecodeError::Missing("Entry.payload"))
        ));
        let voter_without_node = pb::Membership {
            configs: vec![pb::NodeIds { ids: vec![4] }],
            nodes: Default::default(),
        };
        assert!(matches!(
            membership_from_pb(&voter_without_node),
            Err(DecodeError::Membership(_))
        ));
    }
}

//! Conversions between openraft's types and their protobuf form in `proto/raft.proto`.
//!
//! Encoding cannot fail. Decoding checks what protobuf cannot express: required fields are present, and a
//! membership is one openraft accepts.

use std::collections::{BTreeMap, BTreeSet};

use openraft::vote::RaftLeaderId;

use crate::proto::raft as pb;
use crate::types::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, EntryPayload, LeaderId, LogId, Membership, NodeId, Snapshot,
    SnapshotMeta, StoredMembership, Vote, VoteRequest, VoteResponse,
};

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

// The Raft RPCs of `proto/raft_service.proto`.

pub fn append_request_to_pb(rpc: &AppendEntriesRequest) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&rpc.vote)),
        prev_log_id: rpc.prev_log_id.as_ref().map(log_id_to_pb),
        entries: rpc.entries.iter().map(entry_to_pb).collect(),
        leader_commit: rpc.leader_commit.as_ref().map(log_id_to_pb),
    }
}

pub fn append_request_from_pb(rpc: pb::AppendEntriesRequest) -> Result<AppendEntriesRequest, DecodeError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(
            rpc.vote
                .as_ref()
                .ok_or(DecodeError::Missing("AppendEntriesRequest.vote"))?,
        ),
        prev_log_id: rpc.prev_log_id.as_ref().map(log_id_from_pb),
        entries: rpc.entries.into_iter().map(entry_from_pb).collect::<Result<_, _>>()?,
        leader_commit: rpc.leader_commit.as_ref().map(log_id_from_pb),
    })
}

pub fn append_response_to_pb(response: &AppendEntriesResponse) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match response {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: matching.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendEntriesResponse { result: Some(result) }
}

pub fn append_response_from_pb(response: pb::AppendEntriesResponse) -> Result<AppendEntriesResponse, DecodeError> {
    use pb::append_entries_response::Result as R;
    Ok(
        match response
            .result
            .ok_or(DecodeError::Missing("AppendEntriesResponse.result"))?
        {
            R::Success(pb::Blank {}) => AppendEntriesResponse::Success,
            R::PartialSuccess(partial) => {
                AppendEntriesResponse::PartialSuccess(partial.matching.as_ref().map(log_id_from_pb))
            }
            R::Conflict(pb::Blank {}) => AppendEntriesResponse::Conflict,
            R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_pb(&vote)),
        },
    )
}

pub fn vote_request_to_pb(rpc: &VoteRequest) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&rpc.vote)),
        last_log_id: rpc.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: rpc.leadership_transfer,
    }
}

pub fn vote_request_from_pb(rpc: &pb::VoteRequest) -> Result<VoteRequest, DecodeError> {
    let mut request = VoteRequest::new(
        vote_from_pb(rpc.vote.as_ref().ok_or(DecodeError::Missing("VoteRequest.vote"))?),
        rpc.last_log_id.as_ref().map(log_id_from_pb),
    );
    request.leadership_transfer = rpc.leadership_transfer;
    Ok(request)
}

pub fn vote_response_to_pb(response: &VoteResponse) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_response_from_pb(response: &pb::VoteResponse) -> Result<VoteResponse, DecodeError> {
    Ok(VoteResponse::new(
        vote_from_pb(
            response
                .vote
                .as_ref()
                .ok_or(DecodeError::Missing("VoteResponse.vote"))?,
        ),
        response.last_log_id.as_ref().map(log_id_from_pb),
        response.vote_granted,
    ))
}

pub fn snapshot_request_to_pb(vote: &Vote, snapshot: Snapshot) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(vote)),
        last_log_id: snapshot.meta.last_log_id.as_ref().map(log_id_to_pb),
        last_membership: Some(stored_membership_to_pb(&snapshot.meta.last_membership)),
        data: snapshot.snapshot,
    }
}

pub fn snapshot_request_from_pb(rpc: pb::InstallSnapshotRequest) -> Result<(Vote, Snapshot), DecodeError> {
    let vote = vote_from_pb(
        rpc.vote
            .as_ref()
            .ok_or(DecodeError::Missing("InstallSnapshotRequest.vote"))?,
    );
    let last_membership = rpc
        .last_membership
        .as_ref()
        .ok_or(DecodeError::Missing("InstallSnapshotRequest.last_membership"))?;
    let meta = SnapshotMeta {
        last_log_id: rpc.last_log_id.as_ref().map(log_id_from_pb),
        last_membership: stored_membership_from_pb(last_membership)?,
    };
    Ok((
        vote,
        Snapshot {
            meta,
            snapshot: rpc.data,
        },
    ))
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
    fn raft_rpcs_round_trip() {
        let vote = Vote {
            leader_id: LeaderId::new(4, 2),
            committed: true,
        };
        let log_id = LogId::new(LeaderId::new(3, 1), 9);
        let request = AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id),
            entries: vec![Entry {
                log_id: LogId::new(LeaderId::new(4, 2), 10),
                payload: EntryPayload::Blank,
            }],
            leader_commit: None,
        };
        let decoded = append_request_from_pb(append_request_to_pb(&request)).unwrap();
        assert_eq!(
            (
                decoded.vote,
                decoded.prev_log_id,
                decoded.entries,
                decoded.leader_commit
            ),
            (
                request.vote,
                request.prev_log_id,
                request.entries,
                request.leader_commit
            )
        );
        for response in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::PartialSuccess(Some(log_id)),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(vote),
        ] {
            assert_eq!(
                append_response_from_pb(append_response_to_pb(&response)).unwrap(),
                response
            );
        }
        let mut request = VoteRequest::new(vote, Some(log_id));
        request.leadership_transfer = true;
        assert_eq!(vote_request_from_pb(&vote_request_to_pb(&request)).unwrap(), request);
        let response = VoteResponse::new(vote, None, true);
        assert_eq!(
            vote_response_from_pb(&vote_response_to_pb(&response)).unwrap(),
            response
        );

        let nodes = BTreeMap::from([(1, ControllerNode::new("a:9093"))]);
        let membership = Membership::new(vec![BTreeSet::from([1])], nodes).unwrap();
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(log_id),
                last_membership: StoredMembership::new(Some(log_id), membership),
            },
            snapshot: b"SRS1 bytes".to_vec(),
        };
        let (decoded_vote, decoded) =
            snapshot_request_from_pb(snapshot_request_to_pb(&vote, snapshot.clone())).unwrap();
        assert_eq!(decoded_vote, vote);
        assert_eq!(decoded.meta, snapshot.meta);
        assert_eq!(decoded.snapshot, snapshot.snapshot);
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

//! The openraft type configuration of the metadata quorum, and short names for openraft's generic types.
//!
//! Node ids are `u64` (a controller's `--node-id`); a node's info is its controller address; a log entry's
//! application payload is a [`MetadataBatch`], applied atomically; applying one answers [`Applied`].

use crate::delta::ReplayError;
use crate::proto::metadata::MetadataBatch;
use crate::proto::raft::ControllerNode;

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types.
    pub TypeConfig:
        D = MetadataBatch,
        R = Applied,
        NodeId = NodeId,
        Node = ControllerNode,
);

/// A controller's id in the quorum.
pub type NodeId = u64;
/// A Raft leader: (term, node id). openraft's "advanced" leader id, which lets two candidates of one term
/// both exist and is its default.
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, NodeId>;
pub type LogId = openraft::LogId<LeaderId>;
pub type Vote = openraft::impls::Vote<LeaderId>;
pub type Entry = openraft::Entry<LeaderId, EntryPayload>;
pub type EntryPayload = openraft::EntryPayload<MetadataBatch, NodeId, ControllerNode>;
pub type Membership = openraft::Membership<NodeId, ControllerNode>;
pub type StoredMembership = openraft::StoredMembership<LeaderId, NodeId, ControllerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, NodeId, ControllerNode>;
/// A snapshot as openraft moves it: metadata and the bytes of the snapshot file (see
/// [`crate::state_machine`]).
pub type Snapshot = openraft::Snapshot<LeaderId, NodeId, ControllerNode, Vec<u8>>;
pub type LogState = openraft::LogState<TypeConfig>;
pub type StorageError = openraft::StorageError<TypeConfig>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
/// A running Raft node of the metadata quorum.
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachine>;

/// The answer to applying one log entry: for a metadata batch, whether replay accepted it.
///
/// A refused batch changed nothing, on every node alike (replay is deterministic); the proposer learns why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Index of the entry in the metadata log.
    pub log_index: u64,
    pub outcome: Result<(), ReplayError>,
}

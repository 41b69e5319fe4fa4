//! The metadata quorum of Strata (in place of ZooKeeper): metadata records, the immutable `MetadataImage`
//! they replay into, and the openraft storage and gRPC network that make them durable and replicate them.
//!
//! Metadata changes only by replaying committed records (Kafka's KRaft design): control logic computes
//! records, openraft commits them as batches in the metadata log, and the state machine replays each batch
//! into a new image. See `docs/controller.md` for the records, the image and the files on disk.
//!
//! # Layout
//!
//! - [`proto`]: the prost messages of `proto/metadata.proto` (the records) and `proto/raft.proto` (openraft's
//!   types on disk), generated at build time.
//! - [`image`]: [`MetadataImage`], immutable and cheap to clone (maps behind `Arc`s), and how it is written
//!   out as records for a snapshot.
//! - [`delta`]: [`MetadataDelta`], the replay of records into the next image, with the checks that keep an
//!   image valid; the only code that changes metadata.
//! - [`types`]: the openraft type configuration ([`TypeConfig`]) and short names for its types.
//! - `codec`: openraft's types to and from their protobuf form.
//! - `checked_file`: small files replaced whole (temp, fsync, rename) and guarded by a CRC-32.
//! - `log_files`: the metadata log's segment files: append with fsync, truncate, purge, and recovery that
//!   cuts a torn tail.
//! - [`log_store`]: [`LogStore`], openraft's log storage over those files plus the vote and committed id.
//! - [`state_machine`]: [`StateMachine`], openraft's state machine: applies batches to the image, builds and
//!   installs snapshots.
//! - [`control`]: the control logic as pure functions from an image to records and an answer
//!   ([`control::ControllerResult`]): placement, topic creation and deletion, fencing, leader elections.
//! - [`network`]: openraft's network over gRPC (tonic): [`Network`] makes a client per peer, over TCP or a
//!   transport given as a [`network::Connect`].
//! - [`service`]: the gRPC `RaftService` handing requests to the local Raft, and [`start`], which runs a
//!   controller ([`Controller`]) on a given listener ([`start_on`]: on any stream of connections), with
//!   openraft's pre-vote on.
//! - [`metrics`]: the controller's figures on `/metrics` (active, term, commit latency, metadata lag per
//!   broker, leader elections, offline partitions, brokers by state), recorded by [`quorum`].
//! - [`check_quorum`]: the task that makes an active controller cut off from a majority step down.
//!
//! - [`quorum`]: the service brokers use (registration, heartbeats, metadata writes on the active controller,
//!   the metadata stream, DescribeQuorum), served beside the Raft RPCs.
//! - [`client`]: the broker's side of it: finding the active controller, and following the metadata log.
//!
//! # Errors
//!
//! Opening is where things found on disk can be wrong, so [`LogStore::open`] and [`StateMachine::open`] have
//! their own errors ([`OpenError`], [`SnapshotError`]) naming the file. A torn log tail is not an error: it is
//! cut and logged. The openraft trait methods return `io::Error`, as openraft requires; openraft treats any
//! of them as fatal for the node. Replay has [`ReplayError`]: a refused batch is not a storage failure but an
//! answer to the proposer, in [`Applied`].

pub mod check_quorum;
mod checked_file;
pub mod client;
// Public only for the fuzz targets (`tests/src/fuzz.rs`), which decode entries and snapshots as the log store
// and the state machine do.
#[doc(hidden)]
pub mod codec;
pub mod control;
pub mod delta;
pub mod image;
mod log_files;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod proto;
pub mod quorum;
pub mod service;
pub mod state_machine;
pub mod types;

pub use checked_file::CheckedFileError;
pub use codec::DecodeError;
pub use delta::{MetadataDelta, ReplayError};
pub use image::{Broker, BrokerId, ConfigResource, Configs, MetadataImage, NO_LEADER, Partition, Topic, TopicId};
pub use log_store::{LogReader, LogStore, OpenError};
pub use network::Network;
pub use quorum::{Quorum, QuorumSettings};
pub use service::{Controller, StartError, start, start_on, start_with};
pub use state_machine::{Feed, SnapshotBuilder, SnapshotError, StateMachine};
pub use types::{Applied, TypeConfig};

/// The directory of the metadata log under a node's data directory, as Kafka names it.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

//! The Raft controller quorum that replaces ZooKeeper: metadata records, the `MetadataImage`, control logic
//! (placement, leader election, fencing) and the openraft log store, state machine and network.
//!
//! Empty for now: it is built by the controller issue (see `docs/architecture.md`).

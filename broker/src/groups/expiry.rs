//! The coordinator's periodic clean-up (Kafka's `GroupMetadataManager.cleanupGroupMetadata`): every
//! `offsets.retention.check.interval.ms`, committed offsets past `offsets.retention.minutes` expire (see
//! [`Expiry`](super::offsets::Expiry)), and groups left `Empty` with no offsets and no member about to join are
//! removed, as Kafka moves them to `Dead`. A client that cycles through group ids therefore leaves nothing
//! behind for longer than the check interval, and offsets nobody reads go after the retention.
//!
//! It owns no state: it reads the [`Coordinator`] and the [`OffsetStore`], each under its own lock and never
//! both at once, and writes the tombstones with neither held.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Coordinator;
use super::offsets::OffsetStore;
use crate::replica::ReplicaManager;

/// `offsets.retention.minutes` and `offsets.retention.check.interval.ms`.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    pub retention: Duration,
    pub check_interval: Duration,
}

/// What one check did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub offsets_expired: usize,
    pub groups_removed: usize,
}

/// Checks every `check_interval`, until `shutdown`.
pub async fn run(
    coordinator: Arc<Coordinator>,
    offsets: Arc<OffsetStore>,
    replicas: Arc<ReplicaManager>,
    settings: RetentionSettings,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.check_interval) => {}
            () = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = sweep(&coordinator, &offsets, &replicas, settings.retention) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One check: expires what is due, then removes the groups that are dead.
pub async fn sweep(
    coordinator: &Coordinator,
    offsets: &Arc<OffsetStore>,
    replicas: &Arc<ReplicaManager>,
    retention: Duration,
) -> Swept {
    let started = Instant::now();
    let expiry = coordinator.expiry();
    let due = offsets.expired(&expiry, retention);
    let mut swept = Swept::default();
    // One batch of tombstones per group, as Kafka writes them.
    for (group, partitions) in due {
        match offsets.expire(replicas, &group, partitions).await {
            Ok(expired) => swept.offsets_expired += expired,
            // The group's partition is led elsewhere now, or being read back: not this broker's to expire.
            Err(ResponseError::NotCoordinator | ResponseError::CoordinatorLoadInProgress) => {
                debug!(group, "not expiring offsets: not the group's coordinator");
            }
            Err(error) => warn!(group, ?error, "expiring offsets failed; the next check tries again"),
        }
    }
    let with_offsets: HashSet<String> = offsets.groups().into_iter().collect();
    let log = super::offsets::GroupStateLog {
        offsets: offsets.clone(),
        replicas: replicas.clone(),
    };
    swept.groups_removed = coordinator.remove_dead(|group| with_offsets.contains(group), &log);
    if swept != Swept::default() {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(
            offsets_expired = swept.offsets_expired,
            groups_removed = swept.groups_removed,
            elapsed_ms,
            "expired committed offsets and removed dead groups"
        );
    }
    swept
}

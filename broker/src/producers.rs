//! Producer ids for idempotent producers (InitProducerId).
//!
//! A producer with `enable.idempotence` (the Java client's default) asks InitProducerId for an id, then
//! numbers its records per partition. The per-partition sequence state that turns a retried batch into the
//! answer it already had belongs to the partition's log (`strata_storage::producer_state`, judged by
//! `Log::append_as_leader`); the broker only hands out the ids.
//!
//! Producer ids are handed out in blocks whose end is persisted before any id of the block is used, so an id
//! is never given twice, restarts included. Each node gives ids from its own range (node id × 2^40 onwards),
//! so no two brokers of a cluster give the same id; Kafka has its controller hand out the blocks instead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

/// Producer ids reserved (and persisted) at a time.
const ID_BLOCK: i64 = 1000;
const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Bits of a producer id below the node id: 2^40 ids per node.
const NODE_ID_SHIFT: u32 = 40;

/// Hands out producer ids; see the module documentation.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    /// (next id to give, end of the persisted block)
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// The ids of node `node_id`, continuing after the block persisted in `data_dir`.
    pub fn open(data_dir: &Path, node_id: i32) -> anyhow::Result<Self> {
        let first = i64::from(node_id) << NODE_ID_SHIFT;
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let body =
                    crate::metadata::verify_crc(&text).with_context(|| format!("{} is corrupt", path.display()))?;
                body.trim()
                    .strip_prefix("next=")
                    .and_then(|n| n.parse().ok())
                    .context("producer-ids has no next=")?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => first,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let next = i64::max(next, first);
        // Nothing of the persisted block is known to be unused: start after it.
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// A producer id never given before.
    pub fn allocate(&self) -> anyhow::Result<i64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, end) = *state;
        if next == end {
            let new_end = end + ID_BLOCK;
            crate::metadata::write_atomically(&self.path, &crate::metadata::with_crc(format!("next={new_end}\n")))?;
            state.1 = new_end;
        }
        state.0 += 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_are_never_reused_across_restarts_or_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert!(
            ids.allocate().unwrap() >= ID_BLOCK,
            "a restart starts after the persisted block"
        );
        let other = tempfile::tempdir().unwrap();
        let node_2 = ProducerIds::open(other.path(), 2).unwrap().allocate().unwrap();
        assert_eq!(node_2, 2 << NODE_ID_SHIFT, "node 2 gives ids from its own range");
    }
}

//! What survives a restart of the metadata log and state machine: entries, vote and committed id after a
//! reopen; the intact prefix after a torn tail; the same image after a snapshot plus the log tail.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use futures_util::stream;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;
use openraft::{RaftLogReader, StorageHelper};
use strata_controller::proto::metadata::{
    MetadataBatch, MetadataRecord, PartitionChange, PartitionRecord, RegisterBroker, TopicRecord, UnfenceBroker,
    metadata_record::Record,
};
use strata_controller::proto::raft::ControllerNode;
use strata_controller::types::{Entry, EntryPayload, LeaderId, LogId, Membership, Vote};
use strata_controller::{LogStore, MetadataImage, StateMachine, TypeConfig};
use uuid::Uuid;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId::new(term, 1), index)
}

fn rec(record: Record) -> MetadataRecord {
    MetadataRecord { record: Some(record) }
}

/// The first entry of a one-voter quorum: its membership.
fn membership_entry(index: u64) -> Entry {
    let membership = Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, ControllerNode::new("a:9093"))]),
    );
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(membership.unwrap()),
    }
}

/// A batch that registers and unfences broker `n` and creates topic `t<n>` with one partition on it: each
/// entry changes the image, so a lost or repeated entry shows.
fn batch_entry(index: u64) -> Entry {
    let broker_id = index as i32;
    let topic_id = Uuid::from_u128(u128::from(index) + 1).as_bytes().to_vec();
    let records = vec![
        rec(Record::RegisterBroker(RegisterBroker {
            broker_id,
            incarnation: 1,
            listeners: vec![],
            rack: None,
        })),
        rec(Record::UnfenceBroker(UnfenceBroker {
            broker_id,
            incarnation: 1,
        })),
        rec(Record::Topic(TopicRecord {
            name: format!("t{index}"),
            topic_id: topic_id.clone(),
        })),
        rec(Record::Partition(PartitionRecord {
            topic_id,
            partition: 0,
            replicas: vec![broker_id],
            isr: vec![broker_id],
            leader: broker_id,
            leader_epoch: 0,
            partition_epoch: 0,
        })),
    ];
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(MetadataBatch { records }),
    }
}

/// Entry 0 is the membership, the others metadata batches.
fn entries(indexes: std::ops::Range<u64>) -> Vec<Entry> {
    indexes
        .map(|index| {
            if index == 0 {
                membership_entry(0)
            } else {
                batch_entry(index)
            }
        })
        .collect()
}

/// Appends through the public API and waits for the flush callback, as openraft does.
async fn append(store: &mut LogStore, entries: Vec<Entry>) -> io::Result<()> {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.map_err(io::Error::other)?
}

async fn read_all(store: &mut LogStore) -> Vec<Entry> {
    store.get_log_reader().await.try_get_log_entries(..).await.unwrap()
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) {
    sm.apply(stream::iter(entries.into_iter().map(|entry| Ok((entry, None)))))
        .await
        .unwrap();
}

/// The only segment file in `dir`.
fn segment_file(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

#[tokio::test]
async fn reopen_keeps_entries_vote_committed_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let vote = Vote::new_committed(3, 1);
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        store.save_vote(&vote).await.unwrap();
        append(&mut store, entries(0..6)).await.unwrap();
        append(&mut store, entries(6..10)).await.unwrap();
        store.truncate_after(Some(log_id(1, 7))).await.unwrap();
        store.purge(log_id(1, 2)).await.unwrap();
        store.save_committed(Some(log_id(1, 5))).await.unwrap();
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    assert_eq!(store.read_vote().await.unwrap(), Some(vote));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 5)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(
        (state.last_purged_log_id, state.last_log_id),
        (Some(log_id(1, 2)), Some(log_id(1, 7)))
    );
    assert_eq!(read_all(&mut store).await, entries(3..8));

    // The reopened log takes appends where it ended.
    append(&mut store, entries(8..9)).await.unwrap();
    assert!(append(&mut store, entries(10..11)).await.is_err(), "a hole is refused");
    drop(store);
    assert_eq!(read_all(&mut LogStore::open(dir.path()).unwrap()).await, entries(3..9));
}

#[tokio::test]
async fn torn_tail_is_cut_and_the_prefix_stays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        for index in 0..10 {
            append(&mut store, entries(index..index + 1)).await.unwrap();
        }
    }
    let segment = segment_file(dir.path());
    let full_len = fs::metadata(&segment).unwrap().len();

    // A crash in the middle of the last write: its frame is incomplete.
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(full_len - 3)
        .unwrap();
    let mut store = LogStore::open(dir.path()).unwrap();
    assert_eq!(read_all(&mut store).await, entries(0..9));
    assert_eq!(store.get_log_state().await.unwrap().last_log_id, Some(log_id(1, 8)));
    let cut_len = fs::metadata(&segment).unwrap().len();
    assert!(cut_len < full_len - 3, "the partial frame is gone from the file");

    // Appending continues at the cut, and the new entry survives the next reopen.
    append(&mut store, entries(9..10)).await.unwrap();
    drop(store);
    assert_eq!(read_all(&mut LogStore::open(dir.path()).unwrap()).await, entries(0..10));

    // A flipped byte inside entry 9's body fails its CRC: entries 0..=8 stay.
    let mut bytes = fs::read(&segment).unwrap();
    let flip_at = bytes.len() - 2;
    bytes[flip_at] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    assert_eq!(read_all(&mut LogStore::open(dir.path()).unwrap()).await, entries(0..9));
}

#[tokio::test]
async fn garbage_after_the_log_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&mut store, entries(0..4)).await.unwrap();
    }
    let segment = segment_file(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    // A length prefix that promises far more than is there, as a zero-filled or torn block might.
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1, 2, 3]);
    fs::write(&segment, bytes).unwrap();
    assert_eq!(read_all(&mut LogStore::open(dir.path()).unwrap()).await, entries(0..4));
}

/// The restart path of openraft: the state machine loads its snapshot, and `StorageHelper::get_initial_state`
/// re-applies the log from the snapshot to the saved committed log id.
#[tokio::test]
async fn snapshot_plus_log_tail_rebuilds_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let image_before: MetadataImage;
    let snapshot_bytes: Vec<u8>;
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        append(&mut store, entries(0..8)).await.unwrap();
        apply(&mut sm, entries(0..5)).await;
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 4)));
        snapshot_bytes = snapshot.snapshot;
        store.purge(log_id(1, 2)).await.unwrap();

        // Entries after the snapshot: a leader change, then an entry only in the log, not yet applied.
        let change = rec(Record::PartitionChange(PartitionChange {
            topic_id: Uuid::from_u128(2).as_bytes().to_vec(),
            partition: 0,
            leader: Some(-1),
            isr: None,
            replicas: None,
        }));
        let change = Entry {
            log_id: log_id(1, 8),
            payload: EntryPayload::Normal(MetadataBatch { records: vec![change] }),
        };
        append(&mut store, vec![change.clone()]).await.unwrap();
        apply(&mut sm, entries(5..8)).await;
        apply(&mut sm, vec![change]).await;
        store.save_committed(Some(log_id(1, 8))).await.unwrap();
        append(&mut store, entries(9..10)).await.unwrap();
        image_before = sm.image().clone();
        assert_eq!(image_before.partition(&Uuid::from_u128(2), 0).unwrap().leader, -1);
        assert_eq!(image_before.brokers().len(), 7);
    }

    let mut store = LogStore::open(dir.path()).unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    assert_eq!(sm.last_applied(), Some(log_id(1, 4)), "loaded from the snapshot");
    assert_eq!(sm.image().brokers().len(), 4);
    let state = StorageHelper::new(&mut store, &mut sm)
        .with_id(1)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(sm.last_applied(), Some(log_id(1, 8)));
    assert_eq!(state.snapshot_meta.last_log_id, Some(log_id(1, 4)));
    assert_eq!(sm.image(), &image_before, "snapshot plus re-applied tail");
    assert_eq!(
        sm.get_current_snapshot().await.unwrap().unwrap().snapshot,
        snapshot_bytes
    );

    // The same snapshot installed on a fresh state machine (as a follower would) gives the snapshot's image.
    let other = tempfile::tempdir().unwrap();
    let mut follower = StateMachine::open(other.path()).unwrap();
    let snapshot = sm.get_current_snapshot().await.unwrap().unwrap();
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
        .await
        .unwrap();
    let mut images = follower.subscribe();
    assert_eq!(follower.image().brokers().len(), 4);
    assert_eq!(images.borrow_and_update().brokers().len(), 4);
    drop(follower);
    let follower = StateMachine::open(other.path()).unwrap();
    assert_eq!(
        follower.last_applied(),
        Some(log_id(1, 4)),
        "the installed snapshot is on disk"
    );

    // A damaged snapshot is refused and replaces nothing.
    let mut damaged = snapshot.snapshot;
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    let mut fresh = StateMachine::open(tempfile::tempdir().unwrap().path()).unwrap();
    let refused = fresh.install_snapshot(&snapshot.meta, damaged).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
    assert!(fresh.image().is_empty());
}

/// A snapshot of 100,000 partitions (the load target) is written and loaded back whole. The time is
/// printed, not asserted: this is a debug build on a shared machine.
#[tokio::test]
async fn snapshot_of_100k_partitions_round_trips() {
    const PARTITIONS: i32 = 100_000;
    let topic_id = Uuid::from_u128(7).as_bytes().to_vec();
    let mut records: Vec<MetadataRecord> = (0..3)
        .map(|broker_id| {
            rec(Record::RegisterBroker(RegisterBroker {
                broker_id,
                incarnation: 1,
                listeners: vec![],
                rack: None,
            }))
        })
        .collect();
    records.push(rec(Record::Topic(TopicRecord {
        name: "big".into(),
        topic_id: topic_id.clone(),
    })));
    records.extend((0..PARTITIONS).map(|partition| {
        rec(Record::Partition(PartitionRecord {
            topic_id: topic_id.clone(),
            partition,
            replicas: vec![0, 1, 2],
            isr: vec![0, 1, 2],
            leader: partition % 3,
            leader_epoch: 0,
            partition_epoch: 0,
        }))
    }));
    let batch = Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Normal(MetadataBatch { records }),
    };

    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path()).unwrap();
    apply(&mut sm, vec![membership_entry(0), batch]).await;
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let image = sm.image().clone();
    drop(sm);

    let started = std::time::Instant::now();
    let loaded = StateMachine::open(dir.path()).unwrap();
    println!(
        "loaded a {} byte snapshot of {PARTITIONS} partitions in {:?}",
        snapshot.snapshot.len(),
        started.elapsed()
    );
    assert_eq!(loaded.image(), &image);
    assert_eq!(
        loaded.image().topic_by_name("big").unwrap().partitions.len(),
        PARTITIONS as usize
    );
}

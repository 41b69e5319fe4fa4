//! A three-node cluster — real `strata server` processes on loopback, and the compose cluster of `deploy/`
//! when Docker is there (which can also cut a node off from its peers) — loses no acknowledged record while
//! its nodes are SIGKILLed, frozen past their session, its active controller killed and every node restarted
//! in turn — with librdkafka producers (`acks=all`, idempotent and not) and a group consumer running
//! throughout. After the faults the final log is read back and checked against what the clients saw (see
//! `strata_tests::faults::check`), and every partition's three replicas must hold the same bytes.
//!
//! The faults come from a seed, printed at the start: `STRATA_FAULTS_SEED=<seed>` replays the same
//! schedule (where in the workload each fault lands still depends on timing). Without it the seed is taken
//! from the clock, so that runs explore different schedules.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_protocol::client::Client;
use strata_protocol::client::admin::NewTopic;
use strata_tests::faults::check::{availability, check};
use strata_tests::faults::cluster::{Cluster, Processes, strata_binary};
use strata_tests::faults::compose::Compose;
use strata_tests::faults::nemesis::{self, Applied};
use strata_tests::faults::workload::{self, PARTITIONS, ProducerSpec, TOPIC};

const NODES: usize = 3;
/// Faults per run, one at a time.
const FAULTS: usize = 4;
/// Between faults: the cluster settles and the workload runs unharmed.
const SETTLE: Duration = Duration::from_secs(2);
/// Bound for what a loaded machine takes a while to do after the faults (elections, catching up, reading).
const SLOW: Duration = Duration::from_secs(90);
/// One cluster at a time: two at once on two cores would stretch every deadline.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn seed() -> u64 {
    match std::env::var("STRATA_FAULTS_SEED") {
        Ok(seed) => seed.parse().expect("STRATA_FAULTS_SEED is a u64"),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
    }
}

/// Whether every partition of the workload's topic, as `addr` describes it, has a leader and all replicas
/// in sync.
async fn fully_replicated(addr: &str) -> bool {
    let Ok(mut client) = Client::connect(addr).await else {
        return false;
    };
    let Ok(topic) = client.topic_metadata(TOPIC, false).await else {
        return false;
    };
    topic.error.is_none()
        && topic.partitions.len() == PARTITIONS as usize
        && topic.partitions.iter().all(|p| p.leader >= 0 && p.isr.len() == NODES)
}

async fn wait_fully_replicated(cluster: &dyn Cluster) {
    let deadline = Instant::now() + SLOW;
    while !fully_replicated(&cluster.client_addr(1)).await {
        assert!(
            Instant::now() < deadline,
            "partitions not fully replicated within {SLOW:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loopback_processes_lose_no_acknowledged_record_under_kills_pauses_and_restarts() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    eprintln!("fault suite (loopback processes) seed {seed}: STRATA_FAULTS_SEED={seed} replays the schedule");
    let mut cluster = tokio::task::block_in_place(|| Processes::start(&strata_binary(), NODES));
    history_holds(&mut cluster, seed, false).await;
}

/// The compose cluster of `deploy/`, when a Docker engine answers and the image is built. `scripts/test`
/// builds the image and sets `STRATA_REQUIRE_COMPOSE=1` when an engine answers, so that this test cannot
/// skip silently in CI; without it (a developer's `cargo test` on a machine without Docker) it says that it
/// skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_compose_cluster_loses_no_acknowledged_record_under_kills_pauses_cuts_and_restarts() {
    if let Err(why) = Compose::available() {
        assert!(
            std::env::var("STRATA_REQUIRE_COMPOSE").is_err(),
            "STRATA_REQUIRE_COMPOSE is set, but {why}"
        );
        eprintln!("SKIPPED the compose fault suite: {why}");
        return;
    }
    let _serial = SERIAL.lock().await;
    let seed = seed();
    eprintln!("fault suite (compose) seed {seed}: STRATA_FAULTS_SEED={seed} replays the schedule");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/docker-compose.yml");
    let mut cluster = tokio::task::block_in_place(|| Compose::start(&file, "strata-faults"));
    history_holds(&mut cluster, seed, true).await;
}

/// Runs the workload on `cluster` through [`FAULTS`] faults from `seed` (network cuts if `cuts`), then
/// checks the history against the final log, and the replicas against each other.
async fn history_holds(cluster: &mut dyn Cluster, seed: u64, cuts: bool) {
    let mut client = Client::connect(&cluster.client_addr(1)).await.unwrap();
    client
        .create_topic(&NewTopic {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: NODES as i16,
            configs: vec![],
        })
        .await
        .unwrap();
    wait_fully_replicated(cluster).await;

    let producers = vec![
        ProducerSpec {
            name: "idem".into(),
            idempotent: true,
        },
        ProducerSpec {
            name: "plain".into(),
            idempotent: false,
        },
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workload = tokio::spawn(workload::run(cluster.bootstrap(), producers.clone(), stop.clone()));
    tokio::time::sleep(SETTLE).await;
    let mut applied: Vec<Applied> = Vec::new();
    for fault in nemesis::schedule(seed, &cluster.nodes(), FAULTS, cuts) {
        eprintln!("fault: {fault:?}");
        applied.push(nemesis::apply(cluster, fault).await);
        tokio::time::sleep(SETTLE).await;
    }
    stop.store(true, Ordering::Relaxed);
    let history = workload.await.unwrap();

    wait_fully_replicated(cluster).await;
    let bootstrap = cluster.bootstrap();
    let (log, high_watermarks, committed) = tokio::task::block_in_place(|| {
        let (log, high_watermarks) = workload::read_all(&bootstrap, Instant::now() + SLOW);
        (log, high_watermarks, workload::committed(&bootstrap))
    });
    let idempotent = |name: &str| producers.iter().any(|p| p.name == name && p.idempotent);
    let report = check(&history, &log, &high_watermarks, &committed, idempotent, started);
    eprintln!("seed {seed}: {report}");
    for fault in availability(&history, &applied) {
        eprintln!("  {fault}");
    }
    assert!(report.acked > 0, "nothing was acknowledged");
    assert!(report.valid(), "seed {seed}: the history breaks an invariant\n{report}");

    // Replicas converge to the same bytes (followers may still be fetching the last records).
    let deadline = Instant::now() + SLOW;
    for partition in 0..PARTITIONS {
        loop {
            let replicas: Vec<Option<Vec<u8>>> = cluster
                .nodes()
                .iter()
                .map(|&id| cluster.replica_bytes(id, TOPIC, partition))
                .collect();
            if replicas[0].is_some() && replicas.iter().all(|r| r == &replicas[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: the replicas of partition {partition} differ: {:?} bytes",
                replicas.iter().map(|r| r.as_ref().map(Vec::len)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

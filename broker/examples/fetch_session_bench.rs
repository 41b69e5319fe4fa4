//! Fetch sessions (KIP-227), before and after: a consumer of PARTITIONS partitions of which ACTIVE get a
//! record before every poll. Without a session every poll names every partition and every partition is
//! answered; with one, a poll names only the partitions whose position moved and is answered only with those
//! that have news. Reports request and response bytes per poll and the broker's CPU per poll (from
//! `/proc/PID/stat`, less a phase that only produces, so that the appends are not counted).
//!
//! ```sh
//! scripts/bench-fetch-sessions        # starts a release server and runs this
//! ```

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, FetchRequest, FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strata_protocol::client::{BatchBuilder, Client, Compression};
use uuid::Uuid;

const TOPIC: &str = "fetch-session-bench";
/// Fetch v13: topics by id, as the Java client sends them.
const FETCH_VERSION: i16 = 13;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, pid, partitions, active, polls] = &args[..] else {
        anyhow::bail!("usage: fetch_session_bench BOOTSTRAP SERVER_PID PARTITIONS ACTIVE POLLS");
    };
    let (pid, partitions, active, polls): (u32, i32, i32, usize) =
        (pid.parse()?, partitions.parse()?, active.parse()?, polls.parse()?);
    let mut consumer = Client::connect(bootstrap).await?;
    let mut producer = Client::connect(bootstrap).await?;
    let created = consumer
        .send(CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ]))
        .await?;
    let topic_id = created.topics[0].topic_id;
    anyhow::ensure!(
        created.topics[0].error_code == 0,
        "creating the topic: {:?}",
        created.topics[0]
    );

    let baseline = Phase::start(pid, polls)?;
    for _ in 0..polls {
        produce(&mut producer, active).await?;
    }
    let baseline = baseline.end()?;
    println!(
        "produce only ({active} records per round): broker CPU {:.1} us per round",
        baseline.cpu_us_per_round()
    );
    for sessions in [false, true] {
        let mut poller = Poller::new(topic_id, partitions, sessions);
        // Catch up first, so both modes start at the log end.
        poller.poll(&mut consumer).await?;
        let phase = Phase::start(pid, polls)?;
        for _ in 0..polls {
            produce(&mut producer, active).await?;
            poller.poll(&mut consumer).await?;
        }
        let phase = phase.end()?;
        anyhow::ensure!(
            poller.records >= (polls as i32 * active) as usize,
            "read {} records of {}",
            poller.records,
            polls as i32 * active
        );
        let name = if sessions { "fetch session" } else { "no session" };
        println!(
            "{name:>14}: request {:>6} B, response {:>6} B per poll, broker CPU {:>6.1} us per poll ({:.1} with the appends), {:.0} us per round trip",
            poller.request_bytes / polls,
            poller.response_bytes / polls,
            phase.cpu_us_per_round() - baseline.cpu_us_per_round(),
            phase.cpu_us_per_round(),
            phase.elapsed_us / polls as f64,
        );
    }
    Ok(())
}

/// One record to each of the first `active` partitions, acks=1.
async fn produce(client: &mut Client, active: i32) -> anyhow::Result<()> {
    let data = (0..active)
        .map(|p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch()))
        })
        .collect();
    let response = client
        .send(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partition_data(data),
                ]),
        )
        .await?;
    for p in &response.responses[0].partition_responses {
        anyhow::ensure!(p.error_code == 0, "produce to {}: {}", p.index, p.error_code);
    }
    Ok(())
}

fn batch() -> Bytes {
    let mut batch = BatchBuilder::new(Compression::None);
    let value = Bytes::from_static(b"a small event of about forty bytes......");
    batch.push(None, Some(value), Default::default(), 1_780_000_000_000);
    batch.build().expect("a batch encodes")
}

/// A consumer's fetch loop, with or without a session, as Kafka's `FetchSessionHandler` builds requests.
struct Poller {
    topic_id: Uuid,
    sessions: bool,
    /// Each partition's next offset.
    positions: Vec<i64>,
    /// The positions the session was last told (`None`: not in the session yet).
    told: HashMap<i32, i64>,
    session_id: i32,
    epoch: i32,
    request_bytes: usize,
    response_bytes: usize,
    records: usize,
}

impl Poller {
    fn new(topic_id: Uuid, partitions: i32, sessions: bool) -> Self {
        Self {
            topic_id,
            sessions,
            positions: vec![0; partitions as usize],
            told: HashMap::new(),
            session_id: 0,
            epoch: if sessions { 0 } else { -1 },
            request_bytes: 0,
            response_bytes: 0,
            records: 0,
        }
    }

    async fn poll(&mut self, client: &mut Client) -> anyhow::Result<()> {
        let named: Vec<FetchPartition> = self
            .positions
            .iter()
            .enumerate()
            .filter(|(p, offset)| !self.sessions || self.told.get(&(*p as i32)) != Some(offset))
            .map(|(p, offset)| {
                FetchPartition::default()
                    .with_partition(p as i32)
                    .with_fetch_offset(*offset)
                    .with_current_leader_epoch(-1)
                    .with_partition_max_bytes(1 << 20)
            })
            .collect();
        if self.sessions {
            for p in &named {
                self.told.insert(p.partition, p.fetch_offset);
            }
        }
        let topics = if named.is_empty() {
            vec![]
        } else {
            vec![
                FetchTopic::default()
                    .with_topic_id(self.topic_id)
                    .with_partitions(named),
            ]
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(50 << 20)
            .with_session_id(self.session_id)
            .with_session_epoch(self.epoch)
            .with_topics(topics);
        self.request_bytes += request.compute_size(FETCH_VERSION)?;
        let response: FetchResponse = client.send_at(request, FETCH_VERSION).await?;
        self.response_bytes += response.compute_size(FETCH_VERSION)?;
        anyhow::ensure!(response.error_code == 0, "fetch error {}", response.error_code);
        if self.sessions {
            anyhow::ensure!(response.session_id != 0, "the broker kept no session");
            self.session_id = response.session_id;
            self.epoch = if self.epoch == i32::MAX { 1 } else { self.epoch + 1 };
        }
        for partition in response.responses.iter().flat_map(|t| &t.partitions) {
            anyhow::ensure!(partition.error_code == 0, "partition error {}", partition.error_code);
            let records = partition.records.as_ref().map_or(0, Bytes::len);
            if records > 0 {
                // Every batch here holds one record: the high watermark is the next position.
                let position = &mut self.positions[partition.partition_index as usize];
                self.records += (partition.high_watermark - *position) as usize;
                *position = partition.high_watermark;
            }
        }
        Ok(())
    }
}

/// CPU the server used and time passed over some rounds of work.
struct Phase {
    pid: u32,
    rounds: usize,
    cpu_ticks: u64,
    started: Instant,
    elapsed_us: f64,
}

impl Phase {
    fn start(pid: u32, rounds: usize) -> anyhow::Result<Phase> {
        Ok(Phase {
            pid,
            rounds,
            cpu_ticks: cpu_ticks(pid)?,
            started: Instant::now(),
            elapsed_us: 0.0,
        })
    }

    fn end(self) -> anyhow::Result<Phase> {
        Ok(Phase {
            cpu_ticks: cpu_ticks(self.pid)? - self.cpu_ticks,
            elapsed_us: self.started.elapsed().as_secs_f64() * 1e6,
            ..self
        })
    }

    fn cpu_us_per_round(&self) -> f64 {
        // Linux reports CPU time in clock ticks of 10 ms (USER_HZ = 100).
        self.cpu_ticks as f64 * 10_000.0 / self.rounds as f64
    }
}

/// User and system CPU of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow::anyhow!("odd /proc stat"))? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

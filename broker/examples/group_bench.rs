//! Group coordinator figures for BENCHMARKS.md, against a running server (`scripts/bench-groups` starts one):
//!
//! - `rebalance`: two librdkafka consumers are stable; a third subscribes; the time until all three hold
//!   partitions (heartbeat.interval.ms=100, so members learn of the rebalance within 0.1 s: what is measured
//!   is the coordinator, not the clients' heartbeat period). Repeated ROUNDS times on fresh groups.
//! - `rebalance-consumer`: the same with KIP-848 members (`group.protocol=consumer`); the server's
//!   `group.consumer.heartbeat.interval.ms` must be 100 for the same reason (`scripts/bench-groups` sets it).
//! - `commit`: COMMITS OffsetCommit round trips of one partition's offset, one at a time; latency percentiles.
//! - `groups`: commits one offset for each of GROUPS groups (the server's start-up then loads them; the
//!   script reads the load time from its log).
//!
//! ```sh
//! cargo run --release --example group_bench -- HOST:PORT rebalance|commit|groups
//! ```

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use strata_protocol::client::Client;
use strata_protocol::client::admin::NewTopic;

const TOPIC: &str = "group-bench";
const PARTITIONS: i32 = 6;
const ROUNDS: usize = 10;
const COMMITS: usize = 10_000;
const GROUPS: usize = 10_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, what] = &args[..] else {
        anyhow::bail!("usage: group_bench HOST:PORT rebalance|rebalance-consumer|commit|groups")
    };
    let mut client = Client::connect(bootstrap).await?;
    let topic = NewTopic {
        name: TOPIC.into(),
        partitions: PARTITIONS,
        replication_factor: -1,
        configs: Vec::new(),
    };
    let _ = client.create_topic(&topic).await; // it may exist from an earlier run
    match what.as_str() {
        "rebalance" => rebalance(bootstrap, Protocol::Classic),
        "rebalance-consumer" => rebalance(bootstrap, Protocol::Consumer),
        "commit" => commit(&mut client).await,
        "groups" => groups(&mut client).await,
        other => anyhow::bail!("unknown benchmark {other}"),
    }
}

/// Which group protocol members speak.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    /// JoinGroup/SyncGroup, with the client's heartbeat interval.
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat; the heartbeat interval is the server's.
    Consumer,
}

fn member(bootstrap: &str, group: &str, protocol: Protocol) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    match protocol {
        Protocol::Classic => config
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "100"),
        Protocol::Consumer => config.set("group.protocol", "consumer"),
    };
    let consumer: BaseConsumer = config.create()?;
    consumer.subscribe(&[TOPIC])?;
    Ok(consumer)
}

/// Polls until every consumer holds partitions and together they hold all of them.
fn settle(consumers: &[&BaseConsumer]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for consumer in consumers {
            consumer.poll(Duration::from_millis(1));
        }
        let counts: Vec<usize> = consumers
            .iter()
            .map(|c| c.assignment().map_or(0, |a| a.count()))
            .collect();
        if counts.iter().all(|c| *c > 0) && counts.iter().sum::<usize>() == PARTITIONS as usize {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the group never settled: {counts:?}");
    }
}

fn rebalance(bootstrap: &str, protocol: Protocol) -> anyhow::Result<()> {
    let mut times = Vec::new();
    // Members are kept to the end: closing a librdkafka 2.12 consumer of the consumer protocol can block (it
    // waits on its final heartbeat), which would stall the next round.
    let mut members = Vec::new();
    for round in 0..ROUNDS {
        let group = format!("rebalance-{round}-{}", std::process::id());
        let (a, b) = (
            member(bootstrap, &group, protocol)?,
            member(bootstrap, &group, protocol)?,
        );
        settle(&[&a, &b])?;
        let joined = Instant::now();
        let c = member(bootstrap, &group, protocol)?;
        settle(&[&a, &b, &c])?;
        times.push(joined.elapsed());
        members.extend([a, b, c]);
    }
    std::mem::forget(members);
    times.sort();
    println!(
        "{protocol:?} group: rebalance after a third member joins ({ROUNDS} rounds): median {:?}, max {:?}",
        times[ROUNDS / 2],
        times[ROUNDS - 1]
    );
    Ok(())
}

async fn commit(client: &mut Client) -> anyhow::Result<()> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..COMMITS {
        let started = Instant::now();
        client
            .commit_group_offsets("commit-bench", &[(TOPIC, (i % PARTITIONS as usize) as i32, i as i64)])
            .await?;
        latency.record(started.elapsed().as_micros() as u64)?;
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "OffsetCommit ({COMMITS} sequential): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    Ok(())
}

async fn groups(client: &mut Client) -> anyhow::Result<()> {
    let started = Instant::now();
    for g in 0..GROUPS {
        client
            .commit_group_offsets(
                &format!("many-groups-{g:05}"),
                &[(TOPIC, (g % PARTITIONS as usize) as i32, g as i64)],
            )
            .await?;
    }
    println!("committed offsets for {GROUPS} groups in {:?}", started.elapsed());
    Ok(())
}

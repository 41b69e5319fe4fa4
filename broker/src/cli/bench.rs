//! `strata bench produce | consume`, in the manner of Kafka's `kafka-producer-perf-test` and
//! `kafka-consumer-perf-test`: a progress line every second on stderr, a summary on stdout.
//!
//! `produce` sends `--records` (or for `--duration`) records of `--record-size` bytes, all with the same
//! random payload, through the same batching and pipelining as `strata produce`. Its latency is per record,
//! from the moment it was added to a batch to the acknowledgement of that batch. The hot loop costs one
//! clock read and two histogram increments per record and no allocation: payloads are slices of one
//! buffer, enqueue-time vectors are reused.
//!
//! `consume` reads every partition from the earliest offset until `--records` have arrived (by default:
//! until the end offsets seen at start); its latency is that of each fetch request.
//!
//! Both send each partition's requests to its leader, as `produce` and `consume` do.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use kafka_protocol::ResponseError;
use strata_protocol::client::admin::{NewTopic, OffsetSpec};
use strata_protocol::client::{FetchOptions, Headers, Router};

use super::consume::{end_offsets, partitions};
use super::fetcher::Fetcher;
use super::produce::now_ms;
use super::producer::{OnAck, Producer};
use super::{Bootstrap, ProducerArgs};

/// How often the progress line is printed.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Latencies are kept in microseconds, up to an hour.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// The most a consumer fetches from one partition at once.
const FETCH_PARTITION_BYTES_MAX: i32 = 8 * 1024 * 1024;
/// `bench consume` gives up when no record arrives for this long.
const CONSUME_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many records the produce loop adds between looks at the clock for the deadline and the report.
const RECORDS_PER_CHECK: u64 = 1024;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Measure producing: throughput and per-record latency.
    Produce(ProduceBench),
    /// Measure consuming: throughput and fetch latency.
    Consume(ConsumeBench),
}

/// Flags of both benchmarks.
#[derive(Debug, Args)]
struct Common {
    #[command(flatten)]
    bootstrap: Bootstrap,
    /// The topic to use.
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    /// How many records.
    #[arg(long)]
    records: Option<u64>,
    /// How long, in seconds (with --records: whichever ends first).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
}

impl Common {
    fn deadline(&self, start: Instant) -> Option<Instant> {
        self.duration.map(|secs| start + Duration::from_secs(secs))
    }
}

#[derive(Debug, Args)]
struct ProduceBench {
    #[command(flatten)]
    common: Common,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the topic, if it has to be created (default 1).
    #[arg(long)]
    partitions: Option<i32>,
    /// Records per second to aim for (as kafka-producer-perf-test's --throughput); default: as fast as
    /// possible. Latency is meaningful below the maximum throughput, where queues do not build up.
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    throughput: Option<u64>,
    #[command(flatten)]
    producer: ProducerArgs,
}

#[derive(Debug, Args)]
struct ConsumeBench {
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Consume(args) => consume(args).await,
    }
}

/// Counts, bytes and latencies over the whole run and over the current report interval.
#[derive(Debug)]
struct Meter {
    verb: &'static str,
    latency_name: &'static str,
    started: Instant,
    total: Tally,
    window: Tally,
    window_started: Instant,
}

#[derive(Debug)]
struct Tally {
    records: u64,
    bytes: u64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            records: 0,
            bytes: 0,
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds"),
        }
    }

    /// `N records sent, R records/s (M MB/s)` over `elapsed`.
    fn rates(&self, verb: &str, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} records {verb}, {:.1} records/s ({:.2} MB/s)",
            self.records,
            self.records as f64 / secs,
            self.bytes as f64 / MIB / secs
        )
    }

    fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

impl Meter {
    fn new(verb: &'static str, latency_name: &'static str) -> Self {
        let now = Instant::now();
        Self {
            verb,
            latency_name,
            started: now,
            total: Tally::new(),
            window: Tally::new(),
            window_started: now,
        }
    }

    fn add(&mut self, records: u64, bytes: u64) {
        for tally in [&mut self.total, &mut self.window] {
            tally.records += records;
            tally.bytes += bytes;
        }
    }

    fn latency(&mut self, latency: Duration) {
        let us = (latency.as_micros() as u64).max(1);
        self.total.latency_us.saturating_record(us);
        self.window.latency_us.saturating_record(us);
    }

    /// Prints the progress line when a report interval has passed.
    fn tick(&mut self, now: Instant) {
        let elapsed = now - self.window_started;
        if elapsed < REPORT_INTERVAL {
            return;
        }
        let w = &self.window;
        eprintln!(
            "{}, {:.2} ms avg {}, {:.2} ms max.",
            w.rates(self.verb, elapsed),
            w.latency_us.mean() / 1000.0,
            self.latency_name,
            w.ms(1.0)
        );
        self.window.records = 0;
        self.window.bytes = 0;
        self.window.latency_us.reset();
        self.window_started = now;
    }

    fn summary(&self) -> String {
        let t = &self.total;
        format!(
            "{} in {:.2} s; {} ms: avg {:.2}, p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
            t.rates(self.verb, self.started.elapsed()),
            self.started.elapsed().as_secs_f64(),
            self.latency_name,
            t.latency_us.mean() / 1000.0,
            t.ms(0.5),
            t.ms(0.99),
            t.ms(0.999),
            t.ms(1.0)
        )
    }
}

/// A meter fed by produce acknowledgements.
#[derive(Debug)]
struct ProduceMeter {
    meter: Meter,
    record_size: u64,
}

impl OnAck for ProduceMeter {
    fn acked(&mut self, now: Instant, enqueued: &[Instant]) {
        for &at in enqueued {
            self.meter.latency(now - at);
        }
        self.meter
            .add(enqueued.len() as u64, enqueued.len() as u64 * self.record_size);
    }
}

async fn produce(args: ProduceBench) -> anyhow::Result<()> {
    let common = &args.common;
    if common.records.is_none() && common.duration.is_none() {
        bail!("give --records N or --duration SECS");
    }
    let mut router = common.bootstrap.router().await?;
    ensure_topic(&mut router, &common.topic, args.partitions).await?;
    let payload = random_payload(args.record_size);
    let meter = ProduceMeter {
        meter: Meter::new("sent", "latency"),
        record_size: args.record_size as u64,
    };
    let mut producer = Producer::new(&mut router, &common.topic, None, &args.producer, meter).await?;
    // The clock starts now, after connecting and looking up the topic.
    producer.on_ack_mut().meter = Meter::new("sent", "latency");
    let start = producer.on_ack().meter.started;
    let deadline = common.deadline(start);
    let (start_ms, records) = (now_ms(), common.records.unwrap_or(u64::MAX));
    for i in 0..records {
        let mut now = Instant::now();
        if i % RECORDS_PER_CHECK == 0 {
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            producer.on_ack_mut().meter.tick(now);
        }
        if let Some(rate) = args.throughput {
            // Record i is due i/rate seconds after the start; ahead of that, wait (taking acks).
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            if now < due {
                producer.wait_until(due).await?;
                // The record is enqueued now, not when the loop first looked at the clock.
                now = Instant::now();
            }
        }
        producer.send_lingering(now).await?;
        // The wall clock from the monotonic one: no second clock read per record.
        let timestamp_ms = start_ms + (now - start).as_millis() as i64;
        producer
            .send(None, Some(payload.clone()), Headers::new(), timestamp_ms, now)
            .await?;
    }
    producer.flush().await?;
    println!("{}", producer.on_ack().meter.summary());
    Ok(())
}

/// Creates the topic unless it exists.
async fn ensure_topic(router: &mut Router, topic: &str, partitions: Option<i32>) -> anyhow::Result<()> {
    let existing = router
        .on_any(async |client| client.topic_metadata(topic, false).await)
        .await;
    match existing {
        Ok(existing) => {
            if let Some(wanted) = partitions
                && wanted != existing.partitions.len() as i32
            {
                eprintln!(
                    "topic {topic} exists with {} partitions; using them",
                    existing.partitions.len()
                );
            }
            Ok(())
        }
        Err(e) if e.kafka_error() == Some(ResponseError::UnknownTopicOrPartition) => {
            let new_topic = NewTopic {
                name: topic.into(),
                partitions: partitions.unwrap_or(1),
                replication_factor: -1,
                configs: Vec::new(),
            };
            let created = router
                .on_any(async |client| client.create_topic(&new_topic).await)
                .await;
            match created {
                // Someone else created it meanwhile: as good.
                Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => Ok(()),
                other => Ok(other?),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `size` random capital letters, as Kafka's perf test sends.
fn random_payload(size: usize) -> Bytes {
    let mut state = now_ms() as u64 | 1;
    (0..size)
        .map(|_| {
            // xorshift64: plenty for filler bytes.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn consume(args: ConsumeBench) -> anyhow::Result<()> {
    let common = &args.common;
    let mut router = common.bootstrap.router().await?;
    let topic = &common.topic;
    let partitions = partitions(&mut router, topic, None).await?;
    let starts = router.list_offsets(topic, &partitions, OffsetSpec::Earliest).await?;
    let positions: Vec<(i32, i64)> = starts.iter().map(|s| (s.partition, s.offset.unwrap_or(0))).collect();
    let target = match common.records {
        Some(records) => records,
        None => {
            let ends = end_offsets(&mut router, topic, &partitions).await?;
            positions
                .iter()
                .zip(ends)
                .map(|((_, start), end)| (end - start).max(0) as u64)
                .sum()
        }
    };
    let options = FetchOptions {
        partition_max_bytes: FETCH_PARTITION_BYTES_MAX,
        ..FetchOptions::default()
    };
    let mut fetcher = Fetcher::new(&mut router, topic, positions, options)?;
    let mut meter = Meter::new("consumed", "fetch latency");
    let deadline = common.deadline(meter.started);
    let mut last_record_at = Instant::now();
    while meter.total.records < target {
        let asked = Instant::now();
        if deadline.is_some_and(|d| asked >= d) {
            break;
        }
        if asked - last_record_at > CONSUME_IDLE_TIMEOUT {
            bail!(
                "no records for {CONSUME_IDLE_TIMEOUT:?}: consumed {} of {target}",
                meter.total.records
            );
        }
        let fetched = fetcher.next().await?;
        let now = Instant::now();
        meter.latency(fetched.latency);
        for partition in fetched.partitions {
            // Count no further than the target, so that the summary is of exactly --records.
            let wanted = (target - meter.total.records).min(partition.records.len() as u64);
            let counted = &partition.records[..wanted as usize];
            let bytes: usize = counted.iter().map(|r| r.value.as_ref().map_or(0, Bytes::len)).sum();
            meter.add(wanted, bytes as u64);
            if !partition.records.is_empty() {
                last_record_at = now;
            }
        }
        meter.tick(now);
    }
    println!("{}", meter.summary());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_rates_and_percentiles() {
        let mut meter = Meter::new("sent", "latency");
        meter.add(1000, 100_000);
        for ms in 1..=1000 {
            meter.latency(Duration::from_micros(ms * 10));
        }
        let summary = meter.summary();
        assert!(summary.starts_with("1000 records sent, "), "{summary}");
        for part in [
            "records/s",
            "MB/s",
            "latency ms: avg 5.0",
            "p50 5.00",
            "p99 9.9",
            "p99.9 9.99",
            "max 10.0",
        ] {
            assert!(summary.contains(part), "{part} in {summary}");
        }
    }
}

//! The broker's figures on `/metrics`: what the data path records as it goes (requests, their errors and
//! latencies, connections, bytes and records in and out, waiting requests, ISR changes, log fsyncs), and
//! what is read from the replica manager and the metadata when a page is rendered (partitions, their logs,
//! leaderships, under-replicated and under-min-ISR partitions).
//!
//! Names and meanings follow Kafka's (`docs/metrics.md` lists them). A request's time is split as Kafka's
//! RequestMetrics split it: queue (its whole frame read to its handler starting: here that is the decode),
//! local (the handler, less any remote wait), remote (waiting for followers in an `acks=all` produce, or for
//! data in a long-poll fetch: see [`RemoteWait`]) and response send (encoding and writing the answer); the
//! total runs from the frame read to the response written.
//!
//! This module does not serve HTTP (`crate::http` does) and does not hold the controller's or the groups'
//! figures. Recording is cheap on the produce path: the per-API figures sit in a table indexed by API key
//! (no lock, no lookup), and a per-topic figure takes a shared lock and one map lookup per topic of a
//! request. Series of topics that no longer exist are forgotten when a page is rendered.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use strata_controller::ConfigResource;
use strata_protocol::metrics::{Counter, Exposition, Family, Gauge, Histogram, Kind};
use strata_storage::FlushObserver;
use strata_storage::batch::{BATCH_HEADER_BYTES, BatchHeader};

use crate::api::{SUPPORTED, error_codes};
use crate::broker::Broker;
use crate::replica::Role;

/// One past the largest API key a table slot is kept for (Kafka's keys run to 92 today).
const API_KEYS_MAX: usize = 128;

/// One API's figures.
#[derive(Debug, Default)]
struct ApiFigures {
    requests: Counter,
    total: Histogram,
    queue: Histogram,
    local: Histogram,
    remote: Histogram,
    send: Histogram,
}

/// Picks one of an API's histograms.
type ApiHistogram = fn(&ApiFigures) -> &Histogram;

/// Bytes and records through one topic, one way.
#[derive(Debug, Default)]
struct Flow {
    bytes: Counter,
    messages: Counter,
}

/// The broker's figures; see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    /// One per API of [`SUPPORTED`], in its order.
    apis: Vec<(ApiKey, ApiFigures)>,
    /// API key → index in `apis` + 1 (0: not supported).
    api_slots: [u8; API_KEYS_MAX],
    /// Error codes carried in responses, by (API key, error code).
    errors: Family<(i16, i16), Counter>,
    connections: Family<Arc<str>, Gauge>,
    connections_accepted: Family<Arc<str>, Counter>,
    topics_in: Family<String, Flow>,
    topics_out: Family<String, Flow>,
    replication_bytes_in: Counter,
    replication_bytes_out: Counter,
    purgatory_produce: Gauge,
    purgatory_fetch: Gauge,
    isr_shrinks: Counter,
    isr_expands: Counter,
    log_flush: Arc<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut api_slots = [0u8; API_KEYS_MAX];
        for (i, (key, _, _)) in SUPPORTED.iter().enumerate() {
            api_slots[*key as i16 as usize] = u8::try_from(i + 1).expect("fewer than 255 APIs");
        }
        Self {
            apis: SUPPORTED
                .iter()
                .map(|(key, _, _)| (*key, ApiFigures::default()))
                .collect(),
            api_slots,
            errors: Family::default(),
            connections: Family::default(),
            connections_accepted: Family::default(),
            topics_in: Family::default(),
            topics_out: Family::default(),
            replication_bytes_in: Counter::default(),
            replication_bytes_out: Counter::default(),
            purgatory_produce: Gauge::default(),
            purgatory_fetch: Gauge::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            log_flush: Arc::default(),
        }
    }
}

/// When one request reached each stage, for [`Metrics::request_done`].
#[derive(Debug, Clone, Copy)]
pub struct RequestTimes {
    /// Its whole frame was read.
    pub read: Instant,
    /// Its handler started.
    pub started: Instant,
    /// Its handler returned.
    pub handled: Instant,
    /// The part of the handler's time spent waiting on others (see [`RemoteWait`]).
    pub remote: Duration,
    /// Its response was written (`handled` when none is sent).
    pub written: Instant,
}

/// What a request's handler spent waiting on others: followers' fetches for an `acks=all` produce, new data
/// for a long-poll fetch (Kafka's remote time, the time in a delayed-operation purgatory). A handler is
/// handed one and runs its waits through [`RemoteWait::wait`]; an atomic, not a `Cell`, because the
/// connection's future must be `Send`.
#[derive(Debug, Default)]
pub struct RemoteWait(AtomicU64);

impl RemoteWait {
    /// Runs `wait`, adding its time to the request's remote time.
    pub async fn wait<F: Future>(&self, wait: F) -> F::Output {
        let started = Instant::now();
        let output = wait.await;
        self.0.fetch_add(micros(started.elapsed()), Ordering::Relaxed);
        output
    }

    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// A request counted in a purgatory gauge while it lives.
#[derive(Debug)]
pub struct Waiting<'a>(&'a Gauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// An open connection, counted in its listener's gauge while it lives.
#[derive(Debug)]
pub struct Connected(Arc<Gauge>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// Which way records went through a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Produced to this broker as the leader.
    In,
    /// Fetched by a consumer.
    Out,
}

impl Metrics {
    fn api(&self, key: ApiKey) -> Option<&ApiFigures> {
        let slot = *self.api_slots.get(key as i16 as usize)?;
        (slot > 0).then(|| &self.apis[usize::from(slot) - 1].1)
    }

    /// One request of `api_key` answered (or, with no `response`, handled without an answer): counts it, its
    /// latencies, and every error code its response carries.
    pub fn request_done(&self, api_key: ApiKey, times: RequestTimes, response: Option<&ResponseKind>) {
        let Some(api) = self.api(api_key) else { return };
        api.requests.inc();
        let handler = times.handled.saturating_duration_since(times.started);
        api.total.observe(times.written.saturating_duration_since(times.read));
        api.queue.observe(times.started.saturating_duration_since(times.read));
        api.local.observe(handler.saturating_sub(times.remote));
        api.remote.observe(times.remote);
        api.send.observe(times.written.saturating_duration_since(times.handled));
        if let Some(response) = response {
            error_codes(response, |code| {
                if code != 0 {
                    self.errors.get(&(api_key as i16, code)).inc();
                }
            });
        }
    }

    /// A connection accepted on `listener`; it counts as open until the returned value is dropped.
    pub fn connection_opened(&self, listener: &Arc<str>) -> Connected {
        self.connections_accepted.get(listener).inc();
        let open = self.connections.get(listener);
        open.add(1);
        Connected(open)
    }

    /// Records `bytes` in `records` records through `topic`.
    pub fn topic_flow(&self, direction: Direction, topic: &String, bytes: usize, records: u64) {
        let flows = match direction {
            Direction::In => &self.topics_in,
            Direction::Out => &self.topics_out,
        };
        let flow = flows.get(topic);
        flow.bytes.add(bytes as u64);
        flow.messages.add(records);
    }

    /// Bytes a follower fetched from a leader (on the follower).
    pub fn replication_in(&self, bytes: usize) {
        self.replication_bytes_in.add(bytes as u64);
    }

    /// Bytes a leader answered a follower's fetch with.
    pub fn replication_out(&self, bytes: usize) {
        self.replication_bytes_out.add(bytes as u64);
    }

    /// A produce waiting for its `acks=all`; counted until the returned value is dropped.
    pub fn produce_waiting(&self) -> Waiting<'_> {
        self.purgatory_produce.add(1);
        Waiting(&self.purgatory_produce)
    }

    /// A fetch waiting for data; counted until the returned value is dropped.
    pub fn fetch_waiting(&self) -> Waiting<'_> {
        self.purgatory_fetch.add(1);
        Waiting(&self.purgatory_fetch)
    }

    /// An ISR change this broker asked for as leader was committed: from `before` to `after`.
    pub fn isr_changed(&self, before: &[i32], after: &[i32]) {
        if before.iter().any(|id| !after.contains(id)) {
            self.isr_shrinks.inc();
        }
        if after.iter().any(|id| !before.contains(id)) {
            self.isr_expands.inc();
        }
    }

    /// What the storage engine tells of each fsync of a log.
    pub fn flush_observer(&self) -> FlushObserver {
        let histogram = self.log_flush.clone();
        FlushObserver::new(move |elapsed| histogram.observe(elapsed))
    }

    /// Renders the broker's figures onto `page`.
    pub fn render(&self, broker: &Broker, page: &mut Exposition) {
        self.render_requests(page);
        self.render_traffic(broker, page);
        render_partitions(broker, page);
        page.family(
            "strata_log_flush_latency_seconds",
            Kind::Histogram,
            "Time of each fsync of a partition's log (flush.messages, flush.ms, rolled segments).",
        )
        .histogram("strata_log_flush_latency_seconds", &[], &self.log_flush);
        page.family(
            "strata_request_bytes_in_use",
            Kind::Gauge,
            "Bytes of queued.max.request.bytes held by requests being read or handled.",
        )
        .sample("strata_request_bytes_in_use", &[], broker.limits.request_bytes_in_use());
        page.family(
            "strata_open_log_handles",
            Kind::Gauge,
            "Open segment files and index maps.",
        )
        .sample(
            "strata_open_log_handles",
            &[],
            broker.replicas.log_manager().handles().open_count(),
        );
    }

    fn render_requests(&self, page: &mut Exposition) {
        page.family(
            "strata_requests_total",
            Kind::Counter,
            "Kafka requests handled, by API.",
        );
        for (key, api) in &self.apis {
            page.sample("strata_requests_total", &[("api", api_name(*key))], api.requests.get());
        }
        page.family(
            "strata_request_errors_total",
            Kind::Counter,
            "Error codes carried in responses (each partition's, topic's or group's), by API and Kafka error name.",
        );
        for ((key, code), count) in self.errors.snapshot() {
            let api = ApiKey::try_from(key).map_or("unknown", api_name);
            page.sample(
                "strata_request_errors_total",
                &[("api", api), ("error", &error_name(code))],
                count.get(),
            );
        }
        let histograms: [(&str, &str, ApiHistogram); 5] = [
            (
                "strata_request_latency_seconds",
                "Request time from its whole frame read to its response written (Kafka's TotalTimeMs).",
                |a| &a.total,
            ),
            (
                "strata_request_queue_latency_seconds",
                "Request time from its whole frame read to its handler starting.",
                |a| &a.queue,
            ),
            (
                "strata_request_local_latency_seconds",
                "Request handler time, less the remote wait.",
                |a| &a.local,
            ),
            (
                "strata_request_remote_latency_seconds",
                "Time a request waited in delayed produce (acks=all) or delayed fetch (long poll).",
                |a| &a.remote,
            ),
            (
                "strata_response_send_latency_seconds",
                "Time to encode and write a response.",
                |a| &a.send,
            ),
        ];
        for (name, help, histogram) in histograms {
            page.family(name, Kind::Histogram, help);
            // An API's series appear with its first request: 38 APIs of 19 lines each would be mostly zeros.
            for (key, api) in self.apis.iter().filter(|(_, api)| api.requests.get() > 0) {
                page.histogram(name, &[("api", api_name(*key))], histogram(api));
            }
        }
    }

    fn render_traffic(&self, broker: &Broker, page: &mut Exposition) {
        page.family(
            "strata_connections",
            Kind::Gauge,
            "Open client connections, by listener.",
        );
        for (listener, open) in self.connections.snapshot() {
            page.sample("strata_connections", &[("listener", &listener)], open.get());
        }
        page.family(
            "strata_connections_accepted_total",
            Kind::Counter,
            "Client connections accepted, by listener.",
        );
        for (listener, accepted) in self.connections_accepted.snapshot() {
            page.sample(
                "strata_connections_accepted_total",
                &[("listener", &listener)],
                accepted.get(),
            );
        }
        // Deleted topics' series go.
        let image = broker.metadata.image();
        self.topics_in.retain(|topic| image.topic_by_name(topic).is_some());
        self.topics_out.retain(|topic| image.topic_by_name(topic).is_some());
        let flows = [
            (
                &self.topics_in,
                "strata_topic_bytes_in_total",
                "Record bytes produced to partitions this broker leads, by topic.",
                "strata_topic_messages_in_total",
                "Records produced to partitions this broker leads, by topic.",
            ),
            (
                &self.topics_out,
                "strata_topic_bytes_out_total",
                "Record bytes consumers fetched, by topic.",
                "strata_topic_messages_out_total",
                "Records consumers fetched, by topic.",
            ),
        ];
        for (family, bytes_name, bytes_help, messages_name, messages_help) in flows {
            let snapshot = family.snapshot();
            page.family(bytes_name, Kind::Counter, bytes_help);
            for (topic, flow) in &snapshot {
                page.sample(bytes_name, &[("topic", topic)], flow.bytes.get());
            }
            page.family(messages_name, Kind::Counter, messages_help);
            for (topic, flow) in &snapshot {
                page.sample(messages_name, &[("topic", topic)], flow.messages.get());
            }
        }
        page.family(
            "strata_replication_bytes_in_total",
            Kind::Counter,
            "Record bytes this broker fetched from leaders as a follower.",
        )
        .sample(
            "strata_replication_bytes_in_total",
            &[],
            self.replication_bytes_in.get(),
        );
        page.family(
            "strata_replication_bytes_out_total",
            Kind::Counter,
            "Record bytes this broker answered followers' fetches with.",
        )
        .sample(
            "strata_replication_bytes_out_total",
            &[],
            self.replication_bytes_out.get(),
        );
        page.family(
            "strata_purgatory_size",
            Kind::Gauge,
            "Requests waiting: produce for acks=all, fetch for min.bytes.",
        )
        .sample(
            "strata_purgatory_size",
            &[("operation", "produce")],
            self.purgatory_produce.get(),
        )
        .sample(
            "strata_purgatory_size",
            &[("operation", "fetch")],
            self.purgatory_fetch.get(),
        );
        page.family(
            "strata_isr_shrinks_total",
            Kind::Counter,
            "ISR shrinks this broker, as leader, had committed.",
        )
        .sample("strata_isr_shrinks_total", &[], self.isr_shrinks.get());
        page.family(
            "strata_isr_expands_total",
            Kind::Counter,
            "ISR expansions this broker, as leader, had committed.",
        )
        .sample("strata_isr_expands_total", &[], self.isr_expands.get());
    }
}

/// One hosted partition's figures, read at render time.
struct Hosted {
    topic: String,
    partition: String,
    size_bytes: u64,
    segments: usize,
    log_start_offset: u64,
    log_end_offset: u64,
    high_watermark: u64,
}

/// Picks one of a hosted partition's figures.
type PartitionFigure = fn(&Hosted) -> u64;

/// Figures read from the hosted partitions and the metadata as the page is rendered: nothing to forget when
/// a partition goes, since only those hosted now are read.
fn render_partitions(broker: &Broker, page: &mut Exposition) {
    let image = broker.metadata.image();
    let settings = broker.settings();
    let (mut leading, mut under_replicated, mut under_min_isr) = (0, 0, 0);
    let mut hosted = Vec::new();
    for partition in broker.replicas.all() {
        {
            let state = partition.state();
            if state.role == Role::Leader {
                leading += 1;
                under_replicated += usize::from(state.isr.len() < state.replicas.len());
                let topic = ConfigResource::Topic(partition.tp.topic.clone());
                let min_insync = image.configs(&topic).map_or(settings.min_insync_replicas, |configs| {
                    settings.min_insync_replicas(configs)
                });
                under_min_isr += usize::from((state.isr.len() as i64) < i64::from(min_insync));
            }
        }
        let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        hosted.push(Hosted {
            topic: partition.tp.topic.clone(),
            partition: partition.tp.partition.to_string(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark: partition.high_watermark(),
        });
    }
    hosted
        .sort_by(|a, b| (&a.topic, a.partition.len(), &a.partition).cmp(&(&b.topic, b.partition.len(), &b.partition)));
    page.family("strata_partitions", Kind::Gauge, "Partitions hosted.")
        .sample("strata_partitions", &[], hosted.len());
    page.family("strata_topics", Kind::Gauge, "Topics.")
        .sample("strata_topics", &[], image.topics().len());
    page.family("strata_log_bytes", Kind::Gauge, "Bytes in partition logs.")
        .sample(
            "strata_log_bytes",
            &[],
            hosted.iter().map(|h| h.size_bytes).sum::<u64>(),
        );
    page.family("strata_leader_partitions", Kind::Gauge, "Partitions this broker leads.")
        .sample("strata_leader_partitions", &[], leading);
    page.family(
        "strata_under_replicated_partitions",
        Kind::Gauge,
        "Led partitions whose ISR lacks some replica.",
    )
    .sample("strata_under_replicated_partitions", &[], under_replicated);
    page.family(
        "strata_under_min_isr_partitions",
        Kind::Gauge,
        "Led partitions with fewer in-sync replicas than min.insync.replicas (acks=all produces fail).",
    )
    .sample("strata_under_min_isr_partitions", &[], under_min_isr);
    let per_partition: [(&str, &str, PartitionFigure); 5] = [
        ("strata_log_size_bytes", "Bytes in the partition's log.", |h| {
            h.size_bytes
        }),
        ("strata_log_segments", "Segments of the partition's log.", |h| {
            h.segments as u64
        }),
        ("strata_log_start_offset", "The partition's log start offset.", |h| {
            h.log_start_offset
        }),
        ("strata_log_end_offset", "The partition's log end offset.", |h| {
            h.log_end_offset
        }),
        ("strata_high_watermark", "The partition's high watermark.", |h| {
            h.high_watermark
        }),
    ];
    for (name, help, value) in per_partition {
        page.family(name, Kind::Gauge, help);
        for h in &hosted {
            page.sample(name, &[("topic", &h.topic), ("partition", &h.partition)], value(h));
        }
    }
}

/// Records in the whole batches of `bytes` (a fetch answer's records): each header's record count.
pub fn record_count(mut bytes: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = BatchHeader::parse(bytes) {
        let total = header.total_bytes();
        if total < BATCH_HEADER_BYTES || total > bytes.len() {
            break;
        }
        records += u64::try_from(header.record_count).unwrap_or(0);
        bytes = &bytes[total..];
    }
    records
}

/// The API's name as the label shows it: Kafka's (`Produce`, `OffsetCommit`).
fn api_name(key: ApiKey) -> &'static str {
    // Debug of a fieldless enum is its variant name; kept as a `&'static str` through a table.
    macro_rules! names {
        ($($key:ident),* $(,)?) => {
            match key {
                $(ApiKey::$key => stringify!($key),)*
                _ => "other",
            }
        };
    }
    names!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        DescribeQuorum,
        InitProducerId,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        OffsetForLeaderEpoch,
        ShareGroupHeartbeat,
        ShareGroupDescribe,
        ShareFetch,
        ShareAcknowledge,
        ReadShareGroupState,
        WriteShareGroupState,
        DescribeShareGroupOffsets,
        AlterShareGroupOffsets,
        DeleteShareGroupOffsets,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
    )
}

/// Kafka's name of an error code (`NOT_LEADER_OR_FOLLOWER`), as its `Errors` enum spells it: the
/// `kafka-protocol` variant name in upper snake case; `UNKNOWN_<code>` for a code it does not know.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_{code}"),
        Some(error) => {
            let camel = format!("{error:?}");
            let mut name = String::with_capacity(camel.len() + 8);
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(1), "OFFSET_OUT_OF_RANGE");
        assert_eq!(error_name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_9999");
    }

    #[test]
    fn every_supported_api_has_its_name_and_slot() {
        let metrics = Metrics::default();
        for (key, _, _) in SUPPORTED {
            assert_eq!(api_name(*key), format!("{key:?}"));
            assert!(metrics.api(*key).is_some(), "{key:?}");
        }
        assert!(metrics.api(ApiKey::SaslHandshake).is_none());
    }

    #[test]
    fn isr_changes_count_shrinks_and_expansions() {
        let metrics = Metrics::default();
        metrics.isr_changed(&[1, 2, 3], &[1, 2]);
        metrics.isr_changed(&[1, 2], &[1, 2, 3]);
        metrics.isr_changed(&[1, 2], &[1, 3]);
        assert_eq!((metrics.isr_shrinks.get(), metrics.isr_expands.get()), (2, 2));
    }

    /// What the metrics add to one produce request, timed in a loop: the four clock reads of the request
    /// path, its latencies and count, the error walk of a one-partition answer, the topic's bytes and
    /// records, and the acks=all purgatory gauge. Run in release for a figure:
    /// `cargo test --release -p strata-broker --lib metrics_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn metrics_cost_per_produce_request() {
        use kafka_protocol::messages::ProduceResponse;
        use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        let metrics = Metrics::default();
        let topic = "orders".to_owned();
        let response = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![PartitionProduceResponse::default()]),
        ]));
        let rounds = 2_000_000u32;
        let started = Instant::now();
        for _ in 0..rounds {
            let read = Instant::now();
            let begun = Instant::now();
            metrics.topic_flow(Direction::In, &topic, 16_384, 160);
            let waiting = metrics.produce_waiting();
            let remote = RemoteWait::default();
            // What `RemoteWait::wait` adds around the acks=all wait.
            let wait_started = Instant::now();
            remote.0.fetch_add(micros(wait_started.elapsed()), Ordering::Relaxed);
            drop(waiting);
            let handled = Instant::now();
            let times = RequestTimes {
                read,
                started: begun,
                handled,
                remote: remote.elapsed(),
                written: Instant::now(),
            };
            metrics.request_done(ApiKey::Produce, std::hint::black_box(times), Some(&response));
        }
        let per_request = started.elapsed() / rounds;
        println!("metrics cost per produce request: {per_request:?}");
        assert_eq!(metrics.api(ApiKey::Produce).unwrap().requests.get(), u64::from(rounds));
    }

    #[test]
    fn records_are_counted_from_batch_headers() {
        use strata_storage::batch::build::{Record, batch};
        let one = batch(&[Record::default()]);
        let three = batch(&[Record::default(), Record::default(), Record::default()]);
        let both = [one.as_slice(), three.as_slice()].concat();
        assert_eq!(record_count(&both), 4);
        // A partial batch at the end is not counted.
        assert_eq!(record_count(&both[..both.len() - 1]), 1);
        assert_eq!(record_count(&[]), 0);
    }
}

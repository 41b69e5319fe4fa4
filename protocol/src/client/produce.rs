//! Produce: one batch at a time ([`Client::produce`]) or pipelined ([`ProducePipeline`]).
//!
//! Throughput on one connection comes from not waiting: while the broker appends one request's batches,
//! the next requests are already on the wire. The pipeline keeps at most `in_flight_max` requests
//! unanswered (Kafka's `max.in.flight.requests.per.connection`) and hands back each acknowledgement with a
//! caller's token (the benchmark's enqueue times, a count of records), oldest first. Produce responses are
//! small, so the broker can always write them while the client is busy writing requests.

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{Client, ClientError, IN_FLIGHT_MAX, Result, check};

/// How long the broker may take to replicate before answering (Kafka's `request.timeout.ms` default).
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// Which acknowledgement a producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// No response at all: the broker does not answer.
    None,
    /// The leader appended the records.
    Leader,
    /// Every in-sync replica has them.
    All,
}

impl Acks {
    /// Parses `0`, `1`, `all` (or `-1`).
    pub fn parse(text: &str) -> Option<Acks> {
        match text {
            "0" => Some(Acks::None),
            "1" => Some(Acks::Leader),
            "all" | "-1" => Some(Acks::All),
            _ => None,
        }
    }

    fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// One acknowledged Produce request.
#[derive(Debug)]
pub struct Acked<T> {
    pub token: T,
    /// Base offset assigned to each partition's batch, in request order; `-1` with [`Acks::None`].
    pub base_offsets: Vec<(i32, i64)>,
}

fn request(topic: &TopicName, acks: Acks, batches: impl IntoIterator<Item = (i32, Bytes)>) -> ProduceRequest {
    let partition_data = batches
        .into_iter()
        .map(|(index, records)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(records))
        })
        .collect();
    ProduceRequest::default()
        .with_acks(acks.code())
        .with_timeout_ms(PRODUCE_TIMEOUT_MS)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(partition_data),
        ])
}

/// The base offset of each partition, or the first partition's error.
fn base_offsets(response: ProduceResponse) -> Result<Vec<(i32, i64)>> {
    let mut offsets = Vec::new();
    for topic in response.responses {
        for partition in topic.partition_responses {
            check(partition.error_code, partition.error_message.as_ref(), || {
                format!("producing to {}-{}", topic.name.as_str(), partition.index)
            })?;
            offsets.push((partition.index, partition.base_offset));
        }
    }
    Ok(offsets)
}

impl Client {
    /// Sends one record batch (see [`BatchBuilder`](super::BatchBuilder)) to a partition and returns the
    /// base offset the broker gave it, or `None` with [`Acks::None`].
    pub async fn produce(&mut self, topic: &str, partition: i32, acks: Acks, batch: Bytes) -> Result<Option<i64>> {
        let topic = TopicName(StrBytes::from_string(topic.into()));
        let mut pipeline = ProducePipeline::new(self, topic, acks, 1)?;
        let acked = match pipeline.send(vec![(partition, batch)], ()).await? {
            Some(acked) => acked,
            None => pipeline.next_ack().await?.expect("one request in flight"),
        };
        Ok((acks != Acks::None).then(|| acked.base_offsets[0].1))
    }
}

/// Produce requests to one topic kept in flight on one connection. See the module documentation.
#[derive(Debug)]
pub struct ProducePipeline<'c, T> {
    client: &'c mut Client,
    topic: TopicName,
    acks: Acks,
    version: i16,
    in_flight: VecDeque<T>,
    in_flight_max: usize,
}

impl<'c, T> ProducePipeline<'c, T> {
    /// A pipeline on `client` with at most `in_flight_max` unanswered requests.
    pub fn new(client: &'c mut Client, topic: TopicName, acks: Acks, in_flight_max: usize) -> Result<Self> {
        if !(1..=IN_FLIGHT_MAX).contains(&in_flight_max) {
            return Err(ClientError::Usage(format!(
                "in-flight requests must be between 1 and {IN_FLIGHT_MAX}, not {in_flight_max}"
            )));
        }
        if client.in_flight() > 0 {
            return Err(ClientError::Usage("the client has other requests in flight".into()));
        }
        let version = client.version::<ProduceRequest>()?;
        Ok(Self {
            client,
            topic,
            acks,
            version,
            in_flight: VecDeque::with_capacity(in_flight_max),
            in_flight_max,
        })
    }

    /// Number of requests sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends one request with a batch per partition. When the pipeline is full it first waits for the
    /// oldest request and returns its acknowledgement; with [`Acks::None`] it returns this request's at
    /// once, since there is nothing to wait for.
    pub async fn send(&mut self, batches: Vec<(i32, Bytes)>, token: T) -> Result<Option<Acked<T>>> {
        let request = request(&self.topic, self.acks, batches);
        if self.acks == Acks::None {
            let partitions = request.topic_data[0]
                .partition_data
                .iter()
                .map(|p| (p.index, -1))
                .collect();
            self.client.write(&request, self.version, false).await?;
            return Ok(Some(Acked {
                token,
                base_offsets: partitions,
            }));
        }
        let oldest = if self.in_flight.len() >= self.in_flight_max {
            self.next_ack().await?
        } else {
            None
        };
        self.client.write(&request, self.version, true).await?;
        self.in_flight.push_back(token);
        Ok(oldest)
    }

    /// Waits for the oldest request in flight; `None` when nothing is in flight.
    pub async fn next_ack(&mut self) -> Result<Option<Acked<T>>> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        let response = self.client.receive::<ProduceRequest>().await?;
        let token = self.in_flight.pop_front().expect("checked above");
        Ok(Some(Acked {
            token,
            base_offsets: base_offsets(response)?,
        }))
    }
}

//! Produce: one batch at a time ([`Client::produce`]) or pipelined ([`ProducePipeline`], [`ProduceQueue`]).
//!
//! Throughput on one connection comes from not waiting: while the broker appends one request's batches,
//! the next requests are already on the wire. A pipeline keeps at most `in_flight_max` requests
//! unanswered (Kafka's `max.in.flight.requests.per.connection`) and hands back each acknowledgement with a
//! caller's token (the benchmark's enqueue times, a count of records), oldest first. Produce responses are
//! small, so the broker can always write them while the client is busy writing requests.
//!
//! [`ProduceQueue`] is the bookkeeping alone, without the connection: the caller passes the connection to
//! each call, so that a producer writing to several leaders can own one queue and one connection per leader
//! and wait on all of them at once. It answers partition by partition ([`Answered`]), so that a caller can
//! send again what a partition refused (its leader moved) without repeating what the others appended.
//! [`ProducePipeline`] is a queue bound to one borrowed connection, answering all or nothing ([`Acked`]).

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

/// One answered Produce request, partition by partition.
#[derive(Debug)]
pub struct Answered<T> {
    pub token: T,
    /// Each partition's base offset (`-1` with [`Acks::None`]) or the error the broker answered for it
    /// ([`ClientError::Kafka`]), in the order of the response.
    pub partitions: Vec<(i32, Result<i64>)>,
}

impl<T> Answered<T> {
    /// The base offsets, or the first partition's error.
    fn into_acked(self) -> Result<Acked<T>> {
        let base_offsets = self
            .partitions
            .into_iter()
            .map(|(partition, answer)| answer.map(|offset| (partition, offset)))
            .collect::<Result<_>>()?;
        Ok(Acked {
            token: self.token,
            base_offsets,
        })
    }
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

/// Each partition's base offset or error.
fn partition_answers(response: ProduceResponse) -> Vec<(i32, Result<i64>)> {
    let mut answers = Vec::new();
    for topic in response.responses {
        for partition in topic.partition_responses {
            let checked = check(partition.error_code, partition.error_message.as_ref(), || {
                format!("producing to {}-{}", topic.name.as_str(), partition.index)
            });
            answers.push((partition.index, checked.map(|()| partition.base_offset)));
        }
    }
    answers
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

/// The Produce requests to one topic in flight on one connection, which the caller passes to every call
/// (always the same one). See the module documentation.
#[derive(Debug)]
pub struct ProduceQueue<T> {
    topic: TopicName,
    acks: Acks,
    version: i16,
    in_flight: VecDeque<T>,
    in_flight_max: usize,
}

impl<T> ProduceQueue<T> {
    /// A queue for requests on `client`, at most `in_flight_max` of them unanswered. The client must have
    /// nothing else in flight, then or later: responses are matched to requests by order alone.
    pub fn new(client: &Client, topic: TopicName, acks: Acks, in_flight_max: usize) -> Result<Self> {
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
            topic,
            acks,
            version,
            in_flight: VecDeque::with_capacity(in_flight_max),
            in_flight_max,
        })
    }

    /// Number of requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether [`send`](Self::send) must wait for an answer ([`next_answer`](Self::next_answer)) first.
    pub fn is_full(&self) -> bool {
        self.in_flight.len() >= self.in_flight_max
    }

    /// Writes one request with a batch per partition, without waiting; a full queue is a usage error. With
    /// [`Acks::None`] the request is answered at once, since the broker will not answer it.
    ///
    /// When the write fails and leaves the connection unusable, the token stays with the unanswered ones
    /// ([`take_unanswered`](Self::take_unanswered)): the broker may or may not have the request.
    pub async fn send(
        &mut self,
        client: &mut Client,
        batches: Vec<(i32, Bytes)>,
        token: T,
    ) -> Result<Option<Answered<T>>> {
        if self.is_full() {
            return Err(ClientError::Usage(format!(
                "{} produce requests are already in flight",
                self.in_flight_max
            )));
        }
        let request = request(&self.topic, self.acks, batches);
        let answered = self.acks != Acks::None;
        self.in_flight.push_back(token);
        if let Err(e) = client.write(&request, self.version, answered).await {
            // Usable: nothing was written (the request did not encode), so nothing is unanswered.
            if client.is_usable() {
                self.in_flight.pop_back();
            }
            return Err(e);
        }
        if answered {
            return Ok(None);
        }
        let token = self.in_flight.pop_back().expect("pushed above");
        let partitions = request.topic_data[0]
            .partition_data
            .iter()
            .map(|p| (p.index, Ok(-1)))
            .collect();
        Ok(Some(Answered { token, partitions }))
    }

    /// Waits for the answer to the oldest request in flight; `None` when nothing is in flight. Cancel-safe:
    /// an answer is taken only once it has arrived whole.
    pub async fn next_answer(&mut self, client: &mut Client) -> Result<Option<Answered<T>>> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        let response = client.receive::<ProduceRequest>().await?;
        let token = self.in_flight.pop_front().expect("checked above");
        Ok(Some(Answered {
            token,
            partitions: partition_answers(response),
        }))
    }

    /// The tokens of every request not answered, oldest first, after the connection failed: what to send
    /// again elsewhere.
    pub fn take_unanswered(&mut self) -> Vec<T> {
        self.in_flight.drain(..).collect()
    }
}

/// Produce requests to one topic kept in flight on one connection. See the module documentation.
#[derive(Debug)]
pub struct ProducePipeline<'c, T> {
    client: &'c mut Client,
    queue: ProduceQueue<T>,
}

impl<'c, T> ProducePipeline<'c, T> {
    /// A pipeline on `client` with at most `in_flight_max` unanswered requests.
    pub fn new(client: &'c mut Client, topic: TopicName, acks: Acks, in_flight_max: usize) -> Result<Self> {
        let queue = ProduceQueue::new(client, topic, acks, in_flight_max)?;
        Ok(Self { client, queue })
    }

    /// Number of requests sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.queue.in_flight()
    }

    /// Sends one request with a batch per partition. When the pipeline is full it first waits for the
    /// oldest request and returns its acknowledgement; with [`Acks::None`] it returns this request's at
    /// once, since there is nothing to wait for.
    pub async fn send(&mut self, batches: Vec<(i32, Bytes)>, token: T) -> Result<Option<Acked<T>>> {
        let oldest = if self.queue.is_full() {
            self.next_ack().await?
        } else {
            None
        };
        if let Some(answered) = self.queue.send(self.client, batches, token).await? {
            return answered.into_acked().map(Some);
        }
        Ok(oldest)
    }

    /// Waits for the oldest request in flight; `None` when nothing is in flight.
    pub async fn next_ack(&mut self) -> Result<Option<Acked<T>>> {
        match self.queue.next_answer(self.client).await? {
            Some(answered) => answered.into_acked().map(Some),
            None => Ok(None),
        }
    }
}

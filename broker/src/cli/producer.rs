//! Batching and pipelined sending, shared by `strata produce` and `strata bench produce`.
//!
//! Records go into one open batch per partition. A batch is sent, in a Produce request of its own, when
//! the next record would not fit in `--batch-size`, when it reaches that size, or when its first record has
//! waited `--linger-ms`; up to `--max-in-flight` requests are on the wire at once. Each acknowledgement is
//! handed to an [`OnAck`] with the time each of its records was added, which is all that `produce` (a
//! count) and `bench` (latencies) need to know.
//!
//! Keyed records go to Kafka's murmur2 partition for their key; records without a key stick to one
//! partition until its batch is sent, then move to the next (Kafka's sticky partitioner), so that batches
//! fill up rather than every partition getting a sliver.

use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::partitioner::partition_for_key;
use strata_protocol::client::records::record_bytes;
use strata_protocol::client::{Acked, BatchBuilder, Client, Headers, ProducePipeline};

use super::ProducerArgs;

/// Told about every acknowledged batch.
pub trait OnAck {
    /// `enqueued` holds, for each record of the batch, when it was added; `now` is when the ack arrived.
    fn acked(&mut self, now: Instant, enqueued: &[Instant]);
}

/// The open batch of one partition.
#[derive(Debug)]
struct Open {
    builder: BatchBuilder,
    /// When each record was added, in order.
    enqueued: Vec<Instant>,
}

/// Enqueue times of each batch of one request.
type Token = Vec<Vec<Instant>>;

/// Sends records to one topic. See the module documentation.
#[derive(Debug)]
pub struct Producer<'c, A> {
    pipeline: ProducePipeline<'c, Token>,
    open: Vec<Open>,
    /// Where records without a key go; `--partition` fixes it.
    sticky: i32,
    fixed_partition: Option<i32>,
    batch_bytes_max: usize,
    linger: Duration,
    /// The earliest time an open batch's linger ends.
    linger_deadline: Option<Instant>,
    /// Enqueue-time vectors of acknowledged batches, reused so that a batch costs no new allocation.
    spare: Vec<Vec<Instant>>,
    on_ack: A,
}

impl<'c, A: OnAck> Producer<'c, A> {
    /// A producer for `topic`, which is created if the broker creates topics on first use.
    pub async fn new(
        client: &'c mut Client,
        topic: &str,
        fixed_partition: Option<i32>,
        args: &ProducerArgs,
        on_ack: A,
    ) -> anyhow::Result<Self> {
        let partitions = client.topic_metadata(topic, true).await?.partitions.len() as i32;
        if partitions == 0 {
            bail!("topic {topic} has no partitions");
        }
        if let Some(p) = fixed_partition
            && !(0..partitions).contains(&p)
        {
            bail!("topic {topic} has no partition {p} (it has {partitions})");
        }
        let topic = TopicName(StrBytes::from_string(topic.into()));
        let pipeline = ProducePipeline::new(client, topic, args.acks, args.max_in_flight)?;
        let open = (0..partitions)
            .map(|_| Open {
                builder: BatchBuilder::new(args.compression),
                enqueued: Vec::new(),
            })
            .collect();
        Ok(Self {
            pipeline,
            open,
            sticky: fixed_partition.unwrap_or(0),
            fixed_partition,
            batch_bytes_max: args.batch_size,
            linger: args.linger(),
            linger_deadline: None,
            spare: Vec::new(),
            on_ack,
        })
    }

    pub fn on_ack(&self) -> &A {
        &self.on_ack
    }

    pub fn on_ack_mut(&mut self) -> &mut A {
        &mut self.on_ack
    }

    /// When the first lingering batch must go, if any batch is open.
    pub fn linger_deadline(&self) -> Option<Instant> {
        self.linger_deadline
    }

    /// Adds a record, added at `now`; sends whatever batch that fills.
    pub async fn send(
        &mut self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: Headers,
        timestamp_ms: i64,
        now: Instant,
    ) -> anyhow::Result<()> {
        let partition = self.partition_for(key.as_deref());
        let size = record_bytes(key.as_deref(), value.as_deref(), &headers);
        if self.open[partition as usize]
            .builder
            .would_exceed(size, self.batch_bytes_max)
        {
            self.send_batches(&[partition]).await?;
        }
        let open = &mut self.open[partition as usize];
        if open.builder.is_empty() {
            let deadline = now + self.linger;
            self.linger_deadline = Some(self.linger_deadline.map_or(deadline, |d| d.min(deadline)));
        }
        open.builder.push(key, value, headers, timestamp_ms);
        open.enqueued.push(now);
        if open.builder.size_bytes() >= self.batch_bytes_max {
            self.send_batches(&[partition]).await?;
        }
        Ok(())
    }

    /// Sends every batch whose linger has ended by `now`.
    pub async fn send_lingering(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.linger_deadline.is_none_or(|deadline| deadline > now) {
            return Ok(());
        }
        let due: Vec<i32> = (0..self.open.len() as i32)
            .filter(|&p| {
                let open = &self.open[p as usize];
                open.enqueued.first().is_some_and(|first| *first + self.linger <= now)
            })
            .collect();
        self.send_batches(&due).await
    }

    /// Waits until `until`, meanwhile sending batches whose linger ends and taking acknowledgements as they
    /// arrive, so that a paced producer measures latency when the broker answers, not when it next looks.
    pub async fn wait_until(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            let now = Instant::now();
            self.send_lingering(now).await?;
            if now >= until {
                return Ok(());
            }
            let wake = self.linger_deadline.map_or(until, |linger| linger.min(until));
            if self.pipeline.in_flight() == 0 {
                tokio::time::sleep_until(wake.into()).await;
                continue;
            }
            tokio::select! {
                // Cancel-safe: a response is taken off the queue only once it has arrived whole.
                acked = self.pipeline.next_ack() => {
                    if let Some(acked) = acked? {
                        self.handle_ack(acked);
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Sends every open batch and waits until everything sent is acknowledged.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let all: Vec<i32> = (0..self.open.len() as i32).collect();
        self.send_batches(&all).await?;
        while let Some(acked) = self.pipeline.next_ack().await? {
            self.handle_ack(acked);
        }
        Ok(())
    }

    fn partition_for(&self, key: Option<&[u8]>) -> i32 {
        match (self.fixed_partition, key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, self.open.len() as i32),
            (None, None) => self.sticky,
        }
    }

    /// Sends the non-empty batches of `partitions` in one request.
    async fn send_batches(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        let mut batches = Vec::with_capacity(partitions.len());
        let mut token = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let open = &mut self.open[p as usize];
            if open.builder.is_empty() {
                continue;
            }
            batches.push((p, open.builder.build()?));
            let spare = self.spare.pop().unwrap_or_default();
            token.push(std::mem::replace(&mut open.enqueued, spare));
            if p == self.sticky && self.fixed_partition.is_none() {
                self.sticky = (self.sticky + 1) % self.open.len() as i32;
            }
        }
        self.linger_deadline = self
            .open
            .iter()
            .filter_map(|open| open.enqueued.first())
            .min()
            .map(|first| *first + self.linger);
        if batches.is_empty() {
            return Ok(());
        }
        if let Some(acked) = self.pipeline.send(batches, token).await? {
            self.handle_ack(acked);
        }
        Ok(())
    }

    fn handle_ack(&mut self, acked: Acked<Token>) {
        let now = Instant::now();
        for mut enqueued in acked.token {
            self.on_ack.acked(now, &enqueued);
            enqueued.clear();
            self.spare.push(enqueued);
        }
    }
}

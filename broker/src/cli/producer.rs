//! Batching and pipelined sending to each partition's leader, shared by `strata produce` and
//! `strata bench produce`.
//!
//! Records go into one open batch per partition. A batch is sent when the next record would not fit in
//! `--batch-size`, when it reaches that size, or when its first record has waited `--linger-ms`. The
//! batches due at once go in one Produce request per leader; each leader has its own connection, borrowed
//! from the [`Router`], with up to `--max-in-flight` requests on the wire. Each acknowledgement is handed to
//! an [`OnAck`] with the time each of its records was added, which is all that `produce` (a count) and
//! `bench` (latencies) need to know. Against one broker this is one connection and one pipeline, and the
//! cost per record is what it was before leaders were looked up: routing happens per batch.
//!
//! Keyed records go to Kafka's murmur2 partition for their key; records without a key stick to one
//! partition until its batch is sent, then move to the next (Kafka's sticky partitioner), so that batches
//! fill up rather than every partition getting a sliver.
//!
//! **When a leader moves.** A batch that its leader refuses with a leader [`Fault`] (it no longer leads
//! the partition, the partition has no leader, or the broker has not yet heard of a topic just created),
//! or whose connection fails, is kept and sent again once the metadata shows the partition's leader, looked
//! up at most every [`RETRY_BACKOFF`]. The partition's later batches wait behind it, and before batches go
//! again every request in flight is answered, so that a partition's batches are sent again in the order
//! they were first sent. A batch still unacknowledged after the router's retry timeout fails the command
//! with the last error. As with Kafka's producer without idempotence, a batch whose connection failed after
//! it was written may have been appended, and is then appended twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::partitioner::partition_for_key;
use strata_protocol::client::records::record_bytes;
use strata_protocol::client::router::{Fault, RETRY_BACKOFF};
use strata_protocol::client::{
    Acks, Answered, BatchBuilder, Client, ClientError, Headers, IN_FLIGHT_MAX, ProduceQueue, Router,
};

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

/// A batch on its way, kept until acknowledged so that it can be sent again if its leader does not take it.
#[derive(Debug)]
struct Sent {
    /// Batches are numbered as they are built: the order in which a partition's batches must be appended.
    seq: u64,
    partition: i32,
    batch: Bytes,
    /// When each record was added, in order.
    enqueued: Vec<Instant>,
    /// When it was first refused, lost, or held for want of a leader.
    failed_at: Option<Instant>,
}

/// The batches of one request.
type Token = Vec<Sent>;

/// The connection to one leader, and the requests in flight on it.
#[derive(Debug)]
struct Leader {
    client: Client,
    queue: ProduceQueue<Token>,
}

/// An answer, or the failure of a connection, from one leader.
type FromLeader = (i32, Result<Option<Answered<Token>>, ClientError>);

/// Sends records to one topic. See the module documentation.
#[derive(Debug)]
pub struct Producer<'r, A> {
    router: &'r mut Router,
    topic: String,
    topic_name: TopicName,
    acks: Acks,
    in_flight_max: usize,
    /// Each partition's leader as last seen; `None` while none is known (its batches wait in `retries`).
    leaders: Vec<Option<i32>>,
    /// By leader id.
    senders: BTreeMap<i32, Leader>,
    /// Batches to send again once their partitions' leaders are known.
    retries: Vec<Sent>,
    /// Why a batch last had to wait: the error when waiting runs out.
    retry_error: Option<ClientError>,
    /// When the leaders may be looked up again.
    next_lookup: Instant,
    next_seq: u64,
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

impl<'r, A: OnAck> Producer<'r, A> {
    /// A producer for `topic`, which is created if the broker creates topics on first use.
    pub async fn new(
        router: &'r mut Router,
        topic: &str,
        fixed_partition: Option<i32>,
        args: &ProducerArgs,
        on_ack: A,
    ) -> anyhow::Result<Self> {
        if !(1..=IN_FLIGHT_MAX).contains(&args.max_in_flight) {
            bail!(
                "in-flight requests must be between 1 and {IN_FLIGHT_MAX}, not {}",
                args.max_in_flight
            );
        }
        let partitions = router.topic(topic, true).await?.partitions.len() as i32;
        if partitions == 0 {
            bail!("topic {topic} has no partitions");
        }
        if let Some(p) = fixed_partition
            && !(0..partitions).contains(&p)
        {
            bail!("topic {topic} has no partition {p} (it has {partitions})");
        }
        let leaders = (0..partitions)
            .map(|p| router.leader(topic, p))
            .collect::<Result<Vec<_>, _>>()?;
        let open = (0..partitions)
            .map(|_| Open {
                builder: BatchBuilder::new(args.compression),
                enqueued: Vec::new(),
            })
            .collect();
        Ok(Self {
            router,
            topic: topic.to_owned(),
            topic_name: TopicName(StrBytes::from_string(topic.into())),
            acks: args.acks,
            in_flight_max: args.max_in_flight,
            leaders,
            senders: BTreeMap::new(),
            retries: Vec::new(),
            retry_error: None,
            next_lookup: Instant::now(),
            next_seq: 0,
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
            self.resend(false).await?;
            if now >= until {
                return Ok(());
            }
            let mut wake = self.linger_deadline.map_or(until, |linger| linger.min(until));
            if !self.retries.is_empty() {
                wake = wake.min(self.next_lookup);
            }
            if let Some((leader, answered)) = self.next_answer(wake).await {
                self.take_answer(leader, answered)?;
            }
        }
    }

    /// Sends every open batch and waits until everything sent is acknowledged.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        let all: Vec<i32> = (0..self.open.len() as i32).collect();
        self.send_batches(&all).await?;
        loop {
            self.drain().await?;
            if self.retries.is_empty() {
                return Ok(());
            }
            self.resend(true).await?;
        }
    }

    fn partition_for(&self, key: Option<&[u8]>) -> i32 {
        match (self.fixed_partition, key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, self.open.len() as i32),
            (None, None) => self.sticky,
        }
    }

    /// Sends the non-empty batches of `partitions`, in one request per leader.
    async fn send_batches(&mut self, partitions: &[i32]) -> anyhow::Result<()> {
        if !self.retries.is_empty() {
            self.resend(false).await?;
        }
        let mut requests: Vec<(i32, Token)> = Vec::with_capacity(1);
        let now = Instant::now();
        for &p in partitions {
            let open = &mut self.open[p as usize];
            if open.builder.is_empty() {
                continue;
            }
            let batch = open.builder.build()?;
            let spare = self.spare.pop().unwrap_or_default();
            let sent = Sent {
                seq: self.next_seq,
                partition: p,
                batch,
                enqueued: std::mem::replace(&mut open.enqueued, spare),
                failed_at: None,
            };
            self.next_seq += 1;
            if p == self.sticky && self.fixed_partition.is_none() {
                self.sticky = (self.sticky + 1) % self.open.len() as i32;
            }
            match self.leaders[p as usize] {
                None => self.retry_later(sent, now),
                Some(leader) => match requests.iter_mut().find(|(l, _)| *l == leader) {
                    Some((_, token)) => token.push(sent),
                    None => requests.push((leader, vec![sent])),
                },
            }
        }
        self.linger_deadline = self
            .open
            .iter()
            .filter_map(|open| open.enqueued.first())
            .min()
            .map(|first| *first + self.linger);
        for (leader, token) in requests {
            self.send_to(leader, token).await?;
        }
        Ok(())
    }

    /// Sends one request to `leader`, first taking the oldest answer when its pipeline is full.
    async fn send_to(&mut self, leader: i32, token: Token) -> anyhow::Result<()> {
        if !self.senders.contains_key(&leader) {
            match self.router.take(leader).await {
                Ok(client) => {
                    let queue = ProduceQueue::new(&client, self.topic_name.clone(), self.acks, self.in_flight_max)?;
                    self.senders.insert(leader, Leader { client, queue });
                }
                Err(e) if Fault::of(&e).is_some() => {
                    self.lost(leader, e, token);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let sender = self.senders.get_mut(&leader).expect("made above");
        if sender.queue.is_full() {
            let answered = sender.queue.next_answer(&mut sender.client).await;
            self.take_answer(leader, answered)?;
        }
        let Some(sender) = self.senders.get_mut(&leader) else {
            // The connection failed meanwhile: these go again with the others it had.
            let now = Instant::now();
            for sent in token {
                self.retry_later(sent, now);
            }
            return Ok(());
        };
        let batches = token.iter().map(|s| (s.partition, s.batch.clone())).collect();
        let answered = sender.queue.send(&mut sender.client, batches, token).await;
        self.take_answer(leader, answered)
    }

    /// Waits until `wake` for an answer from any leader with requests in flight.
    async fn next_answer(&mut self, wake: Instant) -> Option<FromLeader> {
        let waiting: Vec<_> = self
            .senders
            .iter_mut()
            .filter(|(_, sender)| sender.queue.in_flight() > 0)
            .map(|(&leader, sender)| {
                Box::pin(async move { (leader, sender.queue.next_answer(&mut sender.client).await) })
            })
            .collect();
        if waiting.is_empty() {
            tokio::time::sleep_until(wake.into()).await;
            return None;
        }
        tokio::select! {
            // Cancel-safe: an answer is taken off a queue only once it has arrived whole.
            (answered, _, _) = select_all(waiting) => Some(answered),
            () = tokio::time::sleep_until(wake.into()) => None,
        }
    }

    /// Takes every answer still to come.
    async fn drain(&mut self) -> anyhow::Result<()> {
        let leaders: Vec<i32> = self.senders.keys().copied().collect();
        for leader in leaders {
            while let Some(sender) = self.senders.get_mut(&leader)
                && sender.queue.in_flight() > 0
            {
                let answered = sender.queue.next_answer(&mut sender.client).await;
                self.take_answer(leader, answered)?;
            }
        }
        Ok(())
    }

    fn take_answer(
        &mut self,
        leader: i32,
        answered: Result<Option<Answered<Token>>, ClientError>,
    ) -> anyhow::Result<()> {
        match answered {
            Ok(Some(answered)) => self.handle_answer(answered),
            Ok(None) => Ok(()),
            Err(e) if Fault::of(&e) == Some(Fault::Connection) => {
                self.lost(leader, e, Vec::new());
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn handle_answer(&mut self, answered: Answered<Token>) -> anyhow::Result<()> {
        let now = Instant::now();
        let mut answers = answered.partitions;
        for sent in answered.token {
            let answer = answers
                .iter()
                .position(|(p, _)| *p == sent.partition)
                .map(|i| answers.swap_remove(i).1);
            match answer {
                Some(Ok(_)) => {
                    self.on_ack.acked(now, &sent.enqueued);
                    let mut enqueued = sent.enqueued;
                    enqueued.clear();
                    self.spare.push(enqueued);
                }
                Some(Err(e)) if Fault::of(&e) == Some(Fault::Leader) => {
                    self.retry_error = Some(e);
                    self.retry_later(sent, now);
                }
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the broker did not answer for {}-{}", self.topic, sent.partition),
            }
        }
        Ok(())
    }

    /// The connection to `leader` failed, or could not be made: every batch it had not answered, and
    /// `token`, go again once the leaders are looked up.
    fn lost(&mut self, leader: i32, error: ClientError, token: Token) {
        let now = Instant::now();
        let unanswered = match self.senders.remove(&leader) {
            Some(mut sender) => sender.queue.take_unanswered(),
            None => Vec::new(),
        };
        for sent in unanswered.into_iter().flatten().chain(token) {
            self.retry_later(sent, now);
        }
        for known in &mut self.leaders {
            if *known == Some(leader) {
                *known = None;
            }
        }
        self.retry_error = Some(error);
    }

    /// Holds `sent` until its partition's leader is looked up again; the partition's next batches wait
    /// behind it.
    fn retry_later(&mut self, mut sent: Sent, now: Instant) {
        sent.failed_at.get_or_insert(now);
        self.leaders[sent.partition as usize] = None;
        self.retries.push(sent);
    }

    /// Looks the leaders up again and sends the held batches to them, when [`RETRY_BACKOFF`] has passed
    /// since the last look (with `wait`, waiting for that). Fails once a batch has waited longer than the
    /// router's retry timeout.
    async fn resend(&mut self, wait: bool) -> anyhow::Result<()> {
        if self.retries.is_empty() {
            return Ok(());
        }
        if Instant::now() < self.next_lookup {
            if !wait {
                return Ok(());
            }
            tokio::time::sleep_until(self.next_lookup.into()).await;
        }
        // A partition's batches still in flight may be refused too: all of them go again, in order.
        self.drain().await?;
        let now = Instant::now();
        let oldest = self.retries.iter().filter_map(|s| s.failed_at).min();
        if oldest.is_some_and(|oldest| now - oldest > self.router.retry_timeout()) {
            return Err(match self.retry_error.take() {
                Some(e) => e.into(),
                None => anyhow!(
                    "no leader for topic {} within {:?}",
                    self.topic,
                    self.router.retry_timeout()
                ),
            });
        }
        self.router.refresh().await?;
        self.next_lookup = Instant::now() + RETRY_BACKOFF;
        for (p, leader) in self.leaders.iter_mut().enumerate() {
            *leader = self.router.leader(&self.topic, p as i32)?;
        }
        let mut held = std::mem::take(&mut self.retries);
        held.sort_by_key(|s| s.seq);
        // A request carries one batch per partition: a partition's batches go in successive requests.
        while !held.is_empty() {
            let mut requests: Vec<(i32, Token)> = Vec::new();
            let mut later = Vec::new();
            let mut taken = vec![false; self.open.len()];
            for sent in held {
                let p = sent.partition as usize;
                match self.leaders[p] {
                    None => self.retries.push(sent),
                    Some(_) if taken[p] => later.push(sent),
                    Some(leader) => {
                        taken[p] = true;
                        match requests.iter_mut().find(|(l, _)| *l == leader) {
                            Some((_, token)) => token.push(sent),
                            None => requests.push((leader, vec![sent])),
                        }
                    }
                }
            }
            for (leader, token) in requests {
                self.send_to(leader, token).await?;
            }
            held = later;
        }
        Ok(())
    }
}

impl<A> Drop for Producer<'_, A> {
    /// Gives the leaders' connections back to the router, for whatever the command does next.
    fn drop(&mut self) {
        for (leader, sender) in std::mem::take(&mut self.senders) {
            self.router.put(leader, sender.client);
        }
    }
}

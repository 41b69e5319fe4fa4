//! Fetching one topic's partitions from their leaders, shared by `strata consume` and `strata bench consume`.
//!
//! The partitions being read are grouped by leader. Each leader has at most one Fetch in flight, naming all
//! of its partitions that are not in another, so that a partition's records arrive in offset order; the
//! fetches of different leaders are in flight at once, each owning its connection (borrowed from the
//! [`Router`]), and [`Fetcher::next`] returns whichever is answered first. Against one broker that is one
//! fetch at a time over the bootstrap connection, as before leaders were looked up.
//!
//! A partition that its leader refuses with a leader [`Fault`] (the leader moved, there is none yet, or the
//! broker has not yet heard of the topic), or whose leader's connection fails, waits until the metadata
//! shows its leader, looked up at most every [`RETRY_BACKOFF`]; the other partitions are read meanwhile.
//! One that has not been fetched successfully for the router's retry timeout since it was first refused
//! fails [`Fetcher::next`] with the last error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use strata_protocol::client::router::{Fault, RETRY_BACKOFF};
use strata_protocol::client::{Client, ClientError, FetchOptions, FetchedPartition, Router};

/// What one fetch returned.
#[derive(Debug)]
pub struct Fetched {
    /// The partitions still being read that the leader answered, each with the records at or after its
    /// position.
    pub partitions: Vec<FetchedPartition>,
    /// From sending the request to its answer.
    pub latency: Duration,
}

/// What a leader answered for each partition of a fetch.
type Answers = Vec<(i32, Result<FetchedPartition, ClientError>)>;

/// A fetch that ended: its leader, connection, positions, when it was sent and what came back.
struct Done {
    leader: i32,
    client: Client,
    positions: Vec<(i32, i64)>,
    asked: Instant,
    answer: Result<Answers, ClientError>,
}

/// Reads partitions of one topic from their leaders. See the module documentation.
#[allow(missing_debug_implementations)] // the fetches in flight are futures
pub struct Fetcher<'r> {
    router: &'r mut Router,
    topic: String,
    options: FetchOptions,
    /// The partitions being read, and where each reads next.
    positions: BTreeMap<i32, i64>,
    /// Each partition's leader as last seen; `None` while none is known.
    leaders: BTreeMap<i32, Option<i32>>,
    /// Partitions in a fetch in flight.
    busy: BTreeSet<i32>,
    /// Leaders with a fetch in flight.
    fetching: BTreeSet<i32>,
    /// Partitions refused or lost and not fetched since, with when that first happened.
    failing_since: BTreeMap<i32, Instant>,
    /// Why a partition last failed: the error when waiting runs out.
    failure: Option<ClientError>,
    /// When the leaders may be looked up again.
    next_lookup: Instant,
    in_flight: FuturesUnordered<LocalBoxFuture<'static, Done>>,
}

impl<'r> Fetcher<'r> {
    /// Reads `topic`, which the router has looked up, from `positions` (`(partition, offset)`).
    pub fn new(
        router: &'r mut Router,
        topic: &str,
        positions: impl IntoIterator<Item = (i32, i64)>,
        options: FetchOptions,
    ) -> anyhow::Result<Self> {
        let positions: BTreeMap<i32, i64> = positions.into_iter().collect();
        let leaders: BTreeMap<i32, Option<i32>> = positions
            .keys()
            .map(|&p| Ok((p, router.leader(topic, p)?)))
            .collect::<Result<_, ClientError>>()?;
        let now = Instant::now();
        // A partition without a leader now waits for one as long as a refused one would.
        let failing_since = leaders
            .iter()
            .filter(|(_, leader)| leader.is_none())
            .map(|(&p, _)| (p, now))
            .collect();
        Ok(Self {
            router,
            topic: topic.to_owned(),
            options,
            positions,
            leaders,
            busy: BTreeSet::new(),
            fetching: BTreeSet::new(),
            failing_since,
            failure: None,
            next_lookup: now,
            in_flight: FuturesUnordered::new(),
        })
    }

    /// Stops reading `partition`: what a fetch in flight brings of it is dropped.
    pub fn stop(&mut self, partition: i32) {
        self.positions.remove(&partition);
        self.failing_since.remove(&partition);
    }

    /// The next fetch to be answered. With nothing left to read, an empty one.
    pub async fn next(&mut self) -> anyhow::Result<Fetched> {
        loop {
            if self.positions.is_empty() {
                return Ok(Fetched {
                    partitions: Vec::new(),
                    latency: Duration::ZERO,
                });
            }
            let waiting = self.leaders.values().any(Option::is_none);
            if waiting && Instant::now() >= self.next_lookup {
                self.look_up_leaders().await?;
            }
            self.start_fetches().await?;
            let waiting = self.leaders.values().any(Option::is_none);
            let done = if self.in_flight.is_empty() {
                // Every partition waits for a leader.
                tokio::time::sleep_until(self.next_lookup.into()).await;
                continue;
            } else if waiting {
                tokio::select! {
                    done = self.in_flight.next() => done.expect("not empty"),
                    () = tokio::time::sleep_until(self.next_lookup.into()) => continue,
                }
            } else {
                self.in_flight.next().await.expect("not empty")
            };
            if let Some(fetched) = self.finish(done)? {
                return Ok(fetched);
            }
        }
    }

    /// Sends a fetch to each leader that has none in flight, for its partitions that are in none.
    async fn start_fetches(&mut self) -> anyhow::Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (&p, &offset) in &self.positions {
            if let Some(Some(leader)) = self.leaders.get(&p)
                && !self.busy.contains(&p)
                && !self.fetching.contains(leader)
            {
                by_leader.entry(*leader).or_default().push((p, offset));
            }
        }
        for (leader, positions) in by_leader {
            let mut client = match self.router.take(leader).await {
                Ok(client) => client,
                Err(e) if Fault::of(&e).is_some() => {
                    for (p, _) in positions {
                        self.fail(p, Instant::now());
                    }
                    self.failure = Some(e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.busy.extend(positions.iter().map(|(p, _)| *p));
            self.fetching.insert(leader);
            let topic = self.topic.clone();
            let options = self.options.clone();
            self.in_flight.push(Box::pin(async move {
                let asked = Instant::now();
                let answer = client.fetch_partitions(&topic, &positions, &options).await;
                Done {
                    leader,
                    client,
                    positions,
                    asked,
                    answer,
                }
            }));
        }
        Ok(())
    }

    /// Takes a fetch's answer: moves its partitions on, or marks those refused; `None` when none was read.
    fn finish(&mut self, done: Done) -> anyhow::Result<Option<Fetched>> {
        let latency = done.asked.elapsed();
        let now = Instant::now();
        self.fetching.remove(&done.leader);
        for (p, _) in &done.positions {
            self.busy.remove(p);
        }
        let answers = match done.answer {
            Ok(answers) => {
                self.router.put(done.leader, done.client);
                answers
            }
            Err(e) if Fault::of(&e) == Some(Fault::Connection) => {
                for (p, _) in done.positions {
                    self.fail(p, now);
                }
                self.failure = Some(e);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let mut partitions = Vec::with_capacity(answers.len());
        let mut refused = false;
        for (p, answer) in answers {
            if !self.positions.contains_key(&p) {
                continue;
            }
            match answer {
                Ok(fetched) => {
                    self.positions.insert(p, fetched.next_offset);
                    self.failing_since.remove(&p);
                    partitions.push(fetched);
                }
                Err(e) if Fault::of(&e) == Some(Fault::Leader) => {
                    self.fail(p, now);
                    self.failure = Some(e);
                    refused = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if partitions.is_empty() && refused {
            return Ok(None);
        }
        Ok(Some(Fetched { partitions, latency }))
    }

    /// `partition` waits for its leader to be looked up again.
    fn fail(&mut self, partition: i32, now: Instant) {
        if self.positions.contains_key(&partition) {
            self.leaders.insert(partition, None);
            self.failing_since.entry(partition).or_insert(now);
        }
    }

    /// Looks the leaders up again; fails when a partition has been failing for longer than the router's
    /// retry timeout.
    async fn look_up_leaders(&mut self) -> anyhow::Result<()> {
        let timeout = self.router.retry_timeout();
        if let Some((&p, _)) = self.failing_since.iter().find(|(_, since)| since.elapsed() > timeout) {
            return Err(match self.failure.take() {
                Some(e) => e.into(),
                None => anyhow!("no leader for {}-{p} within {timeout:?}", self.topic),
            });
        }
        self.router.refresh().await?;
        self.next_lookup = Instant::now() + RETRY_BACKOFF;
        for (&p, leader) in &mut self.leaders {
            *leader = self.router.leader(&self.topic, p)?;
        }
        Ok(())
    }
}

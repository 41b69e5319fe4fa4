//! A cluster through its bootstrap broker: which broker to send each request to, a connection per broker,
//! and retries when leaders and coordinators move. What Kafka's clients keep in their `Metadata` and
//! `NetworkClient`, for tools that run one command and exit.
//!
//! [`Router::connect`] connects to the first bootstrap address that answers (`host:port`, or several
//! separated by commas) and asks it for the live brokers (Metadata). Connections to the others are made on
//! first use and kept, one per broker. The bootstrap connection becomes the connection of the broker it
//! reached, found by address (the one the broker advertises, or what that resolves to; with one live broker,
//! that broker), so that against a single node there is one connection, as with a plain [`Client`].
//!
//! - **Leaders.** [`Router::topic`] looks a topic up and remembers its partitions; [`Router::leader`]
//!   answers from that; [`Router::refresh`] asks again for every topic looked up.
//! - **Coordinators.** [`Router::coordinator`] asks FindCoordinator and remembers the answer per group.
//! - **Anything else** (topics, configs, the cluster) goes to any broker: [`Router::on_any`].
//!
//! **When they move.** A request to a broker that no longer leads a partition is answered
//! NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE while the partition has no leader, and
//! UNKNOWN_TOPIC_OR_PARTITION by a broker that has not yet heard of a topic just created; one to a broker that
//! does not coordinate a group NOT_COORDINATOR (COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS
//! while it is being elected or loaded); or the connection breaks. [`Fault`] sorts errors into these. The
//! caller then forgets what it knew ([`Router::refresh`], [`Router::forget`]), waits [`RETRY_BACKOFF`] and
//! tries again, until a deadline ([`Retry`], [`Router::retry_timeout`]); past it, the last error is the
//! answer. A topic that the refreshed metadata no longer has ends the retries at once ([`Router::leader`]
//! fails). [`Router::list_offsets`], [`Router::with_coordinator`], [`Router::list_groups`] and
//! [`Router::on_any`] retry by themselves. Producers and consumers, which keep requests in flight to
//! several leaders at once, borrow connections ([`Router::take`], [`Router::put`]) and use the same pieces.
//!
//! Metadata and FindCoordinator go over an idle connection: one with nothing in flight, the bootstrap
//! connection first. When every connection is lent out or busy, a new one is made to a bootstrap address
//! (then to any known broker) and kept for them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use super::admin::{ListedGroup, ListedOffset, Metadata, OffsetSpec, TopicMetadata};
use super::{Client, ClientError, ClientOptions, Result};

/// How long to wait before trying again after a [`Fault`] (Kafka's `retry.backoff.ms`).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long a request may keep being retried, by default: room for a broker's session to expire and its
/// partitions to get new leaders (`broker.session.timeout.ms` is 9 s by default).
pub const RETRY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// A failure that another attempt, after looking again where to send, may not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The partition's leader is elsewhere, not elected yet, or has not heard of the topic yet.
    Leader,
    /// The group's coordinator is elsewhere, not elected yet, or still loading.
    Coordinator,
    /// The connection failed or could not be made.
    Connection,
}

impl Fault {
    /// The fault `error` is, if it is one.
    pub fn of(error: &ClientError) -> Option<Fault> {
        match error {
            ClientError::Kafka { error, .. } => match error {
                ResponseError::NotLeaderOrFollower
                | ResponseError::LeaderNotAvailable
                | ResponseError::UnknownTopicOrPartition => Some(Fault::Leader),
                ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress => Some(Fault::Coordinator),
                _ => None,
            },
            ClientError::Connect { .. }
            | ClientError::Io { .. }
            | ClientError::Closed { .. }
            | ClientError::Timeout { .. }
            | ClientError::Broken { .. } => Some(Fault::Connection),
            _ => None,
        }
    }
}

/// The deadline of one operation's attempts.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    deadline: Instant,
}

impl Retry {
    pub fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
        }
    }

    /// Waits [`RETRY_BACKOFF`] before the next attempt; gives `error` back instead when that would pass the
    /// deadline.
    pub async fn wait(&self, error: ClientError) -> Result<()> {
        if Instant::now() + RETRY_BACKOFF > self.deadline {
            return Err(error);
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
        Ok(())
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Connects to the first of `bootstrap` (`host:port`, or several separated by commas) that answers; the
/// error is the last address's.
pub async fn connect_bootstrap(bootstrap: &str, options: &ClientOptions) -> Result<Client> {
    connect_first(&split_bootstrap(bootstrap)?, options).await
}

fn split_bootstrap(bootstrap: &str) -> Result<Vec<String>> {
    let addrs: Vec<String> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addrs.is_empty() {
        return Err(ClientError::Usage(format!("`{bootstrap}` names no broker")));
    }
    Ok(addrs)
}

async fn connect_first(addrs: &[String], options: &ClientOptions) -> Result<Client> {
    let mut last_error = None;
    for addr in addrs {
        match Client::connect_with(addr, options.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| ClientError::Usage("no address to connect to".into())))
}

/// `host:port`, with brackets around an IPv6 host.
fn address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where an idle connection for Metadata and FindCoordinator is.
#[derive(Debug, Clone, Copy)]
enum Idle {
    Spare,
    Broker(i32),
}

/// A cluster seen through its bootstrap broker. See the module documentation.
#[derive(Debug)]
pub struct Router {
    bootstrap: Vec<String>,
    options: ClientOptions,
    retry_timeout: Duration,
    /// The live brokers' addresses by node id, from the latest Metadata (and FindCoordinator).
    brokers: BTreeMap<i32, String>,
    /// The broker the bootstrap connection reached, when it was recognized.
    bootstrap_node: Option<i32>,
    /// Connections by node id: missing until first used, and while lent out.
    connections: HashMap<i32, Client>,
    /// A connection that is no known broker's (yet), for Metadata and FindCoordinator.
    spare: Option<Client>,
    /// Topics looked up, with their partitions' leaders; a topic gone since has its error set.
    topics: HashMap<String, TopicMetadata>,
    /// Coordinators found, by group.
    coordinators: HashMap<String, i32>,
}

impl Router {
    /// Connects to the first bootstrap address that answers and learns the live brokers.
    pub async fn connect(bootstrap: &str, options: ClientOptions) -> Result<Router> {
        let bootstrap = split_bootstrap(bootstrap)?;
        let client = connect_first(&bootstrap, &options).await?;
        let mut router = Router {
            bootstrap,
            options,
            retry_timeout: RETRY_TIMEOUT_DEFAULT,
            brokers: BTreeMap::new(),
            bootstrap_node: None,
            connections: HashMap::new(),
            spare: Some(client),
            topics: HashMap::new(),
            coordinators: HashMap::new(),
        };
        router.metadata(Some(&[]), false).await?;
        router.adopt_spare().await;
        Ok(router)
    }

    /// How long a request is retried.
    pub fn retry_timeout(&self) -> Duration {
        self.retry_timeout
    }

    pub fn set_retry_timeout(&mut self, timeout: Duration) {
        self.retry_timeout = timeout;
    }

    /// A deadline for one operation's attempts, [`retry_timeout`](Self::retry_timeout) from now.
    pub fn retry(&self) -> Retry {
        Retry::new(self.retry_timeout)
    }

    /// The live brokers' node ids, as last seen.
    pub fn brokers(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// Runs `op` on an idle connection to any broker, for requests any broker answers (topics, configs, the
    /// cluster). After a connection failure it runs again on another connection, so give it only requests
    /// that may be repeated.
    pub async fn on_any<T>(&mut self, mut op: impl AsyncFnMut(&mut Client) -> Result<T>) -> Result<T> {
        let retry = self.retry();
        loop {
            let idle = self.idle().await?;
            let client = match idle {
                Idle::Spare => self.spare.as_mut().expect("idle found it"),
                Idle::Broker(id) => self.connections.get_mut(&id).expect("idle found it"),
            };
            let error = match op(client).await {
                Ok(answer) => return Ok(answer),
                Err(e) if Fault::of(&e) == Some(Fault::Connection) => e,
                Err(e) => return Err(e),
            };
            match idle {
                Idle::Spare => self.spare = None,
                Idle::Broker(id) => self.forget(id),
            }
            retry.wait(error).await?;
        }
    }

    /// Metadata for `topics` (`None`: all), over an idle connection; learns the live brokers from it.
    async fn metadata(&mut self, topics: Option<&[&str]>, auto_create: bool) -> Result<Metadata> {
        let metadata = self
            .on_any(async |client| client.metadata(topics, auto_create).await)
            .await?;
        let brokers: BTreeMap<i32, String> = metadata
            .brokers
            .iter()
            .map(|b| (b.node_id, address(&b.host, b.port)))
            .collect();
        // A broker that moved: its old connection goes.
        for (id, addr) in &brokers {
            if self.brokers.get(id).is_some_and(|known| known != addr) {
                self.forget(*id);
            }
        }
        self.brokers = brokers;
        Ok(metadata)
    }

    /// Makes the bootstrap connection the connection of the broker it reached, if that can be told: the
    /// address it was given or reached is one a broker advertises, or there is only one broker.
    async fn adopt_spare(&mut self) {
        let Some(spare) = &self.spare else { return };
        let given = spare.addr().to_owned();
        let peer = spare.peer_addr();
        let mut reached = self.brokers.iter().find(|(_, addr)| **addr == given).map(|(id, _)| *id);
        if reached.is_none()
            && let Some(peer) = peer
        {
            for (id, addr) in &self.brokers {
                if resolves_to(addr, peer).await {
                    reached = Some(*id);
                    break;
                }
            }
        }
        if reached.is_none() && self.brokers.len() == 1 {
            reached = self.brokers.keys().next().copied();
        }
        if let Some(id) = reached
            && !self.connections.contains_key(&id)
        {
            let spare = self.spare.take().expect("checked above");
            self.connections.insert(id, spare);
            self.bootstrap_node = Some(id);
        }
    }

    /// An idle, usable connection: the spare, the bootstrap broker's, any other, or a new spare.
    async fn idle(&mut self) -> Result<Idle> {
        let idle = |c: &Client| c.is_usable() && c.in_flight() == 0;
        self.connections.retain(|_, c| c.is_usable());
        if self.spare.as_ref().is_some_and(idle) {
            return Ok(Idle::Spare);
        }
        let preferred = self
            .bootstrap_node
            .filter(|id| self.connections.get(id).is_some_and(idle));
        if let Some(id) = preferred.or_else(|| self.connections.iter().find(|(_, c)| idle(c)).map(|(id, _)| *id)) {
            return Ok(Idle::Broker(id));
        }
        let mut addrs = self.bootstrap.clone();
        addrs.extend(self.brokers.values().cloned());
        self.spare = Some(connect_first(&addrs, &self.options).await?);
        Ok(Idle::Spare)
    }

    /// Looks `topic` up (creating it, with `auto_create`, if the broker creates topics on first use) and
    /// remembers its partitions' leaders. Partitions come sorted by index.
    pub async fn topic(&mut self, topic: &str, auto_create: bool) -> Result<TopicMetadata> {
        let retry = self.retry();
        loop {
            let metadata = self.metadata(Some(&[topic]), auto_create).await?;
            match metadata.topic(topic) {
                Ok(found) => {
                    self.topics.insert(topic.to_owned(), found.clone());
                    return Ok(found);
                }
                // Kafka answers so while it creates the topic.
                Err(e) if e.kafka_error() == Some(ResponseError::LeaderNotAvailable) => retry.wait(e).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Looks again at every topic looked up: their leaders, and the live brokers.
    pub async fn refresh(&mut self) -> Result<()> {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        let topics: Vec<&str> = names.iter().map(String::as_str).collect();
        let metadata = self.metadata(Some(&topics), false).await?;
        for name in names {
            let mut found = metadata
                .topics
                .iter()
                .find(|t| t.name == name)
                .cloned()
                .unwrap_or_else(|| TopicMetadata {
                    name: name.clone(),
                    id: uuid::Uuid::nil(),
                    internal: false,
                    error: Some(ResponseError::UnknownTopicOrPartition),
                    partitions: Vec::new(),
                });
            found.partitions.sort_by_key(|p| p.index);
            self.topics.insert(name, found);
        }
        Ok(())
    }

    /// The leader of a partition of a topic looked up ([`topic`](Self::topic)), as last seen: `None` while
    /// it has none (or its leader is not among the live brokers). Fails when the topic or the partition no
    /// longer exists, which no retry mends.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<Option<i32>> {
        let known = self
            .topics
            .get(topic)
            .ok_or_else(|| ClientError::Usage(format!("topic {topic} was not looked up")))?;
        known.check()?;
        // Partitions are kept in index order, so the one asked for is usually at its index.
        let found = usize::try_from(partition)
            .ok()
            .and_then(|i| known.partitions.get(i))
            .filter(|p| p.index == partition)
            .or_else(|| known.partitions.iter().find(|p| p.index == partition))
            .ok_or_else(|| ClientError::Kafka {
                context: format!("topic {topic}"),
                error: ResponseError::UnknownTopicOrPartition,
                message: Some(format!("it has no partition {partition}")),
            })?;
        Ok((found.leader >= 0 && self.brokers.contains_key(&found.leader)).then_some(found.leader))
    }

    /// The connection to `broker`, made if there is none.
    pub async fn client(&mut self, broker: i32) -> Result<&mut Client> {
        if self.connections.get(&broker).is_some_and(|c| !c.is_usable()) {
            self.forget(broker);
        }
        if !self.connections.contains_key(&broker) {
            let addr = self.brokers.get(&broker).ok_or_else(|| ClientError::Kafka {
                context: format!("broker {broker}"),
                error: ResponseError::LeaderNotAvailable,
                message: Some("it is not among the live brokers".into()),
            })?;
            let client = Client::connect_with(addr, self.options.clone()).await?;
            self.connections.insert(broker, client);
        }
        Ok(self.connections.get_mut(&broker).expect("inserted above"))
    }

    /// Lends out the connection to `broker` (made if there is none), for a caller that keeps requests in
    /// flight on it; [`put`](Self::put) gives it back.
    pub async fn take(&mut self, broker: i32) -> Result<Client> {
        self.client(broker).await?;
        Ok(self.connections.remove(&broker).expect("made above"))
    }

    /// Gives back a connection lent out by [`take`](Self::take). One that failed, or with requests still in
    /// flight, is closed instead.
    pub fn put(&mut self, broker: i32, client: Client) {
        if client.is_usable() && client.in_flight() == 0 {
            self.connections.entry(broker).or_insert(client);
        }
    }

    /// Closes the connection to `broker` (after it failed); the next use makes a new one.
    pub fn forget(&mut self, broker: i32) {
        self.connections.remove(&broker);
    }

    /// Looks up an offset in each of `partitions` of `topic`, asking each partition's leader, answered in
    /// the order asked.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>> {
        if !self.topics.contains_key(topic) {
            self.topic(topic, false).await?;
        }
        let retry = self.retry();
        let mut found: HashMap<i32, ListedOffset> = HashMap::with_capacity(partitions.len());
        loop {
            let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
            let mut fault = None;
            for &p in partitions {
                if found.contains_key(&p) {
                    continue;
                }
                match self.leader(topic, p)? {
                    Some(leader) => by_leader.entry(leader).or_default().push(p),
                    None => {
                        fault = Some(ClientError::Kafka {
                            context: format!("listing offsets of {topic}-{p}"),
                            error: ResponseError::LeaderNotAvailable,
                            message: None,
                        })
                    }
                }
            }
            for (leader, ps) in by_leader {
                let listed = match self.client(leader).await {
                    Ok(client) => client.list_offsets(topic, &ps, spec).await,
                    Err(e) => Err(e),
                };
                match listed {
                    Ok(listed) => found.extend(listed.into_iter().map(|l| (l.partition, l))),
                    Err(e) => match Fault::of(&e) {
                        Some(Fault::Connection) => {
                            self.forget(leader);
                            fault = Some(e);
                        }
                        Some(Fault::Leader) => fault = Some(e),
                        _ => return Err(e),
                    },
                }
            }
            let Some(error) = fault else { break };
            retry.wait(error).await?;
            self.refresh().await?;
        }
        Ok(partitions.iter().map(|p| found[p]).collect())
    }

    /// The coordinator of `group` (FindCoordinator), as last found.
    pub async fn coordinator(&mut self, group: &str) -> Result<i32> {
        if let Some(&id) = self.coordinators.get(group) {
            return Ok(id);
        }
        let found = self.on_any(async |client| client.find_coordinator(group).await).await?;
        self.brokers
            .entry(found.node_id)
            .or_insert_with(|| address(&found.host, found.port));
        self.coordinators.insert(group.to_owned(), found.node_id);
        Ok(found.node_id)
    }

    /// Runs `op` on the connection to `group`'s coordinator; when the coordinator moved, is not elected
    /// yet or cannot be reached, finds it again and runs `op` again.
    pub async fn with_coordinator<T>(
        &mut self,
        group: &str,
        mut op: impl AsyncFnMut(&mut Client) -> Result<T>,
    ) -> Result<T> {
        let retry = self.retry();
        loop {
            let error = match self.coordinator(group).await {
                Err(e) => e,
                Ok(id) => match self.client(id).await {
                    Err(e) => e,
                    Ok(client) => match op(client).await {
                        Ok(answer) => return Ok(answer),
                        Err(e) => e,
                    },
                },
            };
            match Fault::of(&error) {
                Some(Fault::Connection) => {
                    if let Some(id) = self.coordinators.remove(group) {
                        self.forget(id);
                    }
                }
                Some(Fault::Coordinator) => {
                    self.coordinators.remove(group);
                }
                _ => return Err(error),
            }
            retry.wait(error).await?;
        }
    }

    /// Every group of the cluster: each live broker lists those it coordinates (ListGroups), merged and
    /// sorted by id.
    pub async fn list_groups(&mut self) -> Result<Vec<ListedGroup>> {
        let mut merged: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for broker in self.brokers() {
            let retry = self.retry();
            loop {
                let listed = match self.client(broker).await {
                    Ok(client) => client.list_groups().await,
                    Err(e) => Err(e),
                };
                let error = match listed {
                    Ok(groups) => {
                        for group in groups {
                            merged.entry(group.group_id.clone()).or_insert(group);
                        }
                        break;
                    }
                    Err(e) => e,
                };
                match Fault::of(&error) {
                    Some(Fault::Connection) => {
                        self.forget(broker);
                        retry.wait(error).await?;
                        // A broker that stopped is no longer listed, and has no groups to list.
                        self.metadata(Some(&[]), false).await?;
                        if !self.brokers.contains_key(&broker) {
                            break;
                        }
                    }
                    Some(Fault::Coordinator) => retry.wait(error).await?,
                    _ => return Err(error),
                }
            }
        }
        Ok(merged.into_values().collect())
    }
}

/// Whether `addr` (`host:port`) resolves to `peer`.
async fn resolves_to(addr: &str, peer: SocketAddr) -> bool {
    match tokio::net::lookup_host(addr).await {
        Ok(mut resolved) => resolved.any(|a| a == peer),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::{SinkExt, StreamExt};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, RequestKind, ResponseKind,
    };
    use kafka_protocol::protocol::StrBytes;
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    use super::*;
    use crate::frame::FrameCodec;
    use crate::{request, response};

    /// A broker that answers ApiVersions and Metadata, advertising itself as node 1 at `advertised`, and
    /// counts the connections made to it.
    async fn lone_broker(advertised: impl Fn(u16) -> String + Send + 'static) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let host = advertised(port);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let host = host.clone();
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, FrameCodec::default());
                    let supported = |key: ApiKey| match key {
                        ApiKey::ApiVersions => Some(0..=4),
                        ApiKey::Metadata => Some(0..=12),
                        _ => None,
                    };
                    while let Some(Ok(frame)) = framed.next().await {
                        let request = request::decode(frame.freeze(), supported).unwrap();
                        let (version, correlation_id) = (request.version(), request.correlation_id());
                        let (key, body) = match request.body {
                            RequestKind::ApiVersions(_) => {
                                let api = |key: ApiKey, max| {
                                    ApiVersion::default().with_api_key(key as i16).with_max_version(max)
                                };
                                let versions = ApiVersionsResponse::default()
                                    .with_api_keys(vec![api(ApiKey::ApiVersions, 4), api(ApiKey::Metadata, 12)]);
                                (ApiKey::ApiVersions, ResponseKind::ApiVersions(versions))
                            }
                            RequestKind::Metadata(_) => {
                                let broker = MetadataResponseBroker::default()
                                    .with_node_id(BrokerId(1))
                                    .with_host(StrBytes::from_string(host.clone()))
                                    .with_port(i32::from(port));
                                let metadata = MetadataResponse::default().with_brokers(vec![broker]);
                                (ApiKey::Metadata, ResponseKind::Metadata(metadata))
                            }
                            other => panic!("unexpected {other:?}"),
                        };
                        let bytes = response::encode(key, version, correlation_id, &body).unwrap();
                        framed.send(bytes).await.unwrap();
                    }
                });
            }
        });
        (format!("127.0.0.1:{port}"), connections)
    }

    /// The broker is reached over the bootstrap connection and no other.
    async fn one_connection(advertised: impl Fn(u16) -> String + Send + 'static) {
        let (addr, connections) = lone_broker(advertised).await;
        let mut router = Router::connect(&addr, ClientOptions::default()).await.unwrap();
        assert_eq!(router.brokers(), [1]);
        router.client(1).await.unwrap().metadata(None, false).await.unwrap();
        router
            .on_any(async |client| client.metadata(None, false).await)
            .await
            .unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_bootstrap_connection_is_the_connection_of_the_broker_it_reached() {
        // By the address given, by what the advertised name resolves to, and as the only broker.
        one_connection(|_| "127.0.0.1".into()).await;
        one_connection(|_| "localhost".into()).await;
        one_connection(|_| "broker-1.invalid".into()).await;
    }

    #[test]
    fn bootstrap_lists_split_at_commas() {
        assert_eq!(split_bootstrap("a:1, b:2,").unwrap(), ["a:1", "b:2"]);
        assert!(split_bootstrap(" , ").is_err());
        assert_eq!(address("::1", 9092), "[::1]:9092");
        assert_eq!(address("h", 9092), "h:9092");
    }

    #[test]
    fn faults_are_told_apart() {
        let kafka = |error| ClientError::Kafka {
            context: String::new(),
            error,
            message: None,
        };
        assert_eq!(
            Fault::of(&kafka(ResponseError::NotLeaderOrFollower)),
            Some(Fault::Leader)
        );
        assert_eq!(
            Fault::of(&kafka(ResponseError::UnknownTopicOrPartition)),
            Some(Fault::Leader)
        );
        assert_eq!(
            Fault::of(&kafka(ResponseError::NotCoordinator)),
            Some(Fault::Coordinator)
        );
        assert_eq!(Fault::of(&kafka(ResponseError::TopicAlreadyExists)), None);
        assert_eq!(
            Fault::of(&ClientError::Closed { addr: "a:1".into() }),
            Some(Fault::Connection)
        );
        assert_eq!(Fault::of(&ClientError::Usage(String::new())), None);
    }
}

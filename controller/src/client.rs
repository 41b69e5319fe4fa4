//! The broker's side of the controller service: a client that finds the active controller, and a follower
//! of the metadata log that keeps an image up to date.
//!
//! [`ControllerClient`] knows the voters (`--controller-voters`). A request that must reach the active
//! controller goes to the one last known to be active, else to each voter in turn; a NOT_CONTROLLER answer
//! that names the leader redirects it there. It retries until its deadline, so a request made during a
//! controller failover waits for the next election instead of failing.
//!
//! [`follow`] streams committed metadata from any controller (the preferred one first: on a combined node,
//! its own) and replays it into a [`MetadataImage`], published on a `watch` with the index it reflects.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::image::MetadataImage;
use crate::network::{Connect, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, RPC_MESSAGE_BYTES_MAX};
use crate::proto::controller as pb;
use crate::proto::controller::controller_service_client::ControllerServiceClient;
use crate::quorum::NOT_CONTROLLER;
use crate::types::NodeId;

/// How long one attempt may take before the next controller is tried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pauses between rounds of attempts, doubling up to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Short: a request waiting out a failover should land soon after the new controller is elected.
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// Why a request to the controllers did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid controller address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    #[error("no active controller answered within {0:?}: {1}")]
    Timeout(Duration, String),
}

/// A voter parsed from `ID@HOST:PORT`.
pub fn parse_voter(text: &str) -> Result<(NodeId, String), String> {
    let (id, addr) = text
        .split_once('@')
        .ok_or_else(|| format!("controller voter `{text}` is not ID@HOST:PORT"))?;
    let id = id
        .trim()
        .parse::<NodeId>()
        .map_err(|_| format!("controller voter `{text}`: `{id}` is not a node id"))?;
    let addr = addr.trim();
    if addr
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!("controller voter `{text}`: `{addr}` is not HOST:PORT"));
    }
    Ok((id, addr.to_owned()))
}

#[derive(Debug)]
struct Voter {
    id: NodeId,
    client: ControllerServiceClient<Channel>,
}

/// A client of the controller quorum; see the module documentation.
#[derive(Debug)]
pub struct ControllerClient {
    voters: Vec<Voter>,
    /// Index in `voters` of the controller last known to be active.
    leader: Mutex<Option<usize>>,
    /// Where the next round without a known leader starts.
    next: AtomicUsize,
}

impl ControllerClient {
    /// A client of `voters` (id, HOST:PORT) over the OS's TCP. Connections are made on first use.
    pub fn new(voters: &[(NodeId, String)]) -> Result<Self, ClientError> {
        Self::with_connect(voters, Arc::new(Endpoint::connect_lazy))
    }

    /// A client of `voters` whose channels `connect` makes (lazily), as [`crate::network::Network::with_connect`].
    pub fn with_connect(voters: &[(NodeId, String)], connect: Connect) -> Result<Self, ClientError> {
        let voters = voters
            .iter()
            .map(|(id, addr)| {
                let endpoint =
                    Endpoint::from_shared(format!("http://{addr}")).map_err(|e| ClientError::InvalidAddress {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })?;
                // Keep-alive pings notice a controller that vanished without closing the connection (its host
                // gone, a partition), so that a metadata stream from it moves to another controller.
                let channel = endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true);
                let channel = connect(&channel);
                let client = ControllerServiceClient::new(channel)
                    .max_decoding_message_size(RPC_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(RPC_MESSAGE_BYTES_MAX);
                Ok(Voter { id: *id, client })
            })
            .collect::<Result<Vec<_>, _>>()?;
        assert!(!voters.is_empty(), "a quorum has at least one voter");
        Ok(Self {
            voters,
            leader: Mutex::new(None),
            next: AtomicUsize::new(0),
        })
    }

    fn position(&self, id: NodeId) -> Option<usize> {
        self.voters.iter().position(|v| v.id == id)
    }

    fn known_leader(&self) -> Option<usize> {
        *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_leader(&self, leader: Option<usize>) {
        *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = leader;
    }

    /// Sends a request to the active controller, following NOT_CONTROLLER redirects and retrying other
    /// controllers until `deadline` passes. Any other answer, errors included, is returned.
    pub async fn call_active<F, Fut>(&self, deadline: Duration, rpc: F) -> Result<pb::Reply, ClientError>
    where
        F: Fn(ControllerServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::Reply>, tonic::Status>>,
    {
        let until = Instant::now() + deadline;
        let mut backoff = BACKOFF_MIN;
        let mut last_error;
        loop {
            let target = self
                .known_leader()
                .unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed) % self.voters.len());
            let voter = &self.voters[target];
            match tokio::time::timeout(ATTEMPT_TIMEOUT, rpc(voter.client.clone())).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    if reply.error_code != NOT_CONTROLLER {
                        self.set_leader(Some(target));
                        return Ok(reply);
                    }
                    let redirect = reply.leader_id.and_then(|id| self.position(id));
                    last_error = format!("controller {} is not active", voter.id);
                    self.set_leader(redirect.filter(|&r| r != target));
                    if redirect.is_some_and(|r| r != target) {
                        continue;
                    }
                }
                Ok(Err(status)) => {
                    last_error = format!("controller {}: {}", voter.id, status.message());
                    self.set_leader(None);
                }
                Err(_) => {
                    last_error = format!("controller {} did not answer within {ATTEMPT_TIMEOUT:?}", voter.id);
                    self.set_leader(None);
                }
            }
            if Instant::now() + backoff > until {
                return Err(ClientError::Timeout(deadline, last_error));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Asks the active controller to describe the quorum, else any controller that answers.
    pub async fn describe_quorum(&self) -> Result<pb::DescribeQuorumReply, ClientError> {
        let mut last_error = String::new();
        let leader = self.known_leader();
        let order = leader
            .into_iter()
            .chain((0..self.voters.len()).filter(|&i| Some(i) != leader));
        let mut fallback = None;
        for index in order {
            let mut client = self.voters[index].client.clone();
            match tokio::time::timeout(ATTEMPT_TIMEOUT, client.describe_quorum(pb::DescribeQuorumRequest {})).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    // The leader knows every voter's lag; others only their own.
                    if reply.leader_id == Some(self.voters[index].id) {
                        return Ok(reply);
                    }
                    if let Some(leader) = reply.leader_id.and_then(|id| self.position(id))
                        && let Ok(Ok(from_leader)) = tokio::time::timeout(
                            ATTEMPT_TIMEOUT,
                            self.voters[leader]
                                .client
                                .clone()
                                .describe_quorum(pb::DescribeQuorumRequest {}),
                        )
                        .await
                    {
                        return Ok(from_leader.into_inner());
                    }
                    fallback.get_or_insert(reply);
                }
                Ok(Err(status)) => last_error = format!("controller {}: {}", self.voters[index].id, status.message()),
                Err(_) => last_error = format!("controller {} did not answer", self.voters[index].id),
            }
        }
        fallback.ok_or(ClientError::Timeout(ATTEMPT_TIMEOUT, last_error))
    }
}

/// The metadata as a broker follows it: the image after applying the log up to `index`.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The last metadata log index applied; 0 before anything arrived.
    pub index: u64,
    pub image: MetadataImage,
}

/// Follows the metadata log from the controllers until `stop` is dropped or sends, publishing each new
/// image. `prefer` is asked first (a combined node's own controller).
pub fn follow(
    client: std::sync::Arc<ControllerClient>,
    prefer: Option<NodeId>,
    stop: watch::Receiver<bool>,
) -> watch::Receiver<Followed> {
    let (publish, followed) = watch::channel(Followed::default());
    tokio::spawn(run_follower(client, prefer, publish, stop));
    followed
}

async fn run_follower(
    client: std::sync::Arc<ControllerClient>,
    prefer: Option<NodeId>,
    publish: watch::Sender<Followed>,
    mut stop: watch::Receiver<bool>,
) {
    let mut current = Followed::default();
    let first = prefer.and_then(|id| client.position(id)).unwrap_or(0);
    let mut attempt = 0usize;
    let mut backoff = BACKOFF_MIN;
    loop {
        let voter = &client.voters[(first + attempt) % client.voters.len()];
        let request = pb::FetchMetadataRequest {
            after_index: current.index,
        };
        let mut rpc = voter.client.clone();
        let streamed = tokio::select! {
            _ = stop.changed() => return,
            streamed = tokio::time::timeout(ATTEMPT_TIMEOUT, rpc.fetch_metadata(request)) => streamed,
        };
        let mut stream = match streamed {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                tracing::debug!(controller = voter.id, error = %status.message(), "metadata stream refused");
                attempt += 1;
                pause(&mut backoff, &mut stop).await;
                continue;
            }
            Err(_) => {
                attempt += 1;
                pause(&mut backoff, &mut stop).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                _ = stop.changed() => return,
                message = stream.message() => message,
            };
            let update = match message {
                Ok(Some(update)) => update,
                Ok(None) | Err(_) => break,
            };
            backoff = BACKOFF_MIN;
            let records = update.batch.map(|b| b.records).unwrap_or_default();
            let next = if update.snapshot {
                MetadataImage::from_records(&records)
            } else if records.is_empty() {
                Ok(current.image.clone())
            } else {
                current
                    .image
                    .replay_batch(&crate::proto::metadata::MetadataBatch { records })
            };
            match next {
                Ok(image) => {
                    current = Followed {
                        index: update.index,
                        image,
                    };
                    publish.send_replace(current.clone());
                }
                Err(e) => {
                    // The controllers replayed this batch; this image must have diverged: start over.
                    tracing::error!(index = update.index, error = %e, "metadata update does not replay; refetching all");
                    current.index = 0;
                    break;
                }
            }
        }
        attempt += 1;
        pause(&mut backoff, &mut stop).await;
    }
}

async fn pause(backoff: &mut Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = stop.changed() => {}
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse() {
        assert_eq!(parse_voter("1@127.0.0.1:9093"), Ok((1, "127.0.0.1:9093".into())));
        assert_eq!(parse_voter("3@ctl-3:9093"), Ok((3, "ctl-3:9093".into())));
        for bad in ["127.0.0.1:9093", "x@h:1", "1@h", "1@:9093", "1@h:99999"] {
            assert!(parse_voter(bad).is_err(), "{bad}");
        }
    }
}

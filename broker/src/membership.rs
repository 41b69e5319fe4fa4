//! This broker's membership of the cluster, as the active controller sees it: registration at start, a
//! heartbeat every `broker.heartbeat.interval.ms` (which is how it stays live, and gets unfenced once caught
//! up), readiness, and controlled shutdown.

use std::sync::Arc;
use std::time::Duration;

use strata_controller::client::ClientError;
use strata_controller::proto::controller as pb;
use strata_controller::proto::metadata::Listener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::broker::Broker;

/// How long a stopping broker waits for the controller to move its leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Registers this run of the broker with the active controller, retrying until it answers. Returns the
/// metadata index of the registration, or `None` if the node stops first.
pub async fn register(broker: &Broker, shutdown: &CancellationToken) -> Option<u64> {
    let request = pb::RegisterBrokerRequest {
        broker_id: broker.node_id(),
        incarnation: broker.incarnation,
        listeners: broker
            .advertised
            .iter()
            .map(|listener| Listener {
                name: listener.name.clone(),
                host: listener.host.clone(),
                port: listener.port as u32,
                security_protocol: crate::config::PLAINTEXT.into(),
            })
            .collect(),
        rack: broker.static_settings.rack.clone(),
    };
    loop {
        let sent = Instant::now();
        let call = broker.controller.call_active(Duration::from_secs(10), |mut client| {
            let request = request.clone();
            async move { client.register_broker(request).await }
        });
        let reply = tokio::select! {
            () = shutdown.cancelled() => return None,
            reply = call => reply,
        };
        match reply {
            Ok(reply) if reply.error_code == 0 => {
                broker.replicas.lease().renewed(sent);
                info!(
                    broker = broker.node_id(),
                    incarnation = broker.incarnation,
                    "registered with the controller"
                );
                return Some(reply.metadata_index);
            }
            Ok(reply) => error!(code = reply.error_code, error = %reply.message, "registration refused; retrying"),
            Err(e) => warn!(error = %e, "no active controller yet; retrying registration"),
        }
    }
}

/// Waits until the metadata shows this broker unfenced and the reconciler has acted on it.
pub async fn wait_until_ready(broker: &Broker, registered_at: u64, shutdown: &CancellationToken) -> bool {
    let mut followed = broker.metadata.subscribe();
    let me = broker.node_id();
    let unfenced_at = followed.wait_for(|f| {
        f.index >= registered_at
            && f.image
                .broker(me)
                .is_some_and(|b| !b.fenced && b.incarnation == broker.incarnation)
    });
    let index = tokio::select! {
        () = shutdown.cancelled() => return false,
        followed = unfenced_at => match followed {
            Ok(followed) => followed.index,
            Err(_) => return false,
        },
    };
    tokio::select! {
        () = shutdown.cancelled() => false,
        done = broker.metadata.wait_for(index, Duration::MAX) => done,
    }
}

/// Tells the active controller this broker is alive every `broker.heartbeat.interval.ms`, with the
/// metadata index it has applied (which is how it gets unfenced).
pub async fn heartbeat(broker: Arc<Broker>, shutdown: CancellationToken) {
    let interval = Duration::from_millis(broker.static_settings.broker_heartbeat_interval_ms);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut followed = broker.metadata.subscribe();
    let mut lease_held = true;
    loop {
        // A new image may be what unfences this broker: tell the controller at once rather than a tick
        // later, while still fenced.
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            _ = followed.changed(), if broker.metadata.image().broker(broker.node_id()).is_none_or(|b| b.fenced) => {}
        }
        let sent = Instant::now();
        match send_heartbeat(&broker, false, interval).await {
            Ok(reply) if reply.error_code != 0 => {
                warn!(code = reply.error_code, error = %reply.message, "heartbeat refused")
            }
            Ok(_) => broker.replicas.lease().renewed(sent),
            Err(e) => warn!(error = %e, "heartbeat not answered"),
        }
        let holds = broker.replicas.lease().holds();
        if holds != lease_held {
            lease_held = holds;
            match holds {
                true => info!("session with the controller renewed: leading again where the metadata says"),
                false => warn!(
                    "session with the controller not renewed within broker.session.timeout.ms: not acting as a leader until it is"
                ),
            }
        }
    }
}

/// Kafka's controlled shutdown: the controller fences this broker now and moves its leaderships, so
/// clients fail over at once rather than after a session timeout.
pub async fn controlled_shutdown(broker: &Broker) {
    if let Err(e) = send_heartbeat(broker, true, CONTROLLED_SHUTDOWN_TIMEOUT).await {
        warn!(error = %e, "controlled shutdown not acknowledged; the session timeout will fence this broker");
    }
}

/// One heartbeat with the metadata index this broker has applied, to the active controller.
async fn send_heartbeat(broker: &Broker, shutting_down: bool, deadline: Duration) -> Result<pb::Reply, ClientError> {
    let request = pb::BrokerHeartbeatRequest {
        broker_id: broker.node_id(),
        incarnation: broker.incarnation,
        applied_index: broker.metadata.index(),
        shutting_down,
    };
    broker
        .controller
        .call_active(
            deadline,
            |mut client| async move { client.broker_heartbeat(request).await },
        )
        .await
}

//! Broker registration: a broker process announcing itself (id, incarnation, listeners, rack) at start.
//!
//! A registration replaces the previous one of the same id and leaves the broker **fenced** (replay does
//! that, see [`crate::delta`]): it leads nothing until it has caught up with the metadata log and a heartbeat
//! says so ([`crate::control::liveness`]). This module owns the checks and the records; it does not own the
//! broker's session, which the active controller keeps in memory.

use crate::control::brokers::fence_broker;
use crate::control::{ControllerResult, record};
use crate::image::{BrokerId, MetadataImage, Topic};
use crate::proto::metadata::{Listener, RegisterBroker, metadata_record::Record};

/// Why a registration is refused. No records are produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterBrokerError {
    /// Kafka's INVALID_REQUEST: replay refuses negative ids.
    #[error("invalid broker id {0}")]
    InvalidBrokerId(BrokerId),
    /// Kafka's INVALID_REQUEST: replay refuses ports past 65535.
    #[error("listener {name:?}: port {port} is out of range")]
    InvalidPort { name: String, port: u32 },
    /// Kafka's DUPLICATE_BROKER_REGISTRATION: an earlier run of the broker (or a second process configured
    /// with the same id) registering after a later run did.
    #[error("broker {broker_id}: incarnation {incarnation} is older than the registered {registered}")]
    StaleIncarnation {
        broker_id: BrokerId,
        incarnation: u64,
        registered: u64,
    },
    /// Kafka's DUPLICATE_BROKER_REGISTRATION: the registered incarnation again, with other listeners or rack.
    /// A retry carries the same details; different ones mean two processes share an incarnation.
    #[error("broker {0}: its incarnation is already registered with other listeners or rack")]
    IncarnationReused(BrokerId),
}

impl RegisterBrokerError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::InvalidBrokerId(_) | Self::InvalidPort { .. } => 42,
            Self::StaleIncarnation { .. } | Self::IncarnationReused(_) => 101,
        }
    }
}

/// Registers run `incarnation` of broker `broker_id`.
///
/// - A new id, or a newer incarnation of a fenced broker: the `RegisterBroker` record.
/// - A newer incarnation of a **live** broker (it restarted faster than its session timeout): the old
///   incarnation is fenced first, in the same batch, with the elections that causes (`unclean_allowed` as in
///   [`fence_broker`]). Replay alone would mark the broker fenced but leave it leading and in ISRs; this way no
///   image shows a fenced leader.
/// - The registered incarnation with the same listeners and rack: no records (a retried request whose answer
///   was lost).
/// - An older incarnation, or the registered one with other details: refused.
pub fn register_broker(
    image: &MetadataImage,
    broker_id: BrokerId,
    incarnation: u64,
    listeners: Vec<Listener>,
    rack: Option<String>,
    unclean_allowed: impl Fn(&Topic) -> bool,
) -> Result<ControllerResult, RegisterBrokerError> {
    if broker_id < 0 {
        return Err(RegisterBrokerError::InvalidBrokerId(broker_id));
    }
    if let Some(listener) = listeners.iter().find(|l| l.port > u32::from(u16::MAX)) {
        return Err(RegisterBrokerError::InvalidPort {
            name: listener.name.clone(),
            port: listener.port,
        });
    }
    let mut records = Vec::new();
    if let Some(registered) = image.broker(broker_id) {
        if incarnation < registered.incarnation {
            return Err(RegisterBrokerError::StaleIncarnation {
                broker_id,
                incarnation,
                registered: registered.incarnation,
            });
        }
        if incarnation == registered.incarnation {
            return if registered.listeners == listeners && registered.rack == rack {
                Ok(ControllerResult::new(Vec::new(), ()))
            } else {
                Err(RegisterBrokerError::IncarnationReused(broker_id))
            };
        }
        // Empty when already fenced; the id is registered, so this cannot fail.
        let fenced = fence_broker(image, broker_id, unclean_allowed).expect("broker is registered");
        records = fenced.records;
    }
    records.push(record(Record::RegisterBroker(RegisterBroker {
        broker_id,
        incarnation,
        listeners,
        rack,
    })));
    Ok(ControllerResult::new(records, ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{apply, cluster, partition, with_orders};

    fn plaintext(port: u32) -> Vec<Listener> {
        vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
            security_protocol: "PLAINTEXT".into(),
        }]
    }

    fn never(_: &Topic) -> bool {
        false
    }

    #[test]
    fn a_new_broker_registers_fenced() {
        let image = MetadataImage::empty();
        let result = register_broker(&image, 4, 1, plaintext(9092), Some("r1".into()), never).unwrap();
        assert_eq!(result.records.len(), 1);
        let image = apply(&image, &result);
        let broker = image.broker(4).unwrap();
        assert_eq!(
            (broker.incarnation, broker.fenced, broker.rack.as_deref()),
            (1, true, Some("r1"))
        );

        let retry = register_broker(&image, 4, 1, plaintext(9092), Some("r1".into()), never).unwrap();
        assert!(retry.records.is_empty(), "a retried registration changes nothing");
        let other = register_broker(&image, 4, 1, plaintext(9093), Some("r1".into()), never);
        assert_eq!(other, Err(RegisterBrokerError::IncarnationReused(4)));
    }

    #[test]
    fn an_older_incarnation_is_refused() {
        let image = cluster(&[(1, None)]);
        let image = apply(
            &image,
            &register_broker(&image, 1, 5, plaintext(9092), None, never).unwrap(),
        );
        let stale = register_broker(&image, 1, 4, plaintext(9092), None, never).unwrap_err();
        assert_eq!(
            stale,
            RegisterBrokerError::StaleIncarnation {
                broker_id: 1,
                incarnation: 4,
                registered: 5
            }
        );
        assert_eq!(stale.kafka_error_code(), 101);
    }

    #[test]
    fn invalid_registrations_are_refused_before_replay_would() {
        let image = MetadataImage::empty();
        let negative = register_broker(&image, -1, 1, plaintext(9092), None, never).unwrap_err();
        assert_eq!(negative.kafka_error_code(), 42);
        let port = register_broker(&image, 1, 1, plaintext(70_000), None, never).unwrap_err();
        assert!(matches!(port, RegisterBrokerError::InvalidPort { port: 70_000, .. }));
    }

    #[test]
    fn a_live_broker_restarting_is_fenced_in_the_same_batch() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 3, 3);
        let leader = partition(&image, 0).leader;
        let result = register_broker(&image, leader, 2, plaintext(9092), None, never).unwrap();
        let image = apply(&image, &result);
        let broker = image.broker(leader).unwrap();
        assert_eq!((broker.incarnation, broker.fenced), (2, true));
        for index in 0..3 {
            let p = partition(&image, index);
            assert_ne!(p.leader, leader, "a fenced broker leads nothing");
            assert!(!p.isr.contains(&leader));
        }
    }
}

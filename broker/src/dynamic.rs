//! Settings changed at run time, held as metadata: dynamic broker configs and group configs.
//!
//! Both are `ConfigRecord`s in the metadata log, like topic configs (written by the active controller,
//! replayed by every node), so they survive restarts and reach every broker. This module owns which keys
//! may change, how a change is checked, and how stored values become the settings in force; the records and
//! the controller are not its business, nor are topic configs (`settings`).
//!
//! **Broker configs** (resource type BROKER, Kafka's KIP-226): a broker id holds that broker's overrides, the
//! empty name the cluster-wide defaults. In force on a broker: its own override, else the cluster-wide one,
//! else the static setting (`--set`, config file), else Kafka's default. Only keys that Kafka updates
//! dynamically *and* that Strata applies live may be set ([`broker_key_is_dynamic`]): the topic defaults
//! (`log.*`, `message.max.bytes`, `min.insync.replicas`), which every hosted log picks up at once, and the
//! cluster-wide `unclean.leader.election.enable`, which the controller reads. Anything else is refused with
//! INVALID_REQUEST, as Kafka refuses a read-only config ("cannot be updated dynamically").
//!
//! **Group configs** (resource type GROUP, KIP-848/KIP-932): per group id, Kafka 4.0's six keys, each checked
//! against the broker's bounds for it as Kafka's `GroupConfig.validate` does. The `consumer.*` keys set the
//! session timeout and heartbeat interval of consumer-protocol (KIP-848) groups, read at each heartbeat
//! (`api::consumer_group_heartbeat`); classic groups take theirs from the client's JoinGroup. The `share.*`
//! keys are for share groups (KIP-932), which Strata does not run yet: they are kept and described, so tools
//! that manage them work.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use strata_controller::Configs;
use tracing::warn;

use crate::broker::TopicFailure;
use crate::settings::{BrokerSettings, broker_to_topic_key};

/// Kafka's name of the topic default that allows unclean leader elections, read by the controller from the
/// cluster-wide broker configs.
const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Broker keys that are neither a topic default nor in [`broker_to_topic_key`] yet are applied live.
const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.retention.hours",
    "log.retention.minutes",
    "log.roll.hours",
    "min.insync.replicas",
    "log.cleaner.dedupe.buffer.size",
    UNCLEAN_LEADER_ELECTION,
];

/// Whether `key` may be changed while brokers run (KIP-226's dynamic update mode, restricted to what Strata
/// applies live).
pub fn broker_key_is_dynamic(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key) || broker_to_topic_key(key).is_some()
}

/// Kafka's list-typed configs, by resource: the only ones IncrementalAlterConfigs may APPEND to or SUBTRACT
/// from. Their values are comma-separated lists.
pub fn is_list(key: &str) -> bool {
    matches!(
        key,
        "cleanup.policy"
            | "leader.replication.throttled.replicas"
            | "follower.replication.throttled.replicas"
            | "log.cleanup.policy"
    )
}

/// Kafka's default of a list-typed config, which APPEND and SUBTRACT start from when the resource has no
/// value of its own (Kafka's `ConfigurationControlManager.getParts`).
pub fn list_default(key: &str) -> &'static str {
    match key {
        "cleanup.policy" | "log.cleanup.policy" => "delete",
        _ => "",
    }
}

/// A refused broker config change: INVALID_REQUEST, as Kafka answers for a read-only or invalid broker
/// config.
fn refused_broker(message: String) -> TopicFailure {
    TopicFailure {
        error: ResponseError::InvalidRequest,
        message,
    }
}

/// Checks the new dynamic configs of broker resource `resource` (a broker id, or "" for the cluster-wide
/// defaults) against the static settings.
pub fn validate_broker(
    static_settings: &BrokerSettings,
    resource: &str,
    configs: &Configs,
) -> Result<(), TopicFailure> {
    let mut scratch = static_settings.clone();
    for (key, value) in configs {
        if !broker_key_is_dynamic(key) {
            return Err(refused_broker(format!(
                "`{key}` cannot be updated dynamically: it is read-only (set it with --set at start), or not \
                 a broker setting"
            )));
        }
        if key == UNCLEAN_LEADER_ELECTION {
            if !resource.is_empty() {
                return Err(refused_broker(format!(
                    "`{key}` is read by the controller from the cluster-wide default only: set it on the broker \
                     resource with the empty name"
                )));
            }
            if !matches!(value.as_str(), "true" | "false") {
                return Err(refused_broker(format!("`{key}` = `{value}` is not true or false")));
            }
            continue;
        }
        scratch.set(key, value).map_err(|e| refused_broker(e.to_string()))?;
    }
    Ok(())
}

/// The settings in force on a broker: `static_settings`, then the cluster-wide dynamic configs, then this
/// broker's own (Kafka's order of precedence).
pub fn effective(
    static_settings: &BrokerSettings,
    cluster: Option<&Configs>,
    node: Option<&Configs>,
) -> BrokerSettings {
    let mut settings = static_settings.clone();
    for configs in [cluster, node].into_iter().flatten() {
        for (key, value) in configs {
            if key == UNCLEAN_LEADER_ELECTION {
                continue;
            }
            // Checked when written; a value the static settings of this run refuse is skipped, loudly.
            if let Err(e) = settings.set(key, value) {
                warn!(key, value, error = %e, "a dynamic broker config is not applied");
            }
        }
    }
    settings
}

/// Kafka's `ConfigSource` codes of dynamic broker configs.
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;

/// One broker setting as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub name: String,
    pub value: String,
    pub source: i8,
    pub read_only: bool,
}

/// A broker's settings as DescribeConfigs shows them: every setting with the value in force and where it
/// comes from, plus dynamic keys that are set but not otherwise listed.
pub fn describe_broker(settings: &BrokerSettings, cluster: Option<&Configs>, node: Option<&Configs>) -> Vec<Described> {
    let source = |key: &str| {
        if node.is_some_and(|c| c.contains_key(key)) {
            SOURCE_DYNAMIC_BROKER
        } else if cluster.is_some_and(|c| c.contains_key(key)) {
            SOURCE_DYNAMIC_DEFAULT_BROKER
        } else {
            SOURCE_STATIC_BROKER
        }
    };
    let mut described: Vec<Described> = settings
        .describe_broker()
        .into_iter()
        .map(|(name, value)| Described {
            name: name.to_owned(),
            value,
            source: source(name),
            read_only: !broker_key_is_dynamic(name),
        })
        .collect();
    let unclean = cluster
        .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION))
        .cloned()
        .unwrap_or_else(|| "false".into());
    described.push(Described {
        name: UNCLEAN_LEADER_ELECTION.into(),
        value: unclean,
        source: source(UNCLEAN_LEADER_ELECTION),
        read_only: false,
    });
    for configs in [node, cluster].into_iter().flatten() {
        for (key, value) in configs {
            if !described.iter().any(|d| d.name == *key) {
                described.push(Described {
                    name: key.clone(),
                    value: value.clone(),
                    source: source(key),
                    read_only: false,
                });
            }
        }
    }
    described
}

/// The cluster-wide dynamic defaults as DescribeConfigs shows them for the broker resource with the empty
/// name: only what is set there, as Kafka shows it.
pub fn describe_cluster_defaults(cluster: Option<&Configs>) -> Vec<Described> {
    cluster
        .into_iter()
        .flatten()
        .map(|(key, value)| Described {
            name: key.clone(),
            value: value.clone(),
            source: SOURCE_DYNAMIC_DEFAULT_BROKER,
            read_only: false,
        })
        .collect()
}

/// One group config: Kafka's name, its default (the broker's `group.*` setting of the same meaning) and the
/// bounds the broker allows (Kafka's `group.*.min/max.*` broker settings, at their defaults).
#[derive(Debug, Clone, Copy)]
struct GroupKey {
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
}

const GROUP_KEYS: &[GroupKey] = &[
    GroupKey {
        name: "consumer.session.timeout.ms",
        default: 45_000,
        min: 45_000,
        max: 60_000,
    },
    GroupKey {
        name: "consumer.heartbeat.interval.ms",
        default: 5_000,
        min: 5_000,
        max: 15_000,
    },
    GroupKey {
        name: "share.session.timeout.ms",
        default: 45_000,
        min: 45_000,
        max: 60_000,
    },
    GroupKey {
        name: "share.heartbeat.interval.ms",
        default: 5_000,
        min: 5_000,
        max: 15_000,
    },
    GroupKey {
        name: "share.record.lock.duration.ms",
        default: 30_000,
        min: 15_000,
        max: 60_000,
    },
];

/// The one string-valued group config and its values.
const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
const SHARE_AUTO_OFFSET_RESET_VALUES: &[&str] = &["latest", "earliest"];

/// Strata's own group config (modelled on KIP-1191, which no Kafka release has yet): the topic that share
/// records archived without being accepted (rejected, or delivered `group.share.delivery.count.limit` times)
/// are copied to. Unset, they are only archived.
pub const SHARE_DEAD_LETTER_TOPIC: &str = "errors.deadletterqueue.topic.name";

/// A refused group config: INVALID_CONFIG, as Kafka's `GroupConfig.validate` answers.
fn refused_group(message: String) -> TopicFailure {
    TopicFailure {
        error: ResponseError::InvalidConfig,
        message,
    }
}

/// Checks a group's new configs (all of them, after the change): known names, integers within the broker's
/// bounds, and each session timeout above its heartbeat interval.
pub fn validate_group(configs: &Configs) -> Result<(), TopicFailure> {
    let mut values: BTreeMap<&str, i64> = GROUP_KEYS.iter().map(|k| (k.name, k.default)).collect();
    for (key, value) in configs {
        if key == SHARE_DEAD_LETTER_TOPIC {
            crate::broker::validate_topic_name(value).map_err(|e| refused_group(format!("`{key}`: {}", e.message)))?;
            continue;
        }
        if key == SHARE_AUTO_OFFSET_RESET {
            if !SHARE_AUTO_OFFSET_RESET_VALUES.contains(&value.as_str()) {
                return Err(refused_group(format!(
                    "`{key}` = `{value}` is not one of {SHARE_AUTO_OFFSET_RESET_VALUES:?}"
                )));
            }
            continue;
        }
        let Some(def) = GROUP_KEYS.iter().find(|k| k.name == key) else {
            return Err(refused_group(format!("unknown group config name: {key}")));
        };
        let parsed: i64 = value
            .trim()
            .parse()
            .ok()
            .filter(|v| i32::try_from(*v).is_ok())
            .ok_or_else(|| refused_group(format!("`{key}` = `{value}` is not an int")))?;
        if !(def.min..=def.max).contains(&parsed) {
            return Err(refused_group(format!(
                "`{key}` = `{value}` is outside the broker's bounds {}..={}",
                def.min, def.max
            )));
        }
        values.insert(def.name, parsed);
    }
    for protocol in ["consumer", "share"] {
        let session = values[format!("{protocol}.session.timeout.ms").as_str()];
        let heartbeat = values[format!("{protocol}.heartbeat.interval.ms").as_str()];
        if session <= heartbeat {
            return Err(refused_group(format!(
                "{protocol}.session.timeout.ms ({session}) must be greater than {protocol}.heartbeat.interval.ms \
                 ({heartbeat})"
            )));
        }
    }
    Ok(())
}

/// Every group config with its value for a group with `overrides`, and whether it is the group's own.
pub fn describe_group(overrides: Option<&Configs>) -> Vec<(&'static str, String, bool)> {
    let own = |key: &str| overrides.and_then(|c| c.get(key)).cloned();
    let mut described: Vec<(&'static str, String, bool)> = GROUP_KEYS
        .iter()
        .map(|k| match own(k.name) {
            Some(value) => (k.name, value, true),
            None => (k.name, k.default.to_string(), false),
        })
        .collect();
    if let Some(topic) = own(SHARE_DEAD_LETTER_TOPIC) {
        described.push((SHARE_DEAD_LETTER_TOPIC, topic, true));
    }
    described.push(match own(SHARE_AUTO_OFFSET_RESET) {
        Some(value) => (SHARE_AUTO_OFFSET_RESET, value, true),
        None => (
            SHARE_AUTO_OFFSET_RESET,
            SHARE_AUTO_OFFSET_RESET_VALUES[0].to_owned(),
            false,
        ),
    });
    described
}

/// The Kafka config type code of a group config, for DescribeConfigs v3+.
pub fn group_config_is_int(key: &str) -> bool {
    GROUP_KEYS.iter().any(|k| k.name == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Configs {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_live_keys_are_dynamic() {
        let settings = BrokerSettings::default();
        assert!(validate_broker(&settings, "1", &configs(&[("log.retention.ms", "1000")])).is_ok());
        assert!(validate_broker(&settings, "", &configs(&[("log.cleanup.policy", "compact")])).is_ok());
        assert!(validate_broker(&settings, "", &configs(&[("unclean.leader.election.enable", "true")])).is_ok());
        for (resource, key, value) in [
            ("1", "num.partitions", "3"),
            ("1", "auto.create.topics.enable", "false"),
            ("1", "no.such.setting", "1"),
            ("1", "log.retention.ms", "soon"),
            ("1", "unclean.leader.election.enable", "true"),
            ("", "unclean.leader.election.enable", "maybe"),
        ] {
            let refused = validate_broker(&settings, resource, &configs(&[(key, value)])).unwrap_err();
            assert_eq!(refused.error, ResponseError::InvalidRequest, "{key}={value}");
        }
    }

    #[test]
    fn a_brokers_own_config_wins_over_the_cluster_default() {
        let mut settings = BrokerSettings::default();
        settings.set("log.retention.ms", "100").unwrap();
        let cluster = configs(&[("log.retention.ms", "200"), ("log.segment.bytes", "1048576")]);
        let node = configs(&[("log.retention.ms", "300")]);
        let live = effective(&settings, Some(&cluster), Some(&node));
        assert_eq!((live.log.retention_ms, live.log.segment_bytes), (Some(300), 1 << 20));
        assert_eq!(effective(&settings, Some(&cluster), None).log.retention_ms, Some(200));
        let described = describe_broker(&live, Some(&cluster), Some(&node));
        let shown = |name: &str| described.iter().find(|d| d.name == name).unwrap().clone();
        assert_eq!(
            (
                shown("log.retention.ms").value.as_str(),
                shown("log.retention.ms").source
            ),
            ("300", 2)
        );
        assert_eq!(shown("log.segment.bytes").source, 3);
        assert!(shown("num.partitions").read_only);
    }

    #[test]
    fn group_configs_are_bounded_as_kafka_bounds_them() {
        assert!(validate_group(&configs(&[("consumer.session.timeout.ms", "50000")])).is_ok());
        assert!(validate_group(&configs(&[("share.auto.offset.reset", "earliest")])).is_ok());
        assert!(validate_group(&configs(&[(SHARE_DEAD_LETTER_TOPIC, "jobs.dlq")])).is_ok());
        for (key, value) in [
            (SHARE_DEAD_LETTER_TOPIC, "bad name"),
            ("consumer.session.timeout.ms", "1000"),
            ("consumer.session.timeout.ms", "60001"),
            ("consumer.heartbeat.interval.ms", "x"),
            ("share.auto.offset.reset", "none"),
            ("consumer.rebalance.timeout", "1"),
        ] {
            let refused = validate_group(&configs(&[(key, value)])).unwrap_err();
            assert_eq!(refused.error, ResponseError::InvalidConfig, "{key}={value}");
        }
        let described = describe_group(Some(&configs(&[("consumer.heartbeat.interval.ms", "6000")])));
        assert!(described.contains(&("consumer.heartbeat.interval.ms", "6000".into(), true)));
        assert!(described.contains(&("consumer.session.timeout.ms", "45000".into(), false)));
    }
}

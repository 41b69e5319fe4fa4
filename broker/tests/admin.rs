//! The admin surface of Kafka 4 as clients use it: IncrementalAlterConfigs' list operations, dynamic broker
//! configs, group configs, ListGroups v5, KIP-430's authorized operations, manual replica assignments, and a
//! transactional producer told at once that transactions are not supported.
//!
//! The rdkafka crate is used wherever it exposes the API (AlterConfigs, DescribeConfigs, CreateTopics with
//! a replica assignment, CreatePartitions, the transactional producer); IncrementalAlterConfigs, ListGroups
//! and the authorized-operations flags are not exposed by it, so those requests are sent as raw frames.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Server;
use common::cluster::Cluster;
use common::raw;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListGroupsRequest, ListGroupsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Kafka's error codes, as the responses carry them.
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

/// Kafka's `ConfigResource.Type` codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;

/// Kafka's `AlterConfigOp.OpType` codes.
const SET: i8 = 0;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    config
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().unwrap()
}

async fn create_topic(bootstrap: &str, name: &str) {
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    let created = admin(bootstrap)
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

/// A setting of `resource` as DescribeConfigs (through librdkafka) shows it: value and source.
async fn described(bootstrap: &str, resource: ResourceSpecifier<'_>, key: &str) -> Option<(String, ConfigSource)> {
    let described = admin(bootstrap)
        .describe_configs([&resource], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().expect("described");
    resource
        .entries
        .into_iter()
        .find(|e| e.name == key)
        .map(|e| (e.value.unwrap_or_default(), e.source))
}

/// A setting of `resource` as DescribeConfigs v4 shows it, as a raw frame: value and source code. (The
/// rdkafka crate refuses a response with Kafka 4's source GROUP_CONFIG, 8, which librdkafka knows.)
fn described_raw(server: &Server, resource_type: i8, name: &str, key: &str) -> Option<(String, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configuration_keys(Some(vec![StrBytes::from_string(key.to_owned())])),
    ]);
    let mut stream = raw::connect(server);
    stream
        .write_all(&raw::frame(ApiKey::DescribeConfigs, 4, &request))
        .unwrap();
    let response: DescribeConfigsResponse = raw::response(&mut stream, ApiKey::DescribeConfigs, 4);
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    result
        .configs
        .first()
        .map(|c| (c.value.as_deref().unwrap_or_default().to_owned(), c.config_source))
}

/// IncrementalAlterConfigs on one resource, as a raw frame: the resource's error code and message.
fn incremental_alter(server: &Server, resource_type: i8, name: &str, ops: &[(&str, i8, &str)]) -> (i16, String) {
    let configs = ops
        .iter()
        .map(|(key, op, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string((*key).to_owned()))
                .with_config_operation(*op)
                .with_value(Some(StrBytes::from_string((*value).to_owned())))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_owned()))
            .with_configs(configs),
    ]);
    let mut stream = raw::connect(server);
    stream
        .write_all(&raw::frame(ApiKey::IncrementalAlterConfigs, 1, &request))
        .unwrap();
    let response: IncrementalAlterConfigsResponse = raw::response(&mut stream, ApiKey::IncrementalAlterConfigs, 1);
    let answer = &response.responses[0];
    (
        answer.error_code,
        answer.error_message.as_deref().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_and_subtract_edit_list_configs_and_refuse_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server.addr, "policies").await;
    let topic = ResourceSpecifier::Topic("policies");
    let policy = || async { described(&server.addr, topic, "cleanup.policy").await.unwrap().0 };

    // From Kafka's default, `delete`: APPEND adds, an item already there is not repeated.
    assert_eq!(
        incremental_alter(&server, TOPIC, "policies", &[("cleanup.policy", APPEND, "compact")]).0,
        0
    );
    assert_eq!(policy().await, "compact,delete");
    assert_eq!(
        incremental_alter(&server, TOPIC, "policies", &[("cleanup.policy", APPEND, "compact")]).0,
        0
    );
    assert_eq!(policy().await, "compact,delete");
    assert_eq!(
        incremental_alter(&server, TOPIC, "policies", &[("cleanup.policy", SUBTRACT, "delete")]).0,
        0
    );
    assert_eq!(policy().await, "compact");

    // Not a list: INVALID_CONFIG, and nothing changes.
    let (code, message) = incremental_alter(&server, TOPIC, "policies", &[("retention.ms", APPEND, "5")]);
    assert_eq!(code, INVALID_CONFIG, "{message}");
    assert!(message.contains("not LIST"), "{message}");
    let (code, _) = incremental_alter(
        &server,
        TOPIC,
        "policies",
        &[("cleanup.policy", SUBTRACT, "compact"), ("retention.ms", SUBTRACT, "5")],
    );
    assert_eq!(code, INVALID_CONFIG);
    assert_eq!(policy().await, "compact", "a refused resource changes nothing");
    // SET still works alongside.
    assert_eq!(
        incremental_alter(&server, TOPIC, "policies", &[("retention.ms", SET, "60000")]).0,
        0
    );
    assert_eq!(
        described(&server.addr, topic, "retention.ms").await,
        Some(("60000".into(), ConfigSource::DynamicTopic))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_broker_configs_apply_at_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    create_topic(&server.addr, "sized").await;
    let producer: FutureProducer = config(&server.addr)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let big = "b".repeat(5000);
    let send = async |payload: &str| {
        let record = FutureRecord::to("sized").partition(0).key("k").payload(payload);
        producer.send(record, Duration::from_secs(10)).await
    };
    send(&big).await.unwrap();

    // Cluster-wide, through librdkafka's AlterConfigs on the broker resource with the empty name is not
    // expressible (it names brokers by id), so the cluster-wide default goes as a raw frame; this broker's
    // own override goes through librdkafka.
    let (code, message) = incremental_alter(&server, BROKER, "", &[("message.max.bytes", SET, "1000")]);
    assert_eq!(code, 0, "{message}");
    let refused = send(&big).await;
    assert!(
        matches!(
            refused,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _))
        ),
        "the cluster-wide message.max.bytes applies at once: {refused:?}"
    );
    assert_eq!(
        described(&server.addr, ResourceSpecifier::Topic("sized"), "max.message.bytes").await,
        Some(("1000".into(), ConfigSource::DynamicDefaultBroker)),
        "topics inherit the new default"
    );

    let alter = AlterConfig::new(ResourceSpecifier::Broker(1)).set("message.max.bytes", "100000");
    let altered = admin(&server.addr)
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    send(&big)
        .await
        .expect("this broker's own value wins over the cluster-wide one");
    assert_eq!(
        described(&server.addr, ResourceSpecifier::Broker(1), "message.max.bytes").await,
        Some(("100000".into(), ConfigSource::DynamicBroker))
    );

    // Read-only settings are refused as Kafka refuses them, and so is another broker's id.
    let (code, message) = incremental_alter(&server, BROKER, "1", &[("num.partitions", SET, "3")]);
    assert_eq!(code, INVALID_REQUEST, "{message}");
    assert!(message.contains("cannot be updated dynamically"), "{message}");
    assert_eq!(
        incremental_alter(&server, BROKER, "7", &[("log.retention.ms", SET, "1")]).0,
        INVALID_REQUEST
    );
    assert_eq!(
        described(&server.addr, ResourceSpecifier::Broker(1), "num.partitions").await,
        Some(("1".into(), ConfigSource::StaticBroker))
    );

    // Kept as metadata: a restart applies them again.
    server.terminate(Duration::from_secs(30));
    server.restart();
    assert_eq!(
        described(&server.addr, ResourceSpecifier::Broker(1), "message.max.bytes").await,
        Some(("100000".into(), ConfigSource::DynamicBroker))
    );
    let (code, _) = incremental_alter(&server, BROKER, "1", &[("message.max.bytes", SUBTRACT, "1")]);
    assert_eq!(code, INVALID_CONFIG, "message.max.bytes is not a list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_configs_are_bounded_described_with_defaults_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let group = ResourceSpecifier::Group("payments");
    let key = "consumer.session.timeout.ms";
    assert_eq!(
        described(&server.addr, group, key)
            .await
            .map(|(value, _)| value)
            .as_deref(),
        Some("45000"),
        "a group without configs shows the defaults"
    );
    assert_eq!(
        incremental_alter(&server, GROUP, "payments", &[(key, SET, "50000")]).0,
        0
    );
    let alter = AlterConfig::new(group)
        .set(key, "50000")
        .set("share.auto.offset.reset", "earliest");
    let altered = admin(&server.addr)
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    for (key, value) in [
        ("consumer.session.timeout.ms", "1000"),
        ("consumer.heartbeat.interval.ms", "60000"),
        ("consumer.no.such.setting", "1"),
    ] {
        let (code, message) = incremental_alter(&server, GROUP, "payments", &[(key, SET, value)]);
        assert_eq!(code, INVALID_CONFIG, "{key}={value}: {message}");
    }
    server.terminate(Duration::from_secs(30));
    server.restart();
    const SOURCE_GROUP: i8 = 8;
    assert_eq!(
        described_raw(&server, GROUP, "payments", key),
        Some(("50000".into(), SOURCE_GROUP))
    );
    assert_eq!(
        described_raw(&server, GROUP, "payments", "share.auto.offset.reset"),
        Some(("earliest".into(), SOURCE_GROUP))
    );
    assert_eq!(
        described_raw(&server, GROUP, "payments", "consumer.heartbeat.interval.ms"),
        Some(("5000".into(), 5)),
        "the defaults of what the group did not set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_groups_v5_filters_by_type_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    create_topic(&server.addr, "listed").await;
    // A group known by its committed offsets: an empty classic group.
    let consumer: BaseConsumer = config(&server.addr)
        .set("group.id", "listed-group")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset("listed", 0, Offset::Offset(0)).unwrap();
    consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync).unwrap();

    let list = |types: &[&str], states: &[&str]| {
        let strings = |items: &[&str]| items.iter().map(|s| StrBytes::from_string((*s).to_owned())).collect();
        let request = ListGroupsRequest::default()
            .with_types_filter(strings(types))
            .with_states_filter(strings(states));
        let mut stream = raw::connect(&server);
        stream.write_all(&raw::frame(ApiKey::ListGroups, 5, &request)).unwrap();
        let response: ListGroupsResponse = raw::response(&mut stream, ApiKey::ListGroups, 5);
        assert_eq!(response.error_code, 0);
        response
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.group_id.to_string(),
                    g.group_type.to_string(),
                    g.group_state.to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let listed = vec![("listed-group".to_owned(), "classic".to_owned(), "Empty".to_owned())];
    assert_eq!(list(&[], &[]), listed);
    assert_eq!(
        list(&["Classic"], &["empty"]),
        listed,
        "filters match case-insensitively"
    );
    assert_eq!(list(&["consumer"], &[]), vec![], "no KIP-848 consumer groups");
    assert_eq!(list(&["classic"], &["Stable"]), vec![]);
}

#[test]
fn authorized_operations_are_given_when_asked_and_the_sentinel_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let metadata = |asked: bool| {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("ops")))),
            ]))
            .with_allow_auto_topic_creation(true)
            .with_include_topic_authorized_operations(asked);
        let mut stream = raw::connect(&server);
        stream.write_all(&raw::frame(ApiKey::Metadata, 12, &request)).unwrap();
        let response: MetadataResponse = raw::response(&mut stream, ApiKey::Metadata, 12);
        response.topics[0].topic_authorized_operations
    };
    assert_eq!(metadata(false), i32::MIN);
    // No ACLs: everything Kafka's ACLs know for a topic (READ..ALTER_CONFIGS), as Kafka without an
    // authorizer answers.
    assert_eq!(metadata(true), 0b1101_1111_1000);
    let cluster = |asked: bool| {
        let request = DescribeClusterRequest::default().with_include_cluster_authorized_operations(asked);
        let mut stream = raw::connect(&server);
        stream
            .write_all(&raw::frame(ApiKey::DescribeCluster, 1, &request))
            .unwrap();
        let response: DescribeClusterResponse = raw::response(&mut stream, ApiKey::DescribeCluster, 1);
        response.cluster_authorized_operations
    };
    assert_eq!(cluster(false), i32::MIN);
    assert_eq!(cluster(true), 0b1_1111_1010_0000);
}

#[test]
fn a_transactional_producer_fails_at_once_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let producer: BaseProducer = config(&server.addr)
        .set("transactional.id", "orders-tx")
        .create()
        .unwrap();
    let started = Instant::now();
    let error = producer
        .init_transactions(Duration::from_secs(60))
        .expect_err("transactions are not supported");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "failed after {took:?}, not at once");
    let text = error.to_string();
    assert!(text.contains("transactions are not supported"), "{text}");
    // The idempotent producer, which needs no transaction coordinator, still works.
    let idempotent: BaseProducer = config(&server.addr).set("enable.idempotence", "true").create().unwrap();
    idempotent
        .send(rdkafka::producer::BaseRecord::to("plain").key("k").payload("v"))
        .unwrap();
    assert_eq!(
        idempotent.flush(Duration::from_secs(30)).map_err(|e| e.to_string()),
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_replica_assignments_place_replicas_as_asked() {
    let cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    let admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let assignment: &[&[i32]] = &[&[3, 1], &[2, 3], &[1, 2]];
    // The rdkafka crate wants the partition count to match; librdkafka sends -1 and -1 with an assignment.
    let topic = NewTopic::new("placed", 3, TopicReplication::Variable(assignment));
    let created = admin.create_topics([&topic], &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let grow_to: &[&[i32]] = &[&[2, 1]];
    let grown = admin
        .create_partitions([&NewPartitions::new("placed", 4).assign(grow_to)], &options)
        .await
        .unwrap();
    assert!(grown.iter().all(Result::is_ok), "{grown:?}");

    let expected: Vec<(i32, Vec<i32>)> = assignment
        .iter()
        .chain(grow_to)
        .map(|replicas| (replicas[0], replicas.to_vec()))
        .collect();
    let consumer: BaseConsumer = config(&bootstrap).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = consumer
            .fetch_metadata(Some("placed"), Duration::from_secs(10))
            .unwrap();
        let placed: Vec<(i32, Vec<i32>)> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.leader(), p.replicas().to_vec()))
            .collect();
        if placed == expected {
            break;
        }
        assert!(Instant::now() < deadline, "placed {placed:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Kafka's refusals: a broker twice, an unknown broker, partitions of unequal replica counts, and a new
    // partition with fewer replicas than the topic's.
    let refusals: [(&str, &[&[i32]]); 3] = [
        ("twice", &[&[1, 1]]),
        ("unknown", &[&[1, 9]]),
        ("unequal", &[&[1, 2], &[3]]),
    ];
    for (name, assignment) in refusals {
        let topic = NewTopic::new(name, assignment.len() as i32, TopicReplication::Variable(assignment));
        let result = admin.create_topics([&topic], &options).await.unwrap();
        assert!(
            matches!(&result[0], Err((_, RDKafkaErrorCode::InvalidReplicaAssignment))),
            "{name}: {result:?}"
        );
    }
    let short: &[&[i32]] = &[&[1]];
    let result = admin
        .create_partitions([&NewPartitions::new("placed", 5).assign(short)], &options)
        .await
        .unwrap();
    assert!(
        matches!(&result[0], Err((_, RDKafkaErrorCode::InvalidReplicaAssignment))),
        "{result:?}"
    );
}

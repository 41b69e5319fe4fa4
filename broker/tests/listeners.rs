//! Several Kafka listeners per broker, with Kafka's `listeners`, `advertised.listeners`,
//! `listener.security.protocol.map` and `inter.broker.listener.name`: a client is answered with the addresses
//! of the listener it connected to (Metadata, FindCoordinator, DescribeCluster), real clients work through
//! any of them, and brokers replicate over the inter-broker listener whatever the others advertise.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Server, Starting, consume};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strata_protocol::client::Client;
use strata_protocol::client::admin::NewTopic;

/// Bound for what a loaded machine takes a while to do (start, elect, replicate).
const SLOW: Duration = Duration::from_secs(60);

/// A free loopback port (released again, so another process could take it first; unlikely here), never one
/// this process was handed before: the kernel may hand a released port out again at once, and two listeners
/// of one node once got the same port.
fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Where one node's listeners are bound: INTERNAL (advertised as 127.0.0.1), EXTERNAL (advertised as
/// `localhost`), and DECOY, listed first and advertised at a port nothing listens on.
struct Ports {
    internal: u16,
    external: u16,
    decoy: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            internal: free_port(),
            external: free_port(),
            decoy: free_port(),
        }
    }

    fn flags(&self) -> Vec<String> {
        let Ports {
            internal,
            external,
            decoy,
        } = self;
        vec![
            "--listeners".into(),
            format!("DECOY://127.0.0.1:{decoy},INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}"),
            "--advertised-listeners".into(),
            format!("DECOY://127.0.0.1:1,INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{external}"),
            "--listener-security-protocol-map".into(),
            "DECOY:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".into(),
            "--inter-broker-listener-name".into(),
            "INTERNAL".into(),
        ]
    }
}

/// The brokers (id, host, port) and the group coordinator that a client of `addr` is told about.
async fn told(addr: &str, group: &str) -> (Vec<(i32, String, i32)>, (String, i32)) {
    let mut client = Client::connect(addr).await.unwrap();
    let metadata = client.metadata(None, false).await.unwrap();
    let mut brokers: Vec<_> = metadata
        .brokers
        .into_iter()
        .map(|b| (b.node_id, b.host, b.port))
        .collect();
    brokers.sort();
    let coordinator = client.find_coordinator(group).await.unwrap();
    (brokers, (coordinator.host, coordinator.port))
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

async fn produce(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    let producer = producer(bootstrap);
    let values: Vec<String> = (0..count).map(|i| format!("{topic}-{i}")).collect();
    for value in &values {
        let record = FutureRecord::<(), _>::to(topic).partition(0).payload(value);
        producer.send(record, SLOW).await.expect("acknowledged");
    }
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn each_client_is_told_the_addresses_of_the_listener_it_connected_to() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let server: Server = Server::spawn(dir.path(), vec![], "", ports.flags()).wait();
    let internal = format!("127.0.0.1:{}", ports.internal);
    let external = format!("localhost:{}", ports.external);

    let (brokers, coordinator) = told(&internal, "g").await;
    assert_eq!(brokers, [(1, "127.0.0.1".to_owned(), ports.internal as i32)]);
    assert_eq!(coordinator, ("127.0.0.1".to_owned(), ports.internal as i32));
    let (brokers, coordinator) = told(&format!("127.0.0.1:{}", ports.external), "g").await;
    assert_eq!(brokers, [(1, "localhost".to_owned(), ports.external as i32)]);
    assert_eq!(coordinator, ("localhost".to_owned(), ports.external as i32));
    let mut client = Client::connect(&format!("127.0.0.1:{}", ports.external)).await.unwrap();
    let cluster = client.describe_cluster().await.unwrap();
    assert_eq!(
        cluster
            .brokers
            .iter()
            .map(|b| (b.host.as_str(), b.port))
            .collect::<Vec<_>>(),
        [("localhost", ports.external as i32)]
    );

    // librdkafka bootstraps, is redirected to the advertised address and works through either listener.
    let sent = produce(&external, "through-external", 5).await;
    assert_eq!(consume(&internal, "through-external", 5), sent);
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn brokers_replicate_over_the_inter_broker_listener() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = 3;
    let ports: Vec<Ports> = (0..nodes).map(|_| Ports::free()).collect();
    let controller_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
    let voters = (0..nodes)
        .map(|i| format!("{}@127.0.0.1:{}", i + 1, controller_ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let starting: Vec<Starting> = (0..nodes)
        .map(|i| {
            let data = dir.path().join(format!("node-{}", i + 1));
            std::fs::create_dir_all(&data).unwrap();
            let mut flags = ports[i].flags();
            flags.extend([
                "--node-id".into(),
                (i + 1).to_string(),
                "--controller-voters".into(),
                voters.clone(),
                "--controller-listen".into(),
                format!("127.0.0.1:{}", controller_ports[i]),
            ]);
            Server::spawn(&data, vec!["min.insync.replicas=3".into()], "", flags)
        })
        .collect();
    let servers: Vec<Server> = starting.into_iter().map(Starting::wait).collect();
    let external: Vec<String> = ports.iter().map(|p| format!("localhost:{}", p.external)).collect();

    let mut client = Client::connect(&external[0]).await.unwrap();
    client
        .create_topic(&NewTopic {
            name: "replicated".into(),
            partitions: 1,
            replication_factor: 3,
            configs: vec![],
        })
        .await
        .unwrap();
    // acks=all with min.insync.replicas=3 is acknowledged only once both followers fetched, which they do
    // from the leader's INTERNAL address: DECOY, listed first, is advertised where nothing listens.
    let sent = produce(&external.join(","), "replicated", 20).await;
    assert_eq!(consume(&external[2], "replicated", 20), sent);
    let (brokers, _) = told(&format!("127.0.0.1:{}", ports[1].external), "g").await;
    let expected: Vec<_> = (0..nodes)
        .map(|i| (i as i32 + 1, "localhost".to_owned(), ports[i].external as i32))
        .collect();
    assert_eq!(brokers, expected);
    drop(servers);
}

//! The server process itself: its HTTP endpoint, its configuration sources, and its data directory.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, http_get};

#[test]
fn health_and_metrics_are_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(http_get(&server.http_addr, "/health"), (200, "ok\n".to_owned()));
    let (status, metrics) = http_get(&server.http_addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE strata_requests_total counter"), "{metrics}");
    assert!(metrics.contains("strata_partitions 0"), "{metrics}");
    assert_eq!(http_get(&server.http_addr, "/nothing").0, 404);
}

#[test]
fn a_data_directory_keeps_its_node_id_and_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let properties = std::fs::read_to_string(dir.path().join("meta.properties")).unwrap();
    assert!(
        properties.contains("node.id=1\n") && properties.contains("cluster.id="),
        "{properties}"
    );

    // A second server on the same directory is refused while the first runs.
    let second = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "server",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--http-listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another Strata"),
        "{second:?}"
    );

    assert!(server.terminate(Duration::from_secs(10)).success());
    // The same directory under another node id is refused: its data belongs to node 1.
    let other = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "server",
            "--node-id",
            "2",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("belongs to node 1"));
}

#[tokio::test]
async fn settings_come_from_flags_and_file_and_bad_ones_stop_the_start() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("strata.toml");
    let file = "log-format = \"json\"\n[settings]\n\"num.partitions\" = \"4\"\n\"log.retention.ms\" = \"1000\"\n";
    std::fs::write(&config, file).unwrap();
    // The file says json logs (the start-up helper reads the JSON form of the ready line) and two settings;
    // a flag overrides one of them.
    let flags = ["--config", config.to_str().unwrap()];
    let server = Server::start_with_flags(&dir.path().join("data"), &["log.retention.ms=2000"], &flags);
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &server.addr)
        .create()
        .unwrap();
    let described = admin
        .describe_configs([&ResourceSpecifier::Broker(1)], &AdminOptions::new())
        .await
        .unwrap();
    let broker = described[0].as_ref().unwrap();
    assert_eq!(broker.get("num.partitions").and_then(|e| e.value.as_deref()), Some("4"));
    assert_eq!(
        broker.get("log.retention.ms").and_then(|e| e.value.as_deref()),
        Some("2000")
    );
    drop(server);

    let refused = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "server",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--set",
            "log.segment.bytes=1",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("log.segment.bytes"),
        "the error names the setting: {stderr}"
    );
}

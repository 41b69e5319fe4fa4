//! A real `strata server` process on loopback ports, for tests: start, wait until it serves, SIGTERM,
//! SIGKILL, restart on the same data directory.

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod cli;
pub mod cluster;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to start serving (a debug build recovering a log included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    child: Child,
    pub data_dir: PathBuf,
    /// `127.0.0.1:PORT` of the Kafka listener.
    pub addr: String,
    pub http_addr: String,
    settings: Vec<String>,
    flags: Vec<String>,
}

impl Server {
    /// Starts a server on free loopback ports with its data in `data_dir` and `--set` for each setting.
    pub fn start(data_dir: &Path, settings: &[&str]) -> Server {
        Self::start_with_flags(data_dir, settings, &[])
    }

    /// Like [`Server::start`], with more `strata server` flags.
    pub fn start_with_flags(data_dir: &Path, settings: &[&str], flags: &[&str]) -> Server {
        let flags = flags.iter().map(|s| s.to_string()).collect();
        Self::start_at(
            data_dir,
            settings.iter().map(|s| s.to_string()).collect(),
            "127.0.0.1:0",
            flags,
        )
    }

    fn start_at(data_dir: &Path, settings: Vec<String>, listen: &str, flags: Vec<String>) -> Server {
        Self::spawn(data_dir, settings, listen, flags).wait()
    }

    /// Starts a server process without waiting for it to serve: nodes of a cluster must all be started
    /// before any of them can serve. `flags` may hold `--controller-listen`; otherwise a free port is used.
    pub fn spawn(data_dir: &Path, settings: Vec<String>, listen: &str, flags: Vec<String>) -> Starting {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .arg("server")
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .env("STRATA_LOG", "info,openraft=warn")
            .env_remove("STRATA_SET")
            .env_remove("STRATA_CONSOLE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Empty for a node configured with `--listeners` in `flags`.
        if !listen.is_empty() {
            command.args(["--listen", listen]);
        }
        // `flags` may put the HTTP port elsewhere (the console's tests listen beyond loopback).
        if !flags.iter().any(|f| f == "--http-listen") {
            command.args(["--http-listen", "127.0.0.1:0"]);
        }
        if !flags.iter().any(|f| f == "--controller-listen" || f == "--roles") {
            command.args(["--controller-listen", "127.0.0.1:0"]);
        }
        for setting in &settings {
            command.args(["--set", setting]);
        }
        command.args(&flags);
        let mut child = command.spawn().expect("spawning strata");
        // A thread forwards the server's log to the test output (keeping the pipe drained) and reports the
        // addresses it binds.
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[strata {name}] {line}");
                for (marker, kind) in [("Kafka listener ready", "kafka"), ("HTTP endpoint ready", "http")] {
                    if line.contains(marker)
                        && let Some(addr) = logged_addr(&line)
                    {
                        let _ = ready_tx.send((kind, addr));
                    }
                }
            }
        });
        // A controller-only node serves no Kafka listener.
        let kafka = flags
            .iter()
            .position(|f| f == "--roles")
            .and_then(|at| flags.get(at + 1))
            .is_none_or(|roles| roles.contains("broker"));
        Starting {
            child: Some(child),
            ready_rx,
            kafka,
            data_dir: data_dir.to_owned(),
            settings,
            flags,
        }
    }

    /// Sends SIGTERM and waits for the exit, which must come within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not stop within {timeout:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no flush, no checkpoint, no clean-shutdown marker.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts again on the same data directory, port and settings.
    pub fn restart(&mut self) {
        let settings = self.settings.clone();
        let addr = self.addr.clone();
        *self = Self::start_at(&self.data_dir.clone(), settings, &addr, self.flags.clone());
    }

    /// SIGSTOP: the process stays, silent (no heartbeats, no answers), until [`Server::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Server::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server process started by [`Server::spawn`], not known to serve yet.
pub struct Starting {
    child: Option<Child>,
    ready_rx: mpsc::Receiver<(&'static str, String)>,
    /// Whether the node has the broker role, and so a Kafka listener to wait for.
    kafka: bool,
    data_dir: PathBuf,
    settings: Vec<String>,
    flags: Vec<String>,
}

impl Starting {
    /// Waits until the server serves Kafka and HTTP.
    pub fn wait(mut self) -> Server {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        let (mut addr, mut http_addr) = (None, None);
        if !self.kafka {
            addr = Some(String::new());
        }
        while addr.is_none() || http_addr.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ready_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(("kafka", a)) => addr = Some(a),
                Ok((_, a)) => http_addr = Some(a),
                Err(_) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("strata exited during start-up: {status}");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "strata did not start serving within {START_TIMEOUT:?}"
                    );
                }
            }
        }
        Server {
            child,
            data_dir: self.data_dir.clone(),
            addr: addr.unwrap(),
            http_addr: http_addr.unwrap(),
            settings: std::mem::take(&mut self.settings),
            flags: std::mem::take(&mut self.flags),
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `addr` field of a log line, in the human (`addr=HOST:PORT`) or JSON (`"addr":"HOST:PORT"`) format.
fn logged_addr(line: &str) -> Option<String> {
    if let Some(rest) = line.split("\"addr\":\"").nth(1) {
        return rest.split('"').next().map(str::to_owned);
    }
    line.split("addr=").nth(1)?.split_whitespace().next().map(str::to_owned)
}

/// Milliseconds since the epoch as RFC 3339 in UTC, by GNU `date`: an oracle independent of the CLI's own
/// date arithmetic.
pub fn rfc3339(ms: i64) -> String {
    let at = format!("@{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let output = Command::new("date")
        .args(["-u", "-d", &at, "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "date: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `GET path` on the HTTP endpoint at `addr`: the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: strata\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A gauge's value in a Prometheus text page.
pub fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests and responses by hand, for tests that need exact bytes on the wire.
pub mod raw {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    use bytes::{Buf, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    const CORRELATION_ID: i32 = 7;

    pub fn connect(server: &super::Server) -> TcpStream {
        let stream = TcpStream::connect(&server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    /// One v2 batch, as the `kafka-protocol` crate encodes it with `compression`, of records with key `key`
    /// and the given values at the given offsets (deltas from the first), all stamped `timestamp_ms`.
    pub fn batch(
        compression: kafka_protocol::records::Compression,
        values: &[&'static str],
        offsets: &[i64],
        timestamp_ms: i64,
    ) -> BytesMut {
        use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let records: Vec<Record> = values
            .iter()
            .zip(offsets)
            .map(|(value, &offset)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset,
                sequence: -1,
                timestamp: timestamp_ms,
                key: Some(bytes::Bytes::from_static(b"key")),
                value: Some(bytes::Bytes::from_static(value.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
        let length = i32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
        assert_eq!(buf.len(), length + 12, "one batch");
        buf
    }

    /// A request frame: size, header, body.
    pub fn frame<B: Encodable>(api_key: ApiKey, version: i16, body: &B) -> Vec<u8> {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(CORRELATION_ID)
            .with_client_id(Some(StrBytes::from_static_str("strata-tests")))
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// Reads one response and decodes it at `version`.
    pub fn response<R: Decodable>(stream: &mut TcpStream, api_key: ApiKey, version: i16) -> R {
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).expect("a response");
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut body).unwrap();
        let mut body = bytes::Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, CORRELATION_ID);
        let decoded = R::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "the whole response was decoded");
        decoded
    }

    /// The log end offset of partition 0 of `topic`, by ListOffsets.
    pub fn log_end_offset(server: &super::Server, topic: &str) -> i64 {
        use std::io::Write;

        use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
        use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, TopicName};

        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let mut stream = connect(server);
        stream.write_all(&frame(ApiKey::ListOffsets, 5, &request)).unwrap();
        let answer: ListOffsetsResponse = response(&mut stream, ApiKey::ListOffsets, 5);
        answer.topics[0].partitions[0].offset
    }
}

/// Reads partition 0 of `topic` through `bootstrap` from its start until `count` records arrived (within a
/// minute); returns their values.
#[allow(dead_code)] // not every test binary reads records back
pub fn consume(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut values = Vec::new();
    while values.len() < count {
        assert!(Instant::now() < deadline, "consumed {} of {count}", values.len());
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    values
}

/// The Python interpreter of the tests that drive Python clients: `STRATA_PYTHON` (scripts/test sets it),
/// else the venv `scripts/python-env` makes.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("STRATA_PYTHON") {
        return python.into();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/python-env");
    let out = Command::new(script).output().expect("running scripts/python-env");
    assert!(
        out.status.success(),
        "scripts/python-env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

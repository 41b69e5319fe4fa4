//! What one client can hold is bounded, with Kafka's settings: connections per address
//! (`max.connections.per.ip`), memory for requests being read (`queued.max.request.bytes`), and time
//! (`connections.max.idle.ms`, which also ends a request that stops arriving half way).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{connect, frame, response};
use common::{Server, gauge, http_get, wait_for};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// Asks for the API versions and requires the answer.
fn api_versions(stream: &mut TcpStream) {
    stream
        .write_all(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()))
        .unwrap();
    let answer: ApiVersionsResponse = response(stream, ApiKey::ApiVersions, 3);
    assert_eq!(answer.error_code, 0);
}

/// Whether the server closed `stream` (EOF or reset) within the stream's read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        _ => false,
    }
}

#[test]
fn connections_from_one_address_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["max.connections.per.ip=2"]);
    let mut first = connect(&server);
    let mut second = connect(&server);
    api_versions(&mut first);
    api_versions(&mut second);

    let mut third = connect(&server);
    assert!(closed(&mut third), "a third connection from 127.0.0.1 is closed");
    api_versions(&mut first);

    // Closing one makes room for another.
    drop(second);
    common::wait_for("a new connection to be served", Duration::from_secs(10), || {
        let mut again = connect(&server);
        again
            .write_all(&frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()))
            .unwrap();
        !closed(&mut again)
    });
}

#[test]
fn half_a_request_does_not_hold_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "connections.max.idle.ms=2000",
            "queued.max.request.bytes=1048576",
            "socket.request.max.bytes=1048576",
        ],
    );
    // A client announces a request as large as the whole request memory, sends ten bytes of it, and stalls.
    let mut stalled = connect(&server);
    stalled.write_all(&(1_048_576i32).to_be_bytes()).unwrap();
    stalled.write_all(&[0u8; 10]).unwrap();
    let stalled_at = Instant::now();
    // The server has read the size and holds the whole pool for it before the other client asks.
    wait_for(
        "the stalled request to hold the request memory",
        Duration::from_secs(10),
        || {
            gauge(
                &http_get(&server.http_addr, "/metrics").1,
                "strata_request_bytes_in_use",
            ) == Some(1_048_576.0)
        },
    );

    // Another client's request waits for memory, and is answered once the stalled one is closed.
    let mut waiting = connect(&server);
    api_versions(&mut waiting);
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(2000),
        "answered after {:?}: before the stalled request gave its memory back",
        stalled_at.elapsed()
    );
    assert!(closed(&mut stalled), "the stalled request's connection is closed");

    // A connection that sends nothing is closed too; one that keeps talking is not.
    let mut idle = connect(&server);
    let mut busy = connect(&server);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3000) {
        api_versions(&mut busy);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        closed(&mut idle),
        "an idle connection is closed after connections.max.idle.ms"
    );
    api_versions(&mut busy);
}

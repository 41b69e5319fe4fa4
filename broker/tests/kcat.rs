//! An old client: Debian's kcat 1.7.1 on librdkafka 2.0.2, which mis-parses ApiVersions v3 responses that
//! carry tagged fields with default values. `scripts/test` installs it; without it this test fails and says
//! so, rather than passing without having run.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::Server;

fn kcat(server: &Server, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("kcat")
        .args(["-b", &server.addr, "-X", "broker.address.family=v4"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/test installs Debian's kcat)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kcat {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn kcat_on_librdkafka_2_0_produces_lists_and_consumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let lines: String = (0..500).map(|i| format!("key-{i}:value {i}\n")).collect();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        kcat(&server, &["-P", "-t", &topic, "-K", ":", "-z", codec], lines.as_bytes());
        let listed = kcat(&server, &["-L", "-t", &topic], b"");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.contains(&format!("topic \"{topic}\" with 1 partitions")),
            "{listed}"
        );
        let consumed = kcat(&server, &["-C", "-t", &topic, "-e", "-f", "%k:%s\n"], b"");
        assert_eq!(
            String::from_utf8_lossy(&consumed.stdout),
            lines,
            "{codec}: every record, in order"
        );
    }
}

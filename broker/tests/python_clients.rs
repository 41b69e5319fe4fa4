//! Python Kafka clients against a broker process. The interpreter is `STRATA_PYTHON` (scripts/test sets it),
//! else the venv `scripts/python-env` creates with the pinned clients of `scripts/python-requirements.txt`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

fn python() -> PathBuf {
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

/// Runs `broker/tests/python/<script>` with `args`; its last line of output, parsed as JSON.
fn run(script: &str, args: &[&str]) -> serde_json::Value {
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("running python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{script} printed nothing:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last:?}: {e}"))
}

/// kafka-python keeps an incremental fetch session by default: it reads a 40-partition topic whole, then
/// the records appended to two of its partitions, every record exactly once, over one session.
#[test]
fn kafka_python_consumes_through_a_fetch_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let report = run("fetch_sessions.py", &[&server.addr, "sessions"]);

    assert_eq!(
        report["produced_first"], 40,
        "one record at offset 0 of each partition: {report}"
    );
    let mut first: Vec<String> = (0..40).map(|p| format!("first-{p}")).collect();
    first.sort();
    assert_eq!(report["first_read"], serde_json::json!(first));
    let mut second: Vec<String> = (0..20).map(|i| format!("second-{i}")).collect();
    second.sort();
    assert_eq!(report["second_read"], serde_json::json!(second));
    assert_eq!(report["second_partitions"], serde_json::json!([5, 17]));
    let sessions = report["sessions"].as_object().expect("a session per broker");
    assert_eq!(sessions.len(), 1, "{report}");
    assert!(
        sessions.values().all(|id| id.as_i64().is_some_and(|id| id > 0)),
        "the broker kept the consumer's session: {report}"
    );
}

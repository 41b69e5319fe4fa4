//! The Django/Celery example (`examples/django`) and the snippets of `docs/coming-from.md`, against a real
//! `strata server` process. The app's own Django tests (`manage.py test`) are the checks of the example:
//! this file starts a node, hands them its address in `STRATA_BOOTSTRAP`, and fails with their output when
//! they fail.
//!
//! Python is `STRATA_PYTHON` (scripts/test sets it), else the venv `scripts/python-env` makes from the
//! pinned packages of `scripts/python-requirements.txt`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, python};

/// How long the Django test suite may run (it takes about 30 s on a debug build here).
const DJANGO_TESTS_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the docs' snippets may run.
const SNIPPETS_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Runs `command` to its end or `timeout` (then kills it); its exit success and its output (stdout and
/// stderr, in one file so that they interleave as they were written).
fn run(mut command: Command, timeout: Duration) -> (bool, String) {
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().join("output");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = std::fs::read_to_string(&out_path).unwrap_or_default();
    if status.is_none() {
        output.push_str(&format!("\n--- killed after {timeout:?}"));
    }
    (status.is_some_and(|s| s.success()), output)
}

/// The example's Django tests, against one node: an order posted to the view is published (idempotent,
/// acks=all), the order worker processes it in a group and commits, a Celery task goes through Strata and
/// runs, and a group replays from an earlier offset.
#[test]
fn the_django_examples_own_tests_pass_against_strata() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("node"), &[]);
    let app = repo().join("examples/django");
    let mut command = Command::new(python());
    command
        .args(["manage.py", "test", "orders", "--verbosity", "2"])
        .current_dir(&app)
        .env("STRATA_BOOTSTRAP", &server.addr)
        .env("SHOP_DATA_DIR", dir.path().join("shop"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let (ok, output) = run(command, DJANGO_TESTS_TIMEOUT);
    assert!(ok, "manage.py test failed:\n{output}");
    assert!(output.contains("Ran 6 tests"), "{output}");
}

/// Every Strata snippet of docs/coming-from.md runs, in order, against one node, and does what the page
/// says (broker/tests/python/coming_from.py extracts them and checks what they did).
#[test]
fn the_coming_from_snippets_run_against_strata() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut command = Command::new(python());
    command
        .arg(repo().join("broker/tests/python/coming_from.py"))
        .arg(&server.addr)
        .arg(repo().join("docs/coming-from.md"));
    let (ok, output) = run(command, SNIPPETS_TIMEOUT);
    assert!(ok, "coming_from.py failed:\n{output}");
}

/// The example's compose file is one Compose accepts: `config` resolves and validates it without an engine
/// or an image. The tool is docker-compose 1.29 (Debian's, what this machine has), or `docker compose` v2
/// where that is missing.
#[test]
fn the_django_compose_file_is_valid() {
    let app = repo().join("examples/django");
    let v1 = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let tool = if v1 { "docker-compose" } else { "docker compose" };
    let mut command = if v1 {
        Command::new("docker-compose")
    } else {
        let mut v2 = Command::new("docker");
        v2.arg("compose");
        v2
    };
    command
        .args(["--file", "docker-compose.yml", "config", "--quiet"])
        .current_dir(&app);
    let (ok, output) = run(command, Duration::from_secs(60));
    assert!(
        ok,
        "{tool} config rejected examples/django/docker-compose.yml:\n{output}"
    );
}

/// The example's requirements.txt (what its Docker image installs) pins what the tests install.
#[test]
fn the_django_example_pins_what_the_tests_install() {
    let tested = std::fs::read_to_string(repo().join("scripts/python-requirements.txt")).unwrap();
    let tested: Vec<&str> = tested.lines().map(str::trim).collect();
    let example = std::fs::read_to_string(repo().join("examples/django/requirements.txt")).unwrap();
    let pins: Vec<&str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!pins.is_empty());
    for pin in pins {
        assert!(
            pin.contains("=="),
            "examples/django/requirements.txt: {pin:?} is not pinned"
        );
        assert!(
            tested.contains(&pin),
            "examples/django/requirements.txt pins {pin:?}, which scripts/python-requirements.txt lacks"
        );
    }
}

//! The web console over HTTP, against a real `strata server`: routing, who may use it (open on loopback,
//! the password beyond it), CSRF (a POST without the token, or from another origin, changes nothing),
//! escaping (user data renders inert), bad input (4xx, never a crash), and a real browser (headless
//! Chromium driven by Selenium, `python/console_browser.py`) clicking through every page.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cli::strata;
use common::{Server, python};

/// An HTTP answer: status, the head's lines (lower-cased names), the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on its own connection (`Connection: close`), read to the end.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A refused body may close the connection before all of it is written; the answer is still there.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: &str, path: &str) -> Answer {
    http(addr, "GET", path, &[], b"")
}

/// A POST from a page of the console itself (its Origin), with `form` as the body.
fn post(addr: &str, path: &str, form: &str) -> Answer {
    let origin = format!("http://{addr}");
    http(addr, "POST", path, &[("Origin", &origin)], form.as_bytes())
}

/// The CSRF token rendered into the console's forms.
fn csrf_token(addr: &str) -> String {
    let page = get(addr, "/topics").body;
    let at = page.find("name=\"csrf\" value=\"").expect("a form with the CSRF token") + 19;
    page[at..at + 64].to_owned()
}

/// Percent-encodes a form value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pages_answer_and_health_and_metrics_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.http_addr;

    let health = get(addr, "/health");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(health.header("content-type"), Some("text/plain"));
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains("strata_requests_total{api=\"Produce\"}"),
        "{}",
        metrics.body
    );

    for path in [
        "/",
        "/topics",
        "/groups",
        "/console/assets/console.css",
        "/console/assets/console.js",
    ] {
        let page = get(addr, path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
    }
    let overview = get(addr, "/").body;
    assert!(
        overview.contains("Controller quorum") && overview.contains("(this node)"),
        "{overview}"
    );
    assert!(
        overview.contains("Leader: <strong>1</strong>"),
        "the quorum's leader: {overview}"
    );
    let throughput = get(addr, "/api/throughput");
    assert_eq!(throughput.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&throughput.body).unwrap();
    assert_eq!(json["series"][0]["name"], "all topics", "{json}");
    assert_eq!(get(addr, "/no/such/page").status, 404);
    assert_eq!(get(addr, "/topics/missing").status, 404);
    assert_eq!(get(addr, "/groups/missing").status, 404);
}

#[test]
fn beyond_loopback_the_console_needs_the_password_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    // No password: the console refuses, with the reason; /health and /metrics answer.
    let open = Server::start_with_flags(&dir.path().join("a"), &[], &["--http-listen", "0.0.0.0:0"]);
    let addr = open.http_addr.replace("0.0.0.0", "127.0.0.1");
    let refused = get(&addr, "/topics");
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("STRATA_CONSOLE_PASSWORD"), "{}", refused.body);
    assert_eq!(get(&addr, "/health").status, 200);
    assert_eq!(get(&addr, "/metrics").status, 200);

    // A password: 401 without it or with a wrong one, 200 with it (any user name).
    let secret = dir.path().join("console-password");
    std::fs::write(&secret, "correct horse\n").unwrap();
    let guarded = Server::start_with_flags(
        &dir.path().join("b"),
        &[],
        &[
            "--http-listen",
            "0.0.0.0:0",
            "--console-password-file",
            secret.to_str().unwrap(),
        ],
    );
    let addr = guarded.http_addr.replace("0.0.0.0", "127.0.0.1");
    let anonymous = get(&addr, "/");
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    // base64("admin:wrong"), base64("admin:correct horse").
    let wrong = http(&addr, "GET", "/", &[("Authorization", "Basic YWRtaW46d3Jvbmc=")], b"");
    assert_eq!(wrong.status, 401);
    let right = http(
        &addr,
        "GET",
        "/topics",
        &[("Authorization", "Basic YWRtaW46Y29ycmVjdCBob3JzZQ==")],
        b"",
    );
    assert_eq!(right.status, 200, "{}", right.body);
    assert_eq!(get(&addr, "/health").status, 200);
    assert_eq!(get(&addr, "/metrics").status, 200);
}

#[test]
fn a_post_without_the_token_or_from_elsewhere_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.http_addr;
    let token = csrf_token(addr);
    let origin = format!("http://{addr}");

    let refusals = [
        ("no token", vec![("Origin", origin.as_str())], "name=csrf-a".to_owned()),
        (
            "a wrong token",
            vec![("Origin", origin.as_str())],
            format!("name=csrf-a&csrf={}", "0".repeat(64)),
        ),
        (
            "another origin",
            vec![("Origin", "http://evil.example")],
            format!("name=csrf-a&csrf={token}"),
        ),
        (
            "another referer",
            vec![("Referer", "http://evil.example/page")],
            format!("name=csrf-a&csrf={token}"),
        ),
        ("no origin at all", vec![], format!("name=csrf-a&csrf={token}")),
    ];
    for (why, headers, body) in refusals {
        let answer = http(addr, "POST", "/topics", &headers, body.as_bytes());
        assert_eq!(answer.status, 403, "{why}: {}", answer.body);
    }
    assert_eq!(
        get(addr, "/topics/csrf-a").status,
        404,
        "no refused POST created the topic"
    );
    // GET never changes anything: the delete page only asks.
    let created = post(addr, "/topics", &format!("name=csrf-b&partitions=1&csrf={token}"));
    assert_eq!(created.status, 303, "{}", created.body);
    assert_eq!(created.header("location"), Some("/topics/csrf-b"));
    assert_eq!(get(addr, "/topics/csrf-b/delete").status, 200);
    assert_eq!(
        get(addr, "/topics/csrf-b").status,
        200,
        "still there after GET of the delete page"
    );
    let unconfirmed = post(addr, "/topics/csrf-b/delete", &format!("csrf={token}&confirm=other"));
    assert_eq!(unconfirmed.status, 400);
    assert_eq!(get(addr, "/topics/csrf-b").status, 200);
    let deleted = post(addr, "/topics/csrf-b/delete", &format!("csrf={token}&confirm=csrf-b"));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    wait_until("the topic to be gone", || get(addr, "/topics/csrf-b").status == 404);
}

#[test]
fn topics_are_created_altered_grown_and_their_records_shown_inert() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.http_addr;
    let token = csrf_token(addr);

    let created = post(
        addr,
        "/topics",
        &format!("csrf={token}&name=inert&partitions=2&replication_factor=1&configs=retention.ms%3D3600000"),
    );
    assert_eq!(created.status, 303, "{}", created.body);
    let page = get(addr, "/topics/inert").body;
    assert!(
        page.contains("<code>retention.ms</code>") && page.contains("<code>3600000</code>"),
        "{page}"
    );

    let set = post(
        addr,
        "/topics/inert/configs",
        &format!("csrf={token}&action=set&key=cleanup.policy&value=compact"),
    );
    assert_eq!(set.status, 303, "{}", set.body);
    let refused = post(
        addr,
        "/topics/inert/configs",
        &format!("csrf={token}&action=set&key=no.such.config&value=1"),
    );
    assert_eq!(refused.status, 400, "Kafka's checks apply: {}", refused.body);
    let removed = post(
        addr,
        "/topics/inert/configs",
        &format!("csrf={token}&action=remove&key=retention.ms"),
    );
    assert_eq!(removed.status, 303);
    let page = get(addr, "/topics/inert").body;
    assert!(
        page.contains("<code>compact</code>") && !page.contains("<code>retention.ms</code>"),
        "{page}"
    );
    let grown = post(addr, "/topics/inert/partitions", &format!("csrf={token}&count=4"));
    assert_eq!(grown.status, 303, "{}", grown.body);
    assert!(get(addr, "/topics").body.contains("<td>4</td>"));
    let shrink = post(addr, "/topics/inert/partitions", &format!("csrf={token}&count=2"));
    assert_eq!(shrink.status, 400);

    // User data with markup: a key, a value and a header; a group id.
    strata(
        &server.addr,
        &[
            "produce",
            "inert",
            "--partition",
            "0",
            "--key-separator",
            "|",
            "--headers",
            "h=<i>x</i>",
        ],
        b"<script>alert('key')</script>|<img src=x onerror=alert(1)>\n",
    )
    .ok();
    let messages = get(addr, "/topics/inert/messages?partition=0").body;
    assert!(!messages.contains("<script>alert") && !messages.contains("<img src") && !messages.contains("<i>x"));
    assert!(
        messages.contains("&lt;script&gt;alert(&#39;key&#39;)&lt;/script&gt;"),
        "{messages}"
    );
    assert!(messages.contains("&lt;img src=x onerror=alert(1)&gt;"), "{messages}");
    assert!(messages.contains("&lt;i&gt;x&lt;/i&gt;"), "{messages}");

    let group = "<script>group</script>";
    strata(
        &server.addr,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "inert",
            "--to-latest",
            "--execute",
        ],
        b"",
    )
    .ok();
    let groups = get(addr, "/groups").body;
    assert!(!groups.contains("<script>group"), "{groups}");
    assert!(groups.contains("&lt;script&gt;group&lt;/script&gt;"), "{groups}");
    let one = get(addr, &format!("/groups/{}", encode(group)));
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        !one.body.contains("<script>group") && one.body.contains("total lag"),
        "{}",
        one.body
    );

    // An error page that quotes what was sent escapes it too.
    let bad_name = post(
        addr,
        "/topics",
        &format!("csrf={token}&name={}", encode("<script>x</script>")),
    );
    assert_eq!(bad_name.status, 400);
    assert!(
        !bad_name.body.contains("<script>x") && bad_name.body.contains("&lt;script&gt;x"),
        "{}",
        bad_name.body
    );
}

#[test]
fn the_message_browser_pages_by_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.http_addr;
    let token = csrf_token(addr);
    assert_eq!(
        post(addr, "/topics", &format!("csrf={token}&name=pages&partitions=1")).status,
        303
    );
    let lines: String = (0..45).map(|i| format!("record-{i}\n")).collect();
    strata(
        &server.addr,
        &["produce", "pages", "--partition", "0"],
        lines.as_bytes(),
    )
    .ok();

    let first = get(addr, "/topics/pages/messages?partition=0&limit=20").body;
    assert!(first.contains("record-0<") && first.contains("record-19<") && !first.contains("record-20<"));
    assert!(first.contains("offset=20\" rel=\"next\""), "{first}");
    let last = get(addr, "/topics/pages/messages?partition=0&limit=20&offset=40").body;
    assert!(last.contains("record-44<") && !last.contains("rel=\"next\""), "{last}");
    assert!(last.contains("offset=20\" rel=\"prev\""), "{last}");
    // From a time: the first record at or after it (all were written after the epoch's first second).
    let timed = get(
        addr,
        "/topics/pages/messages?partition=0&time=1970-01-01T00:00:01Z&limit=5",
    )
    .body;
    assert!(timed.contains("record-0<") && timed.contains("record-4<"), "{timed}");
    let future = get(addr, "/topics/pages/messages?partition=0&time=2999-01-01T00:00:00Z").body;
    assert!(future.contains("No record at or after that time"), "{future}");
}

#[test]
fn bad_input_gets_a_4xx_page_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.http_addr;
    let token = csrf_token(addr);
    assert_eq!(
        post(addr, "/topics", &format!("csrf={token}&name=bad&partitions=2")).status,
        303
    );

    let gets = [
        ("/topics/bad/messages?partition=2", 400),
        ("/topics/bad/messages?partition=-1", 400),
        ("/topics/bad/messages?partition=99999999999999999999", 400),
        ("/topics/bad/messages?offset=-5", 400),
        ("/topics/bad/messages?offset=999999999999", 400),
        ("/topics/bad/messages?offset=abc", 400),
        ("/topics/bad/messages?limit=100000", 400),
        ("/topics/bad/messages?limit=0", 400),
        ("/topics/bad/messages?time=yesterday", 400),
        ("/topics/bad/messages?partition=%ZZ", 200), // a malformed escape is ignored: partition 0
        ("/topics/nope/messages", 404),
        ("/topics/bad?page=0", 400),
        ("/topics/bad?page=99", 400),
        ("/groups/g/reset?to=sideways", 400),
        ("/groups/g/reset?to=offset", 400),
        ("/groups/g/reset?to=time&time=never", 400),
    ];
    for (path, status) in gets {
        let answer = get(addr, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
    }
    let posts = [
        (format!("csrf={token}&name=x&partitions=0"), 400),
        (format!("csrf={token}&name=x&partitions=99999999999"), 400),
        (format!("csrf={token}&name=x&replication_factor=40000"), 400),
        (format!("csrf={token}&name=x&configs=no-equals-sign"), 400),
        (format!("csrf={token}&name=bad"), 409),
        (format!("csrf={token}&name="), 400),
    ];
    for (body, status) in posts {
        let answer = post(addr, "/topics", &body);
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
    }
    let not_utf8 = http(
        addr,
        "POST",
        "/topics",
        &[("Origin", &format!("http://{addr}"))],
        b"csrf=\xff\xfe&name=x",
    );
    assert_eq!(not_utf8.status, 400, "{}", not_utf8.body);
    let huge = format!("csrf={token}&name=x&configs={}", "a".repeat(1024 * 1024));
    assert_eq!(post(addr, "/topics", &huge).status, 413, "a body over the limit");
    assert_eq!(
        post(addr, "/topics/bad/partitions", &format!("csrf={token}&count=x")).status,
        400
    );
    assert_eq!(
        post(
            addr,
            "/topics/bad/configs",
            &format!("csrf={token}&action=explode&key=a")
        )
        .status,
        400
    );
    assert_eq!(
        post(
            addr,
            "/topics/nope/configs",
            &format!("csrf={token}&action=set&key=retention.ms&value=1")
        )
        .status,
        404
    );

    // A request line or head that is not HTTP: an error answer or a closed connection, and the node serves.
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(get(addr, "/topics/bad").status, 200);
}

/// The directory this test's artifacts go to: `target/console-screenshots/`, beside the build's `debug/`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/console-HASH → target
    let target = exe.ancestors().nth(3).expect("the test binary is under target/");
    target.join("console-screenshots")
}

#[test]
fn a_browser_creates_browses_resets_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["group.initial.rebalance.delay.ms=0"]);
    let shots = screenshot_dir();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/console_browser.py");
    let out = Command::new(python())
        .arg(script)
        .args([&server.http_addr, &server.addr, shots.to_str().unwrap()])
        .output()
        .expect("running python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "console_browser.py failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("nothing printed:\n{stderr}"));
    let seen: serde_json::Value = serde_json::from_str(last).unwrap();

    assert_eq!(seen["overview_title"], "Overview · Strata", "{seen}");
    assert_eq!(seen["quorum_leader"], true, "{seen}");
    assert_eq!(seen["created_partitions"], 3, "{seen}");
    assert_eq!(seen["created_config"], true, "{seen}");
    assert_eq!(seen["page1_rows"], 20, "{seen}");
    assert_eq!(seen["page1_first"], "order 0 <b>not bold</b>", "{seen}");
    assert_eq!(seen["markup_inert"], true, "{seen}");
    assert_eq!(
        seen["page2_offsets"],
        serde_json::json!((20..30).collect::<Vec<_>>()),
        "{seen}"
    );
    assert_eq!(seen["page2_header"], true, "{seen}");
    assert_eq!(seen["page2_hex"], true, "{seen}");
    assert_eq!(seen["consumed"], 30, "{seen}");
    assert_eq!(seen["lag_before"], 10, "{seen}");
    assert_eq!(seen["preview_notice"], true, "{seen}");
    assert_eq!(seen["preview_rows"], 3, "{seen}");
    assert_eq!(seen["lag_after_preview"], 10, "the preview committed nothing: {seen}");
    assert_eq!(seen["applied"], true, "{seen}");
    assert_eq!(seen["lag_after_apply"], 40, "{seen}");
    assert_eq!(seen["deleted"], true, "{seen}");
    for page in ["overview", "topic", "messages", "groups", "group", "reset-preview"] {
        assert!(shots.join(format!("{page}.png")).exists(), "screenshot {page}");
    }
}

//! `strata health`: asks a node's HTTP endpoint for `/health` and exits 0 only on `200`, for container
//! health checks (`HEALTHCHECK CMD ["/strata", "health"]`) and scripts that wait for a node.
//!
//! A plain HTTP/1.0 request over a blocking `std` socket, with no runtime: the command runs every few
//! seconds inside every container, so it should cost nothing, and it needs nothing the node's own HTTP
//! endpoint (`broker/src/http.rs`) does not already speak. The node binds its HTTP port at start but only
//! answers once it serves, so a node still starting accepts the connection and says nothing: that is
//! reported as no answer within the timeout, not as a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

/// The most bytes of the answer read: the status line is all that is needed, and the node's answer to
/// `/health` is a few dozen bytes.
const RESPONSE_BYTES_MAX: usize = 4096;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The node's HTTP endpoint. Defaults to the server's own `--http-listen` setting, so that inside a
    /// container the command asks the node it runs beside; a wildcard host (0.0.0.0, [::]) means this
    /// machine.
    #[arg(
        long,
        env = "STRATA_HTTP_LISTEN",
        default_value = "127.0.0.1:9644",
        value_name = "HOST:PORT"
    )]
    pub http: String,
    /// How long connecting and getting the answer may take, in total.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// Prints `ok` if the node answers `/health` with 200, and fails with the reason otherwise.
pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let target = loopback_for_wildcard(&args.http);
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let status = get_health(&target, timeout).with_context(|| format!("health of {target}"))?;
    if status != 200 {
        bail!("health of {target}: answered {status}, not 200");
    }
    println!("ok");
    Ok(())
}

/// `0.0.0.0:9644` is where a server listens, not where a client can go: ask loopback instead.
fn loopback_for_wildcard(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some(("0.0.0.0", port)) | Some(("", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => addr.to_owned(),
    }
}

/// `GET /health` at `target` (HOST:PORT); the status code of the answer.
fn get_health(target: &str, timeout: Duration) -> anyhow::Result<u16> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {target}"))?
        .collect();
    let mut stream = connect_any(&addrs, deadline)?;
    let no_answer = || {
        anyhow::anyhow!(
            "no answer within {} ms (is the node still starting?)",
            timeout.as_millis()
        )
    };
    // What is left of the timeout; a socket timeout of zero would mean none at all.
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(no_answer)
    };
    stream.set_write_timeout(Some(left()?))?;
    stream
        .write_all(format!("GET /health HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())
        .context("sending the request")?;
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !response.contains(&b'\n') && response.len() < RESPONSE_BYTES_MAX {
        stream.set_read_timeout(Some(left()?))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(no_answer());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading the answer"),
        }
    }
    parse_status(&response)
}

/// Tries each address `target` resolved to until one accepts, within the deadline.
fn connect_any(addrs: &[SocketAddr], deadline: Instant) -> anyhow::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            break;
        };
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) => Err(e).with_context(|| format!("cannot connect to {addr}")),
        None => bail!("no address to connect to"),
    }
}

/// The status code of `HTTP/1.x CODE REASON`.
fn parse_status(response: &[u8]) -> anyhow::Result<u16> {
    let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    if line.is_empty() {
        bail!("the connection closed without an answer");
    }
    let mut words = line.split_whitespace();
    match (words.next(), words.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(code))) if version.starts_with("HTTP/") => Ok(code),
        _ => bail!("not an HTTP answer: `{}`", line.chars().take(80).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        assert_eq!(loopback_for_wildcard("0.0.0.0:9644"), "127.0.0.1:9644");
        assert_eq!(loopback_for_wildcard("[::]:9644"), "[::1]:9644");
        assert_eq!(loopback_for_wildcard(":9644"), "127.0.0.1:9644");
        assert_eq!(loopback_for_wildcard("node1:9644"), "node1:9644");
        assert_eq!(loopback_for_wildcard("[::1]:9644"), "[::1]:9644");
    }

    #[test]
    fn the_status_line_gives_the_code() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n").unwrap(), 200);
        assert_eq!(parse_status(b"HTTP/1.0 404 Not Found\n").unwrap(), 404);
        assert!(parse_status(b"").unwrap_err().to_string().contains("closed"));
        assert!(
            parse_status(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .to_string()
                .contains("not an HTTP")
        );
    }
}

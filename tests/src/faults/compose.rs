//! The compose cluster of `deploy/docker-compose.yml` as a [`Cluster`]: three containers of the
//! `strata:local` image, each a broker and a controller.
//!
//! Clients on the host reach the nodes only through the ports published on `127.0.0.1` (19092–19094, HTTP
//! 19644–19646). Faults are Docker's: `kill -s SIGKILL`, `start`, `pause`, `unpause`; and a node cut off
//! from its peers while clients still reach it: inside the container's network namespace (entered with
//! `nsenter` from the host, since the image has no tools), iptables drops everything from and to the other
//! nodes' addresses, while traffic from the host's published ports (through the network's gateway) passes.
//! Replica bytes are read from the named volumes' directories on the host.
//!
//! Dropping a [`Compose`] runs `down -v`: containers, the network and the volumes go, on failure too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, health, segments_of};

/// Bound for the cluster to come up and for a node to serve again (a new container recovering its logs).
const START_TIMEOUT: Duration = Duration::from_secs(90);
const NODES: i32 = 3;

/// A compose project running `deploy/docker-compose.yml`.
#[derive(Debug)]
pub struct Compose {
    file: PathBuf,
    project: String,
    /// Nodes cut off from their peers.
    isolated: Vec<i32>,
}

impl Compose {
    /// Whether a Docker engine answers and the image `strata:local` exists.
    pub fn available() -> Result<(), String> {
        let info = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match info {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "no Docker engine answers: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("no docker command: {e}")),
        }
        let image = Command::new("docker")
            .args(["image", "inspect", "strata:local"])
            .output();
        match image {
            Ok(out) if out.status.success() => Ok(()),
            _ => Err("no image strata:local (deploy/build-image.sh builds it)".into()),
        }
    }

    /// Starts the cluster of `file` as project `project` and waits until every node serves.
    pub fn start(file: &Path, project: &str) -> Self {
        let compose = Self {
            file: file.to_owned(),
            project: project.to_owned(),
            isolated: Vec::new(),
        };
        // Leftovers of an earlier run that did not get to tear down.
        let _ = compose.run(&["down", "-v", "--remove-orphans"]);
        compose.must(&["up", "-d"]);
        for id in compose.nodes() {
            compose.wait_serving(id);
        }
        compose
    }

    fn service(id: i32) -> String {
        format!("node{id}")
    }

    fn run(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .output()
    }

    fn must(&self, args: &[&str]) -> String {
        let out = self.run(args).expect("running docker-compose");
        assert!(
            out.status.success(),
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn container(&self, id: i32) -> String {
        self.must(&["ps", "-q", &Self::service(id)]).trim().to_owned()
    }

    fn wait_serving(&self, id: i32) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = format!("127.0.0.1:{}", 19643 + id);
        while !health(&addr) {
            assert!(
                Instant::now() < deadline,
                "node {id} did not serve within {START_TIMEOUT:?}\n{}",
                self.log_tail(id)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The container's IP address on the compose network.
    fn address(&self, id: i32) -> String {
        docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.container(id),
        ])
        .trim()
        .to_owned()
    }

    /// Runs iptables in node `id`'s network namespace.
    fn iptables(&self, id: i32, rule: &[&str]) {
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &self.container(id)]);
        let status = Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "iptables"])
            .args(rule)
            .status()
            .expect("running nsenter");
        assert!(status.success(), "iptables {} in node {id}", rule.join(" "));
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("running docker");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster for Compose {
    fn nodes(&self) -> Vec<i32> {
        (1..=NODES).collect()
    }

    fn client_addr(&self, id: i32) -> String {
        format!("127.0.0.1:{}", 19091 + id)
    }

    fn kill(&mut self, id: i32) {
        self.must(&["kill", "-s", "SIGKILL", &Self::service(id)]);
    }

    fn restart(&mut self, id: i32) {
        self.must(&["start", &Self::service(id)]);
        self.wait_serving(id);
    }

    fn pause(&mut self, id: i32) {
        self.must(&["pause", &Self::service(id)]);
    }

    fn resume(&mut self, id: i32) {
        self.must(&["unpause", &Self::service(id)]);
    }

    fn isolate(&mut self, id: i32) -> bool {
        for peer in self.nodes().into_iter().filter(|&p| p != id) {
            let address = self.address(peer);
            self.iptables(id, &["-I", "INPUT", "-s", &address, "-j", "DROP"]);
            self.iptables(id, &["-I", "OUTPUT", "-d", &address, "-j", "DROP"]);
        }
        self.isolated.push(id);
        true
    }

    fn heal(&mut self, id: i32) {
        // The rules above are the only ones in the container's namespace.
        self.iptables(id, &["-F", "INPUT"]);
        self.iptables(id, &["-F", "OUTPUT"]);
        self.isolated.retain(|&i| i != id);
    }

    fn replica_bytes(&self, id: i32, topic: &str, partition: i32) -> Option<Vec<u8>> {
        let volume = format!("{}_node{id}-data", self.project);
        let mountpoint = docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
        segments_of(Path::new(mountpoint.trim()), topic, partition)
    }

    fn session_timeout(&self) -> Duration {
        // `broker.session.timeout.ms` in deploy/docker-compose.yml.
        Duration::from_millis(1000)
    }

    fn log_tail(&self, id: i32) -> String {
        self.run(&["logs", "--no-color", "--tail", "40", &Self::service(id)])
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        // A paused container does not stop.
        let _ = self.run(&["unpause"]);
        let _ = self.run(&["down", "-v", "--remove-orphans"]);
    }
}

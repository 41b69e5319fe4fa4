//! Running the `strata` CLI as a user would: a child process against a running server, with its exit code
//! and output.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// How long one CLI command may take (a debug build, on a loaded machine, retrying while leaders move).
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished `strata` command left.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The standard output of a command that must have succeeded.
    pub fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "stderr: {}", self.stderr);
        self.stdout
    }

    /// Checks the command failed with exactly one line on stderr, and returns it.
    pub fn failed(self) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a failure, got {:?}",
            self.code
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {:?}", self.stderr);
        lines[0].to_owned()
    }
}

/// Runs `strata ARGS --bootstrap BOOTSTRAP` with `stdin` to completion (killed after [`CLI_TIMEOUT`]).
pub fn strata(bootstrap: &str, args: &[&str], stdin: &[u8]) -> Ran {
    let args: Vec<&str> = args.iter().copied().chain(["--bootstrap", bootstrap]).collect();
    strata_with_env(&args, &[], stdin)
}

/// Runs `strata ARGS` with `stdin` to completion, with the `STRATA_*` variables of the test's own
/// environment that commands read left out and `env` set.
pub fn strata_with_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env_remove("STRATA_BOOTSTRAP")
        .env_remove("STRATA_HTTP_LISTEN")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut status = None;
    let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("strata {args:?} to exit"), CLI_TIMEOUT, || {
            status = child.try_wait().unwrap();
            status.is_some()
        })
    }));
    if let Err(panic) = exited {
        let _ = child.kill();
        std::panic::resume_unwind(panic);
    }
    writer.join().unwrap();
    Ran {
        code: status.unwrap().code(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The rows of the table whose header starts with `first_column`, each row's cells split on whitespace,
/// up to the first empty line; the lines `group reset-offsets` and `share-group reset-offsets` print around
/// their tables are left out.
pub fn table(output: &str, first_column: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .skip_while(|line| !line.starts_with(first_column))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter(|line| {
            !["Dry run", "Committed", "Changed"]
                .iter()
                .any(|said| line.starts_with(said))
        })
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

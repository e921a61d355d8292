//! The deployment as an operator runs it: the container image built here
//! (deploy/docker), the three-node compose cluster (deploy/compose) on a private
//! Docker network with its own volumes, the CLI in a container beside it.
//!
//! Appends 1,000 events, `docker kill`s the leader's container, keeps
//! appending, starts it again, and checks that it caught up (one root on all
//! three nodes) and that `veritrail verify` passes. Everything it made,
//! volumes included, is removed at the end, also when it fails.
//!
//! Needs a Docker engine, and root the first time (debootstrap makes the base
//! image). Without them it says SKIPPED and passes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use veritrail_tests::{veritrail, veritraild};

const EVENTS_BEFORE: usize = 1_000;
const EVENTS_DURING: usize = 200;
const EVENTS_AFTER: usize = 100;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Runs `command` to completion within `timeout`, killing it beyond.
fn run(mut command: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let what = format!("{command:?}");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    // Drain the pipes on threads so that a chatty command cannot block.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().expect("stdout thread"),
        stderr: err.join().expect("stderr thread"),
    }
}

fn must(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn docker_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker compose` (the plugin) where it exists, else `docker-compose`.
fn compose_program() -> Vec<String> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if plugin {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// One compose project, torn down with its volumes and image when dropped.
struct Deployment {
    program: Vec<String>,
    project: String,
    image: String,
    file: PathBuf,
}

impl Deployment {
    fn compose(&self) -> Command {
        let mut c = Command::new(&self.program[0]);
        c.args(&self.program[1..])
            .arg("--project-name")
            .arg(&self.project)
            .arg("--file")
            .arg(&self.file)
            .env("VERITRAIL_IMAGE", &self.image)
            .env("VERITRAIL_ORIGIN", "veritrail.test/deploy");
        c
    }

    /// `veritrail ARGS` in a container on the cluster's network.
    fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.compose();
        c.args(["run", "--rm", "-T", "cli"]).args(args);
        run(c, stdin, Duration::from_secs(120))
    }

    fn container(&self, service: &str) -> String {
        let mut c = self.compose();
        c.args(["ps", "-q", service]);
        let id = must(run(c, None, Duration::from_secs(30)), "compose ps");
        let id = id.trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    /// `veritrail cluster status` as JSON.
    fn status(&self) -> Option<Value> {
        let out = self.cli(&["--output", "json", "cluster", "status"], None);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_status(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(s) = self.status() {
                if check(&s) {
                    return s;
                }
                last = Some(s);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "timed out waiting for {what}; last status: {last:?}\n{}",
            self.logs()
        );
    }

    fn append(&self, from: usize, to: usize) {
        let mut lines = String::new();
        for i in from..to {
            lines.push_str(&format!(
                "{{\"source\":\"billing\",\"event_id\":\"deploy-{i}\",\"actor\":\"alice\",\
                 \"action\":\"invoice.refund\",\"resource\":\"invoice/{i}\",\"outcome\":\"success\"}}\n"
            ));
        }
        let out = self.cli(&["append", "--stdin"], Some(lines.as_bytes()));
        must(out, &format!("append events {from}..{to}"));
    }

    fn logs(&self) -> String {
        let mut c = self.compose();
        c.args(["logs", "--no-color", "--tail", "20"]);
        let out = run(c, None, Duration::from_secs(30));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let mut c = self.compose();
        c.args(["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        let out = run(c, None, Duration::from_secs(120));
        if !out.status.success() {
            eprintln!("compose down: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn leader_of(status: &Value) -> u64 {
    status["leader_id"].as_u64().expect("a leader")
}

#[test]
fn compose_cluster_survives_a_killed_leader_container() {
    if !docker_available() {
        eprintln!("SKIPPED: no Docker engine answers `docker info`");
        return;
    }
    let root = repo_root();
    let bin_dir = veritraild().parent().expect("binary dir").to_path_buf();
    assert_eq!(
        veritrail().parent(),
        Some(bin_dir.as_path()),
        "veritrail and veritraild in one directory"
    );
    let suffix = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let image = format!("veritrail:test-{suffix}");

    // The image, from the binaries this workspace built, on a base made here.
    let mut build = Command::new(root.join("deploy/docker/build-image.sh"));
    build
        .args(["--local-base", "--prebuilt"])
        .arg(&bin_dir)
        .args(["--tag", &image]);
    let deployment = Deployment {
        program: compose_program(),
        project: format!("vtdeploy{}", suffix.replace('-', "")),
        image,
        file: root.join("deploy/compose/docker-compose.yml"),
    };
    must(
        run(build, None, Duration::from_secs(240)),
        "build the image",
    );

    let mut up = deployment.compose();
    up.args(["up", "-d"]);
    must(run(up, None, Duration::from_secs(120)), "compose up");
    let status = deployment.wait_status("three voters and a leader", |s| {
        s["voters"] == 3 && s["leader_id"].is_u64()
    });
    eprintln!("formed: leader node {}", leader_of(&status));

    deployment.append(0, EVENTS_BEFORE);

    // Kill the leader's container outright, and keep appending.
    let leader = leader_of(&status);
    let service = format!("node{leader}");
    let container = deployment.container(&service);
    let mut kill = Command::new("docker");
    kill.args(["kill", &container]);
    must(run(kill, None, Duration::from_secs(30)), "docker kill");
    let after_kill = deployment.wait_status("a new leader", |s| {
        s["leader_id"].as_u64().is_some_and(|l| l != leader)
    });
    eprintln!(
        "killed node {leader}; new leader node {}",
        leader_of(&after_kill)
    );
    deployment.append(EVENTS_BEFORE, EVENTS_BEFORE + EVENTS_DURING);

    // Start it again: it catches up from the others.
    let mut start = Command::new("docker");
    start.args(["start", &container]);
    must(run(start, None, Duration::from_secs(60)), "docker start");
    let total = EVENTS_BEFORE + EVENTS_DURING + EVENTS_AFTER;
    deployment.append(EVENTS_BEFORE + EVENTS_DURING, total);
    let caught_up = deployment.wait_status("every node at the same root", |s| {
        let nodes = s["nodes"].as_array().cloned().unwrap_or_default();
        nodes.len() == 3
            && nodes.iter().all(|n| {
                n["reachable"] == true
                    && n["tree_size"] == total as u64
                    && n["root"] == nodes[0]["root"]
            })
    });
    eprintln!(
        "caught up: {total} entries, root {} on all three",
        caught_up["nodes"][0]["root"]
    );

    // The auditor's check, against the co-signed checkpoint.
    let verify = deployment.cli(&["verify"], None);
    let text = must(verify, "veritrail verify");
    eprintln!("{text}");

    // A re-run of `up` changes nothing: the cluster is found in the volumes.
    let mut again = deployment.compose();
    again.args(["up", "-d"]);
    must(
        run(again, None, Duration::from_secs(120)),
        "second compose up",
    );
    let node1 = deployment.container("node1");
    let mut logs = Command::new("docker");
    logs.args(["logs", &node1]);
    let out = run(logs, None, Duration::from_secs(30));
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        log.matches("bootstrap: cluster initialized").count(),
        1,
        "node 1 initialized more than once:\n{log}"
    );
}

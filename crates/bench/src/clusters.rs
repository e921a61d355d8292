//! Three-node clusters of each system, started on loopback in a scratch
//! directory and killed when dropped. Each keeps its data on the same disk.
//!
//! Durability as configured here, stated in every report:
//! - Veritrail: every acknowledged event is in a log synced on a majority
//!   (always; there is no setting to turn it off);
//! - etcd: syncs its WAL before acknowledging a Put (its default, kept);
//! - NATS JetStream: a file-backed stream with three replicas; it acknowledges
//!   once a majority *holds* the message, and syncs to disk every two minutes
//!   (its default `sync_interval`), not per message.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The benchmark log's origin.
const ORIGIN: &str = "bench.local/audit";

/// A free loopback port (the OS picks, we release it right away).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Child processes killed (SIGKILL) and reaped on drop.
#[derive(Debug, Default)]
pub struct Processes {
    pub children: Vec<Child>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// Waits until `check` passes, at most `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// A Veritrail node of a [`VeritrailCluster`].
#[derive(Debug)]
pub struct VeritrailNode {
    pub id: u64,
    pub addr: String,
    /// Its tlog-tiles port (`host:port`, plain HTTP, anonymous), when served.
    pub tiles_addr: Option<String>,
    pub config: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug)]
pub struct VeritrailCluster {
    pub nodes: Vec<VeritrailNode>,
    pub binary: PathBuf,
    pub processes: Vec<Option<Child>>,
    /// The benchmark client's TLS settings; `None` for a plaintext cluster.
    pub tls: Option<veritrail_client::TlsSettings>,
}

/// Runs `veritraild certs` with `args` in `dir`.
fn certs(binary: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(binary)
        .arg("certs")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .with_context(|| format!("running {} certs", binary.display()))?;
    if !out.status.success() {
        bail!(
            "veritraild certs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl VeritrailCluster {
    /// Three nodes with the default settings (the operator's defaults, not
    /// the test fixture's fast timers), bootstrapped from `initial_members`.
    /// With `tls`, as production runs: a CA and certificates from `veritraild
    /// certs`; without, plain HTTP/2 like the etcd and NATS clusters here.
    /// With `tiles`, every node also serves tlog-tiles on a port of its own,
    /// to anyone.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        tls: bool,
        tiles: bool,
    ) -> anyhow::Result<VeritrailCluster> {
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            nodes.push((id, format!("127.0.0.1:{}", free_port()?)));
        }
        let members: Vec<String> = nodes
            .iter()
            .map(|(id, a)| format!("\"{id}={a}\""))
            .collect();
        let pki = dir.join("pki");
        let client_tls = if tls {
            certs(binary, &pki, &["ca", "--trust-domain", "bench.local"])?;
            for (id, _) in &nodes {
                certs(
                    binary,
                    &pki,
                    &[
                        "node",
                        "--id",
                        &id.to_string(),
                        "--origin",
                        ORIGIN,
                        "--hosts",
                        "127.0.0.1",
                    ],
                )?;
            }
            certs(binary, &pki, &["client", "--name", "bench"])?;
            Some(veritrail_client::TlsSettings::from_files(
                &pki.join("ca.pem"),
                Some((&pki.join("client-bench.pem"), &pki.join("client-bench.key"))),
            )?)
        } else {
            None
        };
        let mut cluster = VeritrailCluster {
            nodes: Vec::new(),
            binary: binary.to_owned(),
            processes: Vec::new(),
            tls: client_tls,
        };
        for (id, addr) in nodes {
            let data = dir.join(format!("veritrail-{id}"));
            let config = dir.join(format!("veritrail-{id}.toml"));
            let transport = if tls {
                format!(
                    "[tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    pki.join("ca.pem").display(),
                    pki.join(format!("node-{id}.pem")).display(),
                    pki.join(format!("node-{id}.key")).display()
                )
            } else {
                // Plain HTTP/2, as etcd and NATS run here.
                "[tls]\ninsecure_dev = true\n".to_owned()
            };
            let tiles_addr = tiles
                .then(|| free_port().map(|p| format!("127.0.0.1:{p}")))
                .transpose()?;
            let tiles_table = tiles_addr.as_ref().map_or(String::new(), |a| {
                format!("[tiles]\nlisten_addr = \"{a}\"\nanonymous = true\n")
            });
            std::fs::write(
                &config,
                format!(
                    "node_id = {id}\nlisten_addr = \"{addr}\"\ndata_dir = \"{}\"\norigin = \"{ORIGIN}\"\ninitial_members = [{}]\n{transport}{tiles_table}",
                    data.display(),
                    members.join(", ")
                ),
            )?;
            let node = VeritrailNode {
                id,
                addr,
                tiles_addr,
                config,
                log: dir.join(format!("veritrail-{id}.log")),
            };
            cluster.processes.push(Some(cluster.spawn_node(&node)?));
            cluster.nodes.push(node);
        }
        let client = cluster.client()?;
        wait_until(
            "a Veritrail leader and three voters",
            Duration::from_secs(60),
            || async {
                client.status().await.is_ok_and(|s| {
                    s.leader_id.is_some() && s.members.iter().filter(|m| m.voter).count() == 3
                })
            },
        )
        .await?;
        Ok(cluster)
    }

    fn spawn_node(&self, node: &VeritrailNode) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        Command::new(&self.binary)
            .arg("--config")
            .arg(&node.config)
            .env("VERITRAIL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// SDK settings for this cluster (its CA and the benchmark's certificate).
    pub fn client_config(&self) -> veritrail_client::ClientConfig {
        let mut config = veritrail_client::ClientConfig::new(self.endpoints());
        config.tls = self.tls.clone();
        config
    }

    pub fn client(&self) -> anyhow::Result<veritrail_client::Client> {
        Ok(veritrail_client::Client::with_config(self.client_config())?)
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.processes[i].as_ref().map(Child::id)
    }

    /// Stops node `i` with SIGTERM (a clean shutdown) and waits for it.
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.processes[i].take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let child = self.spawn_node(&self.nodes[i])?;
        self.processes[i] = Some(child);
        Ok(())
    }
}

impl Drop for VeritrailCluster {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three etcd members, `--initial-cluster-state new`.
pub async fn start_etcd(dir: &Path) -> anyhow::Result<(Processes, Vec<String>)> {
    let etcd = which("etcd")?;
    let mut members = Vec::new();
    for i in 1..=3 {
        members.push((format!("e{i}"), free_port()?, free_port()?));
    }
    let initial: Vec<String> = members
        .iter()
        .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
        .collect();
    let mut processes = Processes::default();
    let mut endpoints = Vec::new();
    for (name, client, peer) in &members {
        let args: Vec<String> = [
            "--name",
            name,
            "--data-dir",
            &dir.join(format!("etcd-{name}")).display().to_string(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &initial.join(","),
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "veritrail-bench",
            // Batches of 256 Puts in one Txn (the default allows 128).
            "--max-txn-ops",
            "1024",
            "--quota-backend-bytes",
            "8589934592",
            "--logger",
            "zap",
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        processes
            .children
            .push(spawn(&etcd, &args, &dir.join(format!("etcd-{name}.log")))?);
        endpoints.push(format!("http://127.0.0.1:{client}"));
    }
    let ready = endpoints.clone();
    wait_until("etcd to take a Put", Duration::from_secs(60), || {
        let endpoints = ready.clone();
        async move {
            match etcd_client::Client::connect(&endpoints, None).await {
                Ok(mut c) => c.put("bench/ready", "1", None).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await?;
    Ok((processes, endpoints))
}

/// Three nats-server nodes with JetStream, routed to each other, and a
/// file-backed stream `BENCH` (subjects `bench.>`) with three replicas.
pub async fn start_nats(dir: &Path) -> anyhow::Result<(Processes, String)> {
    let nats = which("nats-server")?;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push((format!("n{i}"), free_port()?, free_port()?));
    }
    let routes: Vec<String> = nodes
        .iter()
        .map(|(_, _, route)| format!("nats://127.0.0.1:{route}"))
        .collect();
    let mut processes = Processes::default();
    for (name, client, route) in &nodes {
        let args: Vec<String> = [
            "--name",
            name,
            "--addr",
            "127.0.0.1",
            "--port",
            &client.to_string(),
            "--jetstream",
            "--store_dir",
            &dir.join(format!("nats-{name}")).display().to_string(),
            "--cluster_name",
            "veritrail-bench",
            "--cluster",
            &format!("nats://127.0.0.1:{route}"),
            "--routes",
            &routes.join(","),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        processes
            .children
            .push(spawn(&nats, &args, &dir.join(format!("nats-{name}.log")))?);
    }
    let url = format!("nats://127.0.0.1:{}", nodes[0].1);
    let connect_url = url.clone();
    wait_until(
        "a JetStream R3 file stream",
        Duration::from_secs(60),
        || {
            let url = connect_url.clone();
            async move {
                let Ok(client) = async_nats::connect(&url).await else {
                    return false;
                };
                let js = async_nats::jetstream::new(client);
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: "BENCH".into(),
                    subjects: vec!["bench.>".into()],
                    num_replicas: 3,
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .is_ok()
            }
        },
    )
    .await?;
    Ok((processes, url))
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("{program} is not installed (Debian: apt-get install etcd-server nats-server)")
}

/// Resident memory of a process, from /proc, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

//! `veritrail-bench`: a load generator for Veritrail, and the benchmark that
//! runs the same workloads against etcd and NATS JetStream on the same machine.
//!
//! - `run`: one workload against running nodes (any of the three systems),
//!   closed or open loop, text or JSON.
//! - `compare`: starts a three-node cluster of each system on loopback in turn,
//!   runs the workload matrix on each, prints the table and the ratios.
//! - `scale`: fills a Veritrail cluster to a million entries, then measures
//!   inclusion-proof latency, resident memory per node and a node's
//!   restart-to-ready time.
//! - `tiles`: what serving tlog-tiles costs: tiles per second from one node,
//!   and the append rate while an auditor reads the whole log (`tiles.rs`).
//!
//! docs/BENCHMARKS.md holds the figures and how to reproduce them.

mod clusters;
mod load;
mod targets;
mod tiles;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::load::{Figures, LoadSpec, OpSource};
use crate::targets::{EtcdOps, Mode, NatsOps, VeritrailOps};

#[derive(Debug, Parser)]
#[command(
    name = "veritrail-bench",
    version,
    about = "Veritrail load generator and comparison benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum System {
    Veritrail,
    Etcd,
    Nats,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Unary,
    Batch,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
struct WorkloadArgs {
    #[arg(long, value_enum, default_value = "unary")]
    mode: ModeArg,
    /// Events per request in batch mode.
    #[arg(long, default_value_t = 256)]
    batch: u64,
    /// Concurrent workers (connections share one client per system).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Events in flight per worker in stream mode.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Target events per second over all workers (open loop); closed loop
    /// when absent.
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    timing: Timing,
}

/// How long each workload runs, and the event size.
#[derive(Debug, Clone, Copy, clap::Args)]
struct Timing {
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Size of one event: a Veritrail entry of about this many bytes, an etcd
    /// value, a NATS message body.
    #[arg(long, default_value_t = 256)]
    event_bytes: usize,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One workload against running nodes.
    Run {
        #[arg(long, value_enum, default_value = "veritrail")]
        system: System,
        /// Veritrail `host:port`s, etcd `http://host:port`s, or one NATS URL.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
        )]
        endpoints: Vec<String>,
        /// The JetStream stream to publish to (subjects `bench.>`).
        #[arg(long, default_value = "BENCH")]
        nats_stream: String,
        /// Veritrail over TLS: the cluster's CA, as for the `veritrail` CLI.
        #[arg(long, env = "VERITRAIL_CA")]
        ca: Option<PathBuf>,
        /// The client certificate and key to present.
        #[arg(long, env = "VERITRAIL_CERT", requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, env = "VERITRAIL_KEY", requires = "cert")]
        key: Option<PathBuf>,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Start three-node clusters of each system in turn and run the matrix.
    Compare {
        #[arg(long, value_delimiter = ',', default_values = ["veritrail", "etcd", "nats"])]
        systems: Vec<System>,
        #[command(flatten)]
        timing: Timing,
        /// Run Veritrail with TLS, as production does (the etcd and NATS
        /// clusters here are plaintext, so the default compares like with like).
        #[arg(long)]
        veritrail_tls: bool,
        /// Also write every result as JSON lines here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Serve tlog-tiles: tiles per second from one node, and appends while an
    /// auditor reads every entry bundle.
    Tiles {
        #[arg(long, default_value_t = 256_000)]
        entries: u64,
        /// Concurrent tile readers for the tiles-alone runs.
        #[arg(long, default_value_t = 8)]
        readers: usize,
        #[command(flatten)]
        timing: Timing,
    },
    /// Fill a Veritrail cluster, then measure proofs, memory and restart.
    Scale {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Inclusion proofs to time.
        #[arg(long, default_value_t = 2_000)]
        proofs: usize,
        /// Run the cluster with TLS.
        #[arg(long)]
        tls: bool,
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn mode_of(w: &WorkloadArgs) -> Mode {
    match w.mode {
        ModeArg::Unary => Mode::Unary,
        ModeArg::Batch => Mode::Batch(w.batch.max(1)),
        ModeArg::Stream => Mode::Stream,
    }
}

fn spec_of(w: &WorkloadArgs, mode: Mode) -> LoadSpec {
    LoadSpec {
        workers: w.clients.max(1),
        window: if mode == Mode::Stream {
            w.window.max(1)
        } else {
            1
        },
        events_per_op: mode.events_per_op(),
        warmup: Duration::from_secs_f64(w.timing.warmup),
        duration: Duration::from_secs_f64(w.timing.seconds),
        rate_events: w.rate,
    }
}

async fn ops_for(
    system: System,
    endpoints: &[String],
    veritrail: Option<veritrail_client::ClientConfig>,
    nats_stream: &str,
    mode: Mode,
    workers: usize,
    event_bytes: usize,
) -> anyhow::Result<Arc<dyn OpSource>> {
    Ok(match system {
        System::Veritrail => {
            let config = veritrail
                .unwrap_or_else(|| veritrail_client::ClientConfig::new(endpoints.to_vec()));
            let client = veritrail_client::Client::with_config(config)?;
            Arc::new(VeritrailOps::new(client, mode, workers, event_bytes)?)
        }
        System::Etcd => Arc::new(EtcdOps::connect(endpoints, mode, event_bytes).await?),
        System::Nats => {
            let url = endpoints.first().context("a NATS URL")?;
            Arc::new(NatsOps::connect(url, nats_stream, mode, event_bytes).await?)
        }
    })
}

/// One named workload of the comparison.
#[derive(Debug, Clone)]
struct Workload {
    name: &'static str,
    mode: Mode,
    clients: usize,
    window: usize,
    rate: Option<f64>,
}

fn matrix() -> Vec<Workload> {
    vec![
        Workload {
            name: "1 client, unary",
            mode: Mode::Unary,
            clients: 1,
            window: 1,
            rate: None,
        },
        Workload {
            name: "64 clients, unary",
            mode: Mode::Unary,
            clients: 64,
            window: 1,
            rate: None,
        },
        Workload {
            name: "16 streams",
            mode: Mode::Stream,
            clients: 16,
            window: 512,
            rate: None,
        },
        Workload {
            name: "16 clients, batches of 256",
            mode: Mode::Batch(256),
            clients: 16,
            window: 1,
            rate: None,
        },
        Workload {
            name: "16 streams at 50,000/s",
            mode: Mode::Stream,
            clients: 16,
            window: 4096,
            rate: Some(50_000.0),
        },
    ]
}

#[derive(Debug, Serialize)]
struct ResultLine<'a> {
    system: System,
    workload: &'a str,
    mode: String,
    clients: usize,
    window: usize,
    rate: Option<f64>,
    seconds: f64,
    event_bytes: usize,
    #[serde(flatten)]
    figures: &'a Figures,
}

fn print_header() {
    println!(
        "{:<10} {:<28} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "system", "workload", "events/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "errors"
    );
}

fn print_row(system: System, name: &str, f: &Figures) {
    println!(
        "{:<10} {:<28} {:>11.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>7}",
        format!("{system:?}").to_lowercase(),
        name,
        f.events_per_s,
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.p999_ms,
        f.max_ms,
        f.errors
    );
    if let Some(e) = &f.first_error {
        println!("{:<10} first error: {e}", "");
    }
}

fn durability(system: System) -> &'static str {
    match system {
        System::Veritrail => {
            "every acknowledged event synced (fsync) on a majority before the answer"
        }
        System::Etcd => "WAL synced (fsync) on a majority before the answer (etcd's default)",
        System::Nats => {
            "held in memory by a majority; synced to disk every 2 min (JetStream's default sync_interval)"
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Run {
            system,
            endpoints,
            nats_stream,
            ca,
            cert,
            key,
            workload,
            output,
        } => {
            let tls = match &ca {
                Some(ca) => veritrail_client::TlsSettings::from_files(
                    ca,
                    cert.as_deref().zip(key.as_deref()),
                )
                .map(Some)
                .map_err(anyhow::Error::from),
                None => Ok(None),
            };
            match tls {
                Ok(tls) => {
                    let mut config = veritrail_client::ClientConfig::new(endpoints.clone());
                    config.tls = tls;
                    run(system, &endpoints, config, &nats_stream, &workload, output).await
                }
                Err(e) => Err(e),
            }
        }
        Cmd::Compare {
            systems,
            timing,
            veritrail_tls,
            json,
        } => compare(&systems, &timing, veritrail_tls, json).await,
        Cmd::Scale {
            entries,
            proofs,
            tls,
            json,
        } => scale(entries, proofs, tls, json).await,
        Cmd::Tiles {
            entries,
            readers,
            timing,
        } => serve_tiles(entries, readers, &timing).await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veritrail-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(
    system: System,
    endpoints: &[String],
    veritrail: veritrail_client::ClientConfig,
    nats_stream: &str,
    w: &WorkloadArgs,
    output: Output,
) -> anyhow::Result<()> {
    let mode = mode_of(w);
    let spec = spec_of(w, mode);
    let ops = ops_for(
        system,
        endpoints,
        Some(veritrail),
        nats_stream,
        mode,
        spec.workers,
        w.timing.event_bytes,
    )
    .await?;
    let figures = load::run(ops, spec).await;
    let line = ResultLine {
        system,
        workload: "run",
        mode: mode.label(),
        clients: spec.workers,
        window: spec.window,
        rate: w.rate,
        seconds: w.timing.seconds,
        event_bytes: w.timing.event_bytes,
        figures: &figures,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string(&line)?),
        Output::Text => {
            print_header();
            print_row(
                system,
                &format!("{} x{}", mode.label(), spec.workers),
                &figures,
            );
        }
    }
    Ok(())
}

/// The binary next to this one (release builds put them side by side).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("VERITRAILD") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

async fn compare(
    systems: &[System],
    timing: &Timing,
    veritrail_tls: bool,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    let Timing {
        seconds,
        warmup,
        event_bytes,
    } = *timing;
    let mut lines = Vec::new();
    let mut results: Vec<(System, &'static str, Figures)> = Vec::new();
    println!(
        "== {} s per workload after {} s of warm-up, events of {event_bytes} bytes, three nodes per system on loopback; Veritrail over {}",
        seconds,
        warmup,
        if veritrail_tls {
            "TLS (client and peer certificates)"
        } else {
            "plain HTTP/2, like etcd and NATS here"
        }
    );
    for &system in systems {
        let dir = tempfile::Builder::new()
            .prefix("veritrail-bench-")
            .tempdir_in("/var/tmp")?;
        // Keep the clusters alive for the whole system's run.
        let mut _veritrail = None;
        let mut veritrail_config = None;
        let mut _processes = None;
        let (endpoints, stream): (Vec<String>, &str) = match system {
            System::Veritrail => {
                let cluster = clusters::VeritrailCluster::start(
                    &sibling("veritraild")?,
                    dir.path(),
                    veritrail_tls,
                    false,
                )
                .await?;
                let e = cluster.endpoints();
                veritrail_config = Some(cluster.client_config());
                _veritrail = Some(cluster);
                (e, "")
            }
            System::Etcd => {
                let (p, e) = clusters::start_etcd(dir.path()).await?;
                _processes = Some(p);
                (e, "")
            }
            System::Nats => {
                let (p, url) = clusters::start_nats(dir.path()).await?;
                _processes = Some(p);
                (vec![url], "BENCH")
            }
        };
        println!("\n-- {system:?}: {}", durability(system));
        print_header();
        for w in matrix() {
            let spec = LoadSpec {
                workers: w.clients,
                window: w.window,
                events_per_op: w.mode.events_per_op(),
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(seconds),
                rate_events: w.rate,
            };
            let ops = ops_for(
                system,
                &endpoints,
                veritrail_config.clone(),
                stream,
                w.mode,
                w.clients,
                event_bytes,
            )
            .await?;
            let figures = load::run(ops, spec).await;
            print_row(system, w.name, &figures);
            lines.push(serde_json::to_string(&ResultLine {
                system,
                workload: w.name,
                mode: w.mode.label(),
                clients: w.clients,
                window: w.window,
                rate: w.rate,
                seconds,
                event_bytes,
                figures: &figures,
            })?);
            results.push((system, w.name, figures));
        }
    }
    print_ratios(&results);
    if let Some(path) = json {
        std::fs::write(&path, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nresults as JSON lines: {}", path.display());
    }
    Ok(())
}

fn print_ratios(results: &[(System, &'static str, Figures)]) {
    let find = |system: System, name: &str| {
        results
            .iter()
            .find(|(s, n, _)| *s == system && *n == name)
            .map(|(_, _, f)| f)
    };
    println!(
        "\n-- Veritrail relative to the others (throughput ×, p50 and p99 latency ×; above 1 is Veritrail ahead)"
    );
    println!(
        "{:<28} {:>22} {:>22}",
        "workload", "vs etcd", "vs NATS JetStream"
    );
    for w in matrix() {
        let Some(ours) = find(System::Veritrail, w.name) else {
            continue;
        };
        let cell = |other: Option<&Figures>| match other {
            Some(o) if o.events_per_s > 0.0 && ours.p50_ms > 0.0 && ours.p99_ms > 0.0 => format!(
                "{:.2}x / {:.2}x / {:.2}x",
                ours.events_per_s / o.events_per_s,
                o.p50_ms / ours.p50_ms,
                o.p99_ms / ours.p99_ms
            ),
            _ => "-".into(),
        };
        println!(
            "{:<28} {:>22} {:>22}",
            w.name,
            cell(find(System::Etcd, w.name)),
            cell(find(System::Nats, w.name))
        );
    }
}

async fn scale(
    entries: u64,
    proofs: usize,
    tls: bool,
    json: Option<PathBuf>,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("veritrail-scale-")
        .tempdir_in("/var/tmp")?;
    let mut cluster =
        clusters::VeritrailCluster::start(&sibling("veritraild")?, dir.path(), tls, false).await?;
    let client = cluster.client()?;
    println!("== Veritrail at {entries} entries of about 256 bytes, three nodes on loopback");

    let (size, fill) = fill(&client, entries).await?;
    println!(
        "fill: {size} entries in {:.1} s ({:.0} events/s, 16 clients x batches of 1,024)",
        fill.as_secs_f64(),
        size as f64 / fill.as_secs_f64()
    );
    // Every node applied everything before measuring memory and proofs.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let addr = node.addr.clone();
        let c = client.clone();
        clusters::wait_until(
            &format!("node {} to apply {size}", i + 1),
            Duration::from_secs(300),
            || {
                let c = c.clone();
                let addr = addr.clone();
                async move { c.status_of(&addr).await.is_ok_and(|s| s.tree_size >= size) }
            },
        )
        .await?;
    }
    let rss: Vec<u64> = (0..cluster.nodes.len())
        .map(|i| cluster.pid(i).and_then(clusters::rss_bytes).unwrap_or(0))
        .collect();
    println!(
        "resident memory per node: {}",
        rss.iter()
            .map(|b| format!("{:.0} MiB", *b as f64 / (1 << 20) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Inclusion proofs of random entries in the whole tree, one at a time:
    // linearizable (the SDK's default: the node first confirms with a quorum
    // that it is current) and local (the node answers from what it holds; the
    // proof is checked against a signed checkpoint either way).
    let mut local_config = cluster.client_config();
    local_config.local_reads = true;
    let local = veritrail_client::Client::with_config(local_config)?;
    let linearizable = time_proofs(&client, size, proofs).await?;
    let local = time_proofs(&local, size, proofs).await?;
    for (name, h) in [("linearizable", &linearizable), ("local", &local)] {
        println!(
            "inclusion proof over gRPC, {name} read (tree of {size}): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({proofs} proofs)",
            quantile_ms(h, 0.5),
            quantile_ms(h, 0.99),
            h.max() as f64 / 1000.0
        );
    }

    // Restart a follower: SIGTERM, start, ready (member with a leader and
    // caught up to the size it had).
    let status = client.status().await?;
    let leader = status.leader_id.context("a leader")?;
    let follower = cluster
        .nodes
        .iter()
        .position(|n| n.id != leader)
        .context("a follower")?;
    let addr = cluster.nodes[follower].addr.clone();
    cluster.stop(follower)?;
    let restarted = Instant::now();
    cluster.start_node(follower)?;
    clusters::wait_until(
        "the restarted node to be ready",
        Duration::from_secs(600),
        || {
            let c = client.clone();
            let addr = addr.clone();
            async move {
                c.status_of(&addr)
                    .await
                    .is_ok_and(|s| s.leader_id.is_some() && s.tree_size >= size)
            }
        },
    )
    .await?;
    let restart = restarted.elapsed();
    let rss_after = cluster
        .pid(follower)
        .and_then(clusters::rss_bytes)
        .unwrap_or(0);
    println!(
        "restart to ready of a node holding {size} entries: {:.2} s (resident memory after: {:.0} MiB)",
        restart.as_secs_f64(),
        rss_after as f64 / (1 << 20) as f64
    );
    if let Some(path) = json {
        let line = json!({
            "entries": size,
            "fill_seconds": fill.as_secs_f64(),
            "rss_bytes": rss,
            "inclusion_linearizable_p50_ms": quantile_ms(&linearizable, 0.5),
            "inclusion_linearizable_p99_ms": quantile_ms(&linearizable, 0.99),
            "inclusion_local_p50_ms": quantile_ms(&local, 0.5),
            "inclusion_local_p99_ms": quantile_ms(&local, 0.99),
            "restart_to_ready_seconds": restart.as_secs_f64(),
            "rss_after_restart_bytes": rss_after,
        });
        std::fs::write(&path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn serve_tiles(entries: u64, readers: usize, timing: &Timing) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("veritrail-tiles-")
        .tempdir_in("/var/tmp")?;
    let cluster =
        clusters::VeritrailCluster::start(&sibling("veritraild")?, dir.path(), false, true).await?;
    let client = cluster.client()?;
    let (size, took) = fill(&client, entries).await?;
    println!(
        "== tlog-tiles from a three-node cluster of {size} entries (filled in {:.1} s), plain HTTP/1.1",
        took.as_secs_f64()
    );
    let leader = client.status().await?.leader_id.context("a leader")?;
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .context("the leader")?;
    let tiles_addr = node.tiles_addr.clone().context("a tiles port")?;
    let spec = |workers: usize, window: usize, events_per_op: u64| LoadSpec {
        workers,
        window,
        events_per_op,
        warmup: Duration::from_secs_f64(timing.warmup),
        duration: Duration::from_secs_f64(timing.seconds),
        rate_events: None,
    };
    let appends = || -> anyhow::Result<Arc<dyn OpSource>> {
        Ok(Arc::new(VeritrailOps::new(
            client.clone(),
            Mode::Stream,
            16,
            timing.event_bytes,
        )?))
    };
    let mb_per_s =
        |f: &Figures, sizes: &tiles::TileSizes| f.events_per_s * sizes.mean_bytes() / 1e6;
    println!(
        "{:<44} {:>11} {:>9} {:>9} {:>9} {:>7}",
        "run (on the leader)", "per s", "p50 ms", "p99 ms", "MB/s", "errors"
    );
    let row = |name: &str, f: &Figures, mb: Option<f64>| {
        println!(
            "{:<44} {:>11.0} {:>9.2} {:>9.2} {:>9} {:>7}",
            name,
            f.events_per_s,
            f.p50_ms,
            f.p99_ms,
            mb.map_or("-".into(), |m| format!("{m:.1}")),
            f.errors
        );
        if let Some(e) = &f.first_error {
            println!("    first error: {e}");
        }
    };

    let alone = load::run(appends()?, spec(16, 512, 1)).await;
    row("appends alone, events (16 streams)", &alone, None);
    for (name, level) in [
        ("hash tiles alone, requests", Some(0)),
        ("entry bundles alone, requests", None),
    ] {
        let ops = Arc::new(tiles::TilesOps::new(&tiles_addr, level, size, readers)?);
        let sizes = ops.sizes();
        let figures = load::run(ops, spec(readers, 1, 1)).await;
        row(
            &format!("{name} ({readers} readers)"),
            &figures,
            Some(mb_per_s(&figures, &sizes)),
        );
    }
    // An auditor reads every bundle in order while the services append.
    let auditor = Arc::new(tiles::TilesOps::new(&tiles_addr, None, size, 1)?);
    let auditor_sizes = auditor.sizes();
    let reading = tokio::spawn(load::run(auditor, spec(1, 1, 1)));
    let with_reader = load::run(appends()?, spec(16, 512, 1)).await;
    let read = reading.await?;
    row(
        "appends with an auditor reading, events",
        &with_reader,
        None,
    );
    row(
        "bundles the auditor read meanwhile, requests",
        &read,
        Some(mb_per_s(&read, &auditor_sizes)),
    );
    // Appends alone again: the log is longer now, and the machine noisy;
    // the auditor's cost is against the mean of the two.
    let again = load::run(appends()?, spec(16, 512, 1)).await;
    row("appends alone again, events", &again, None);
    let baseline = (alone.events_per_s + again.events_per_s) / 2.0;
    if baseline > 0.0 {
        println!(
            "appends with the auditor: {:.0}% of appends alone (the mean of the two runs)",
            100.0 * with_reader.events_per_s / baseline
        );
    }
    Ok(())
}

/// Fills the log with about `entries` events of 256 bytes, 16 workers of
/// 1,024-event batches: the size reached, and how long it took.
async fn fill(client: &veritrail_client::Client, entries: u64) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let ops: Arc<dyn OpSource> = Arc::new(VeritrailOps::new(
        client.clone(),
        Mode::Batch(1024),
        16,
        256,
    )?);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let batches = entries.div_ceil(1024);
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let ops = Arc::clone(&ops);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= batches {
                    return Ok::<(), anyhow::Error>(());
                }
                ops.op(worker, n).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill = started.elapsed();
    Ok((client.status().await?.tree_size, fill))
}

fn quantile_ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Times `count` inclusion proofs of pseudo-random entries of a tree of `size`.
async fn time_proofs(
    client: &veritrail_client::Client,
    size: u64,
    count: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..count {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let seq = seed % size;
        let t = Instant::now();
        let proof = client.inclusion_proof(seq, size).await?;
        histogram.record(t.elapsed().as_micros().max(1) as u64)?;
        if proof.proof.is_empty() && size > 1 {
            bail!("an empty inclusion proof for seq {seq}");
        }
    }
    Ok(histogram)
}

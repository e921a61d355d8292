//! `veritraild`: run a Veritrail node, or check a stopped node's data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;
use veritrail_server::Config;
use veritrail_server::config::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "veritraild", version, about = "A Veritrail audit log node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node (the default).
    Run(RunArgs),
    /// Check a stopped node's data directory: recompute every hash, chain link,
    /// Merkle node and index, and compare with every recorded checkpoint.
    Fsck {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Restore a backup (`veritrail cluster backup`) into this node's empty
    /// data directory; the node's settings come from the usual config file,
    /// environment and flags. Start the node afterwards as usual. Restore the
    /// same backup on every member before starting any of them.
    Restore {
        /// The backup file.
        #[arg(long)]
        backup: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print a running node's view of the cluster. Exits 1 when there is no
    /// leader, or fewer voters than `--require-voters`.
    Status {
        #[arg(long, default_value = "127.0.0.1:7001")]
        addr: String,
        #[arg(long, default_value_t = 0)]
        require_voters: usize,
    },
    /// gRPC health check of a running node, for container health checks.
    /// Exits 0 when it serves (liveness); with --ready, when it is also a
    /// member of a cluster with a known leader (readiness).
    Health {
        #[arg(long, default_value = "127.0.0.1:7001")]
        addr: String,
        #[arg(long)]
        ready: bool,
    },
}

/// Flags override the file and the environment. Unset flags change nothing.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
struct RunArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "VERITRAIL_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_addr: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_addr: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// `id=host:port`, repeated or comma-separated.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    initial_members: Vec<String>,
    /// `text` or `json`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Fsck { data_dir }) => fsck(&data_dir),
        Some(Command::Restore { backup, run }) => restore(&backup, &run),
        Some(Command::Status {
            addr,
            require_voters,
        }) => probe(|| status(addr, require_voters)),
        Some(Command::Health { addr, ready }) => probe(|| health(addr, ready)),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), &args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veritraild: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(veritrail_server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("veritraild: {e}");
            ExitCode::FAILURE
        }
    }
}

fn restore(backup: &std::path::Path, args: &RunArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::from(2);
        }
    };
    let store_config = veritrail_store::StoreConfig::new(config.origin.clone());
    match veritrail_store::restore(&config.data_dir, &store_config, backup, config.node_id) {
        Ok(report) => {
            println!(
                "restored {} entries (root {}) at Raft index {} into {}",
                report.tree_size,
                report.root.to_hex(),
                report.last_log_index,
                config.data_dir.display()
            );
            for (id, addr, voter) in &report.members {
                let role = if *voter { "voter" } else { "learner" };
                println!("  member {id:>3} {role:<8} {addr}");
            }
            println!(
                "start node {} with this data directory; restore the same backup on the other members first",
                config.node_id
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veritraild restore: {e}");
            ExitCode::from(1)
        }
    }
}

fn fsck(data_dir: &std::path::Path) -> ExitCode {
    match veritrail_store::fsck(data_dir) {
        Ok(report) => {
            println!(
                "origin {}: {} entries, {} checkpoints checked",
                report.origin, report.entries, report.checkpoints
            );
            if report.is_clean() {
                println!("ok: no inconsistency found");
                return ExitCode::SUCCESS;
            }
            for p in &report.problems {
                let seq = p.seq.map_or("-".to_owned(), |s| s.to_string());
                println!("seq {seq:>10}  {:?}: {}", p.kind, p.detail);
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("veritraild fsck: {e}");
            ExitCode::from(2)
        }
    }
}

fn probe<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(5), f()).await })
    {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("veritraild: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("veritraild: no answer within 5 s");
            ExitCode::from(1)
        }
    }
}

async fn channel(addr: &str) -> Result<tonic::transport::Channel, String> {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr:?}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))
}

async fn status(addr: String, require_voters: usize) -> Result<(), String> {
    use veritrail_proto::v1::StatusRequest;
    use veritrail_proto::v1::admin_client::AdminClient;
    let s = AdminClient::new(channel(&addr).await?)
        .status(StatusRequest {})
        .await
        .map_err(|e| format!("status: {}", e.message()))?
        .into_inner();
    println!(
        "node {} ({}) term {} leader {} tree size {} root {}",
        s.node_id,
        s.role,
        s.term,
        s.leader_id
            .map_or("none".to_owned(), |l| format!("{l} at {}", s.leader_addr)),
        s.tree_size,
        veritrail_core::Hash::from_slice(&s.root_hash)
            .map(|h| h.to_hex())
            .unwrap_or_default()
    );
    for m in &s.members {
        println!(
            "  node {:>3} {:<8} {:<22} {}",
            m.node_id,
            if m.voter { "voter" } else { "learner" },
            m.addr,
            m.public_key
        );
    }
    let voters = s.members.iter().filter(|m| m.voter).count();
    if s.leader_id.is_none() {
        return Err("no leader".into());
    }
    if voters < require_voters {
        return Err(format!("{voters} voters, {require_voters} required"));
    }
    Ok(())
}

async fn health(addr: String, ready: bool) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let reply = HealthClient::new(channel(&addr).await?)
        .check(HealthCheckRequest {
            service: if ready {
                veritrail_server::checkpointer::READY_SERVICE.into()
            } else {
                "veritrail.v1.AuditLog".into()
            },
        })
        .await
        .map_err(|e| format!("health: {}", e.message()))?
        .into_inner();
    if reply.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        println!("serving");
        Ok(())
    } else {
        Err(format!("not serving (status {})", reply.status))
    }
}

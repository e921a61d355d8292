//! `veritrail-witness`: `keygen` makes the witness's key, `key` prints its
//! verifier key, `run` serves `add-checkpoint` (docs/WITNESS.md).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use veritrail_core::cosignature::Cosigner;
use veritrail_core::note::validate_key_name;
use veritrail_witness::config::Config;
use veritrail_witness::protocol::Witness;
use veritrail_witness::state::StateFile;

#[derive(Debug, Parser)]
#[command(name = "veritrail-witness", version, about, help_expected = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Makes a new witness key and prints its verifier key.
    Keygen {
        /// The witness's name, in its cosignatures: a schema-less URL such
        /// as `witness.example.com/w1` (no spaces, no `+`).
        #[arg(long)]
        name: String,
        /// Where to write the secret key; an existing file is never
        /// overwritten.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Prints the verifier key of a witness key file, for the logs' and
    /// auditors' trust policies.
    Key {
        /// The witness's secret key file.
        #[arg(value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Serves `POST /add-checkpoint` until SIGINT or SIGTERM.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.command {
        Command::Keygen { name, out } => keygen(&name, &out),
        Command::Key { key_file } => {
            read_key(&key_file).map(|cosigner| println!("{}", cosigner.public()))
        }
        Command::Run { config } => run(&config),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veritrail-witness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(name: &str, out: &Path) -> Result<(), String> {
    validate_key_name(name).map_err(|e| e.to_string())?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("the OS random source failed: {e}"))?;
    let cosigner = Cosigner::from_seed(name, &seed).map_err(|e| e.to_string())?;
    seed.fill(0);
    let shown = out.display();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("creating {shown}: {e}"))?;
    writeln!(file, "{}", cosigner.to_signer_string())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {shown}: {e}"))?;
    eprintln!("wrote the witness key to {shown} (keep it secret); its verifier key:");
    println!("{}", cosigner.public());
    Ok(())
}

fn read_key(path: &Path) -> Result<Cosigner, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the witness key {}: {e}", path.display()))?;
    Cosigner::parse(text.trim_end()).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(config_path: &Path) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(config_path)?;
    let logs = config.trusted_logs()?;
    let cosigner = read_key(&config.key_file)?;
    let state = StateFile::open(&config.state_file)?;
    let witness = Arc::new(Witness::new(cosigner, logs, state));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", config.listen))?;
        tracing::info!(
            listen = %config.listen,
            key = %witness.cosigner().public(),
            logs = config.logs.len(),
            "veritrail-witness serving add-checkpoint"
        );
        axum::serve(listener, veritrail_witness::http::router(witness))
            .with_graceful_shutdown(stop_signal())
            .await
            .map_err(|e| format!("serving: {e}"))
    })
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
}

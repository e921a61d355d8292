//! `veritrail`: the command line of Veritrail, for operators and auditors.
//!
//! It talks to the cluster through the SDK and checks what the cluster claims
//! with the core's verifiers, on this machine: an auditor trusts the keys they
//! pinned and the mathematics, not the nodes.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use veritrail_client::{Client, ClientConfig, TlsSettings};

mod append;
mod cluster;
mod context;
mod keygen;
mod output;
mod read;
mod tiles;
mod tlog_proof;
mod trust;
mod verify;

use output::{Failure, Format};

const AFTER_HELP: &str = "\
Exit codes (the same for veritraild):
  0  success
  1  a check failed: verification (the reason and the first bad seq are printed)
  2  usage: bad flags, arguments, input or files, or a request refused as invalid
  3  unavailable: no node answered, or none could do it now; retrying later may work
  4  not found: the entry or checkpoint asked for does not exist
  5  denied: missing credentials, or not allowed by the policy";

#[derive(Debug, Parser)]
#[command(name = "veritrail", version, about = "Append to, read, prove and verify a Veritrail audit log", after_help = AFTER_HELP, help_expected = true)]
struct Cli {
    /// Node addresses (host:port), comma-separated; any node will do.
    #[arg(
        long,
        env = "VERITRAIL_ENDPOINTS",
        value_delimiter = ',',
        global = true,
        default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"
    )]
    endpoints: Vec<String>,
    /// `text` for people, `json` (one object per line) for programs.
    #[arg(long, value_enum, default_value = "text", global = true)]
    output: Format,
    /// Read from the answering node's own state, which may lag the leader.
    #[arg(long, global = true)]
    local: bool,
    /// Longest wait for one answer, in milliseconds.
    #[arg(long, global = true, default_value_t = 15_000)]
    timeout_ms: u64,
    /// Longest time spent retrying a call the cluster cannot answer yet (no
    /// leader, node down), in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000)]
    retry_ms: u64,
    /// The cluster's CA certificate (PEM): talk TLS and verify the nodes.
    /// Without it the CLI speaks plain HTTP/2, which only development nodes
    /// accept.
    #[arg(long, env = "VERITRAIL_CA", global = true)]
    ca: Option<std::path::PathBuf>,
    /// This client's certificate (PEM); its identity is the principal the
    /// cluster records for what the CLI appends.
    #[arg(long, env = "VERITRAIL_CERT", global = true, requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "VERITRAIL_KEY", global = true, requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// A bearer token, instead of a client certificate (`veritraild token`).
    #[arg(long, env = "VERITRAIL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// A named context of the configuration file ($VERITRAIL_CLI_CONFIG, or
    /// ~/.config/veritrail/config.toml): a cluster's endpoints and the
    /// credentials for it. Flags and environment variables override it.
    #[arg(long, env = "VERITRAIL_CONTEXT", global = true)]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append one event from flags, or many as newline-delimited JSON on stdin.
    Append(append::AppendArgs),
    /// Print one entry, by seq or by source and event id.
    Get(read::GetArgs),
    /// Print the entries of a range, filtered.
    Scan(read::ScanArgs),
    /// Print entries from a seq on; with --follow, keep printing new ones.
    Tail(read::TailArgs),
    /// Print the latest co-signed checkpoint (a C2SP signed note).
    Checkpoint(read::CheckpointArgs),
    /// Fetch and check a Merkle proof.
    #[command(subcommand)]
    Proof(read::ProofCommand),
    /// Check the log against the latest checkpoint on this machine: every
    /// entry's chain link, the Merkle root, and the checkpoint's signatures.
    Verify(verify::VerifyArgs),
    /// Write an evidence bundle of a range, checked as it is written.
    Export(verify::ExportArgs),
    /// Write the log as a C2SP tlog-tiles tree (checkpoint, hash tiles, entry
    /// bundles) into a directory that any static web server can serve;
    /// checked as it is written, and brought up to date when run again.
    ExportTiles(tiles::ExportTilesArgs),
    /// Check an evidence bundle offline, without any network.
    VerifyBundle(verify::VerifyBundleArgs),
    /// Check a C2SP tlog-proof file (`proof inclusion --tlog-proof`) offline,
    /// without any network: the entry it carries, its inclusion proof and
    /// the co-signed checkpoint, against the keys given.
    VerifyProof(tlog_proof::VerifyProofArgs),
    /// Read an evidence bundle offline: `bundle show FILE` prints its entries.
    #[command(subcommand)]
    Bundle(verify::BundleCommand),
    /// Inspect and change the cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Make an Ed25519 key for a service to sign its events with: writes the
    /// secret key to --out (owner-only) and prints the verifier key, which goes
    /// in the policy's `[[signer]]` table and the auditors' signer list.
    Keygen(keygen::KeygenArgs),
    /// Print a shell completion script: `source <(veritrail completions bash)`,
    /// or save it where the shell looks (zsh: a `_veritrail` file on $fpath).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `veritrail man | man -l -`, or save it as
    /// veritrail.1 in a man directory.
    Man,
}

/// Where the trusted keys come from, for the commands that check signatures.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Node verifier keys (`name+hash+base64`), comma-separated, or `@FILE`
    /// with one per line. Without it, the keys the cluster reports are used
    /// (trust on first use) and a warning says so.
    #[arg(long, value_delimiter = ',')]
    pub keys: Vec<String>,
    /// How many of the keys must have signed; a majority by default.
    #[arg(long)]
    pub quorum: Option<usize>,
    /// A trust policy file (C2SP tlog-policy; docs/FORMAT.md section 13): the
    /// voters' keys and quorum, and the witnesses whose cosignatures a
    /// checkpoint needs. Instead of --keys and --quorum.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keys", "quorum"])]
    pub policy: Option<std::path::PathBuf>,
}

/// A reader that stops early (`| head -1`) closes the pipe: end quietly with
/// status 0, as Unix tools do, instead of panicking on the broken pipe.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Panic messages are a String when formatted, a &str otherwise.
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.contains("Broken pipe")) {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    refuse_flags_that_do_not_apply(&matches);
    let mut cli = cli;
    let offline = matches!(
        cli.command,
        Command::VerifyBundle(_) | Command::Bundle(_) | Command::Completions { .. } | Command::Man
    );
    if !offline && let Err(e) = apply_context(&mut cli, &matches) {
        eprintln!("error: {e:#}");
        return ExitCode::from(output::EXIT_USAGE);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(output::EXIT_USAGE);
        }
    };
    let format = cli.output;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(output::EXIT_OK),
        Err(failure) => output::report_failure(format, failure),
    }
}

/// Where a global argument's value came from, as the innermost subcommand saw
/// it (clap copies global arguments down to it).
fn source_of(matches: &clap::ArgMatches, id: &str) -> Option<clap::parser::ValueSource> {
    let mut leaf = matches;
    while let Some((_, nested)) = leaf.subcommand() {
        leaf = nested;
    }
    leaf.value_source(id)
}

/// Fills in, from the selected context, what neither the command line nor the
/// environment set.
fn apply_context(cli: &mut Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let Some(path) = context::config_path() else {
        return Ok(());
    };
    let file = context::ConfigFile::load(&path)?;
    let Some((_, chosen)) = file.select(cli.context.as_deref(), &path)? else {
        return Ok(());
    };
    let unset = |id: &str| {
        matches!(
            source_of(matches, id),
            None | Some(clap::parser::ValueSource::DefaultValue)
        )
    };
    if unset("endpoints")
        && let Some(endpoints) = chosen.endpoints
    {
        cli.endpoints = endpoints;
    }
    if unset("ca") && chosen.ca.is_some() {
        cli.ca = chosen.ca;
    }
    if unset("cert") && unset("key") && chosen.cert.is_some() {
        cli.cert = chosen.cert;
        cli.key = chosen.key;
    }
    if unset("token")
        && let Some(token_file) = &chosen.token_file
    {
        let token = std::fs::read_to_string(token_file)
            .with_context(|| format!("reading the token file {}", token_file.display()))?;
        cli.token = Some(token.trim().to_owned());
    }
    Ok(())
}

/// The global flags that say how to reach the cluster mean nothing to the
/// commands that never reach it: given on the command line to one of those,
/// they are a usage error (exit 2) rather than silently ignored. Set in the
/// environment (`VERITRAIL_ENDPOINTS`, ...), they are left alone.
fn refuse_flags_that_do_not_apply(matches: &clap::ArgMatches) {
    const CONNECTION: [&str; 9] = [
        "endpoints",
        "local",
        "timeout_ms",
        "retry_ms",
        "ca",
        "cert",
        "key",
        "token",
        "context",
    ];
    let Some((name @ ("verify-bundle" | "bundle" | "completions" | "man"), mut sub)) =
        matches.subcommand()
    else {
        return;
    };
    // Global flags are also kept in the nested subcommand's matches.
    while let Some((_, nested)) = sub.subcommand() {
        sub = nested;
    }
    let given: Vec<String> = CONNECTION
        .iter()
        .filter(|id| sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !given.is_empty() {
        <Cli as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "`{name}` talks to no node, so {} cannot apply; drop {}",
                    given.join(", "),
                    if given.len() == 1 { "it" } else { "them" }
                ),
            )
            .exit();
    }
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    let mut config = ClientConfig::new(cli.endpoints.iter().cloned());
    config.local_reads = cli.local;
    config.request_timeout_ms = cli.timeout_ms;
    config.retry.deadline_ms = cli.retry_ms;
    if let Some(ca) = &cli.ca {
        let identity = cli.cert.as_deref().zip(cli.key.as_deref());
        config.tls = Some(
            TlsSettings::from_files(ca, identity)
                .map_err(|e| Failure::Other(anyhow::anyhow!("TLS: {e}")))?,
        );
    } else if cli.cert.is_some() {
        return Err(Failure::Other(anyhow::anyhow!(
            "--cert needs --ca (VERITRAIL_CA): the cluster's CA to verify the nodes with"
        )));
    }
    config.token = cli.token.clone();
    Ok(Client::with_config(config)?)
}

async fn run(cli: Cli) -> output::CmdResult {
    let format = cli.output;
    // The offline commands must not even build a client.
    match &cli.command {
        Command::VerifyBundle(args) => return verify::verify_bundle(format, args),
        Command::VerifyProof(args) => return tlog_proof::verify_proof(format, args),
        Command::Bundle(command) => return verify::bundle(format, command),
        Command::Keygen(args) => return keygen::run(format, args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "veritrail", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            return Ok(());
        }
        _ => {}
    }
    let client = connect(&cli)?;
    match &cli.command {
        Command::Append(args) => append::run(&client, format, args).await,
        Command::Get(args) => read::get(&client, format, args).await,
        Command::Scan(args) => read::scan(&client, format, args).await,
        Command::Tail(args) => read::tail(&client, format, args).await,
        Command::Checkpoint(args) => read::checkpoint(&client, format, args).await,
        Command::Proof(command) => read::proof(&client, format, command).await,
        Command::Verify(args) => verify::verify(&client, format, args).await,
        Command::Export(args) => verify::export(&client, format, args).await,
        Command::ExportTiles(args) => tiles::export_tiles(&client, format, args).await,
        Command::VerifyBundle(_)
        | Command::VerifyProof(_)
        | Command::Bundle(_)
        | Command::Keygen(_)
        | Command::Completions { .. }
        | Command::Man => Ok(()),
        Command::Cluster(command) => cluster::run(&client, format, command).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flag and argument of every command says what it is for (#23
    /// item 6: several had an empty help): `help_expected` makes clap check
    /// it, here and in every debug build.
    #[test]
    fn every_flag_has_help() {
        super::Cli::command().debug_assert();
    }
}

//! `veritraild`: run a Veritrail node, or check a stopped node's data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;
use veritrail_server::Config;
use veritrail_server::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "veritraild",
    version,
    about = "A Veritrail audit log node",
    help_expected = true
)]
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
        /// The data directory to check (of a stopped node).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Repair a stopped node whose data is damaged (`fsck` flags it): move its
    /// database and snapshots aside into DATA_DIR/damaged-<time>/ (nothing is
    /// deleted) and mark it repairing. Started again, the node receives the
    /// log from the others under its own identity, and votes only once it
    /// holds its leader's log. `repair.auto` does the same by itself.
    Repair {
        /// The data directory of the stopped node.
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
    /// leader, or fewer voters than `--require-voters`; 2 for bad flags or
    /// files; 3 when the node does not answer; 5 when it refuses the
    /// credentials (the `veritrail` CLI's exit codes).
    Status {
        #[command(flatten)]
        probe: ProbeArgs,
        /// Exit 1 when the cluster has fewer voters than this.
        #[arg(long, default_value_t = 0)]
        require_voters: usize,
    },
    /// gRPC health check of a running node, for container health checks.
    /// Exits 0 when it serves (liveness); with --ready, when it is also a
    /// member of a cluster with a known leader (readiness). Otherwise 1 when
    /// it answers that it does not, 2 for bad flags or files, 3 when it does
    /// not answer, 5 when it refuses the credentials.
    Health {
        #[command(flatten)]
        probe: ProbeArgs,
        /// Readiness instead of liveness: serving, a member, and a leader known.
        #[arg(long)]
        ready: bool,
    },
    /// Make a development certificate authority, and node and client
    /// certificates issued by it (docs/SECURITY.md). Never overwrites a file.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make a bearer token for a client without a certificate: prints the
    /// token (give it to the client) and the entry for `auth.tokens_file`
    /// (which holds only its SHA-256).
    Token {
        /// The principal the token authenticates as.
        #[arg(long)]
        principal: String,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// A new CA in DIR: ca.pem (give it to every node and client), ca.key
    /// (keep it off the nodes).
    Ca {
        /// The directory of the CA and the certificates.
        #[arg(long)]
        dir: PathBuf,
        /// The SPIFFE trust domain of the cluster's identities.
        #[arg(long, default_value = "veritrail.local")]
        trust_domain: String,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Node ID's certificate, DIR/node-ID.pem and .key, valid for the host
    /// names and IPs given plus localhost and 127.0.0.1.
    Node {
        /// The directory of the CA and the certificates.
        #[arg(long)]
        dir: PathBuf,
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// The cluster's origin (the node's `origin` setting): the certificate
        /// is good for this cluster only.
        #[arg(long)]
        origin: String,
        /// DNS names and IPs the node is reached by, comma-separated.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// A client certificate for service NAME, DIR/client-NAME.pem and .key;
    /// its principal is spiffe://<trust domain>/service/NAME.
    Client {
        /// The directory of the CA and the certificates.
        #[arg(long)]
        dir: PathBuf,
        /// The service's name (the last segment of its SPIFFE ID).
        #[arg(long)]
        name: String,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Revoke certificates: adds them to the CA's revocation list DIR/crl.pem
    /// (made empty if there is none and none is given) and signs it anew.
    /// Copy it to every node's tls.crl_file; nodes read it again within 2 s.
    Revoke {
        /// The directory of the CA and the certificates.
        #[arg(long)]
        dir: PathBuf,
        /// PEM files of the certificates to revoke (node or client).
        certs: Vec<PathBuf>,
        /// Days until the list's next update (it is still honoured after).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

/// How `status` and `health` reach a node. TLS settings come from the flags
/// (or the CLI's `VERITRAIL_CA`, `VERITRAIL_CERT`, `VERITRAIL_KEY`), or else from
/// the node's own configuration (`--config`, `VERITRAIL_TLS__*`), so a probe next
/// to a node needs no extra settings.
#[derive(Debug, Clone, clap::Args)]
struct ProbeArgs {
    /// The node to ask, host:port.
    #[arg(long, default_value = "127.0.0.1:7001")]
    addr: String,
    /// The node's TOML configuration, to take its TLS files from.
    #[arg(long, short = 'c', env = "VERITRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// The cluster CA (PEM); the same variable as the `veritrail` CLI's.
    #[arg(long, env = "VERITRAIL_CA")]
    ca: Option<PathBuf>,
    /// A client or node certificate (PEM) to authenticate with.
    #[arg(long, env = "VERITRAIL_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, env = "VERITRAIL_KEY", requires = "cert")]
    key: Option<PathBuf>,
    /// The name to check the node's certificate against; defaults to the
    /// host of --addr.
    #[arg(long)]
    server_name: Option<String>,
}

/// Flags override the file and the environment. Unset flags change nothing.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
struct RunArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "VERITRAIL_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// This node's id in the cluster (`node_id`); never reused for another node.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<u64>,
    /// Where to listen for clients and peers, host:port (`listen_addr`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_addr: Option<String>,
    /// The address other nodes and clients reach this one at, when it is not
    /// the listen address (`advertise_addr`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_addr: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`metrics_addr`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_addr: Option<String>,
    /// The node's data directory: its log, state and signing key (`data_dir`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// The log's name in its checkpoints, e.g. `audit.example.com/log`
    /// (`origin`); the same on every node, for ever.
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
    /// Run without TLS or authentication: a development node, allowed only
    /// when all its addresses are on loopback (`tls.insecure_dev`).
    #[arg(long)]
    #[serde(skip)]
    insecure_dev: bool,
}

/// What the flags override, nested the way the configuration is.
#[derive(Debug, Serialize)]
struct Overrides<'a> {
    #[serde(flatten)]
    args: &'a RunArgs,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsOverride>,
}

#[derive(Debug, Serialize)]
struct TlsOverride {
    insecure_dev: bool,
}

impl RunArgs {
    fn load(&self) -> Result<Config, veritrail_server::config::ConfigError> {
        let overrides = Overrides {
            args: self,
            tls: self
                .insecure_dev
                .then_some(TlsOverride { insecure_dev: true }),
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    // Colours only on a terminal: a log redirected to a file or a journal
    // should hold plain text that grep and log shippers read as written.
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
    let cli = Cli::parse();
    // The node itself writes only logs, to stderr; its tools print to stdout.
    if !matches!(cli.command, None | Some(Command::Run(_))) {
        quiet_on_broken_pipe();
    }
    match cli.command {
        Some(Command::Fsck { data_dir }) => fsck(&data_dir),
        Some(Command::Repair { data_dir }) => repair(&data_dir),
        Some(Command::Restore { backup, run }) => restore(&backup, &run),
        Some(Command::Status {
            probe: p,
            require_voters,
        }) => probe(|| status(p, require_voters)),
        Some(Command::Health { probe: p, ready }) => probe(|| health(p, ready)),
        Some(Command::Certs(command)) => certs(command),
        Some(Command::Token { principal }) => token(&principal),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let runtimes = match veritrail_server::runtimes::Runtimes::build(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::FAILURE;
        }
    };
    let raft = runtimes.raft.handle().clone();
    match runtimes
        .clients
        .block_on(veritrail_server::run(config, raft))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("veritraild: {e}");
            ExitCode::FAILURE
        }
    }
}

fn repair(data_dir: &std::path::Path) -> ExitCode {
    if in_use_by_a_node(data_dir) {
        eprintln!(
            "veritraild repair: a node is running on {} (it holds the database's lock); stop \
             it first",
            data_dir.display()
        );
        return ExitCode::from(1);
    }
    if !data_dir.join("db").exists() {
        eprintln!(
            "veritraild repair: {} holds no database: nothing to repair",
            data_dir.display()
        );
        return ExitCode::from(2);
    }
    match veritrail_server::repair::begin(data_dir, "veritraild repair, run by hand") {
        Ok(aside) => {
            println!("moved the node's data aside into {}", aside.display());
            println!(
                "start the node: it receives the log again from the others and votes once it \
                 holds its leader's log (metric veritrail_repairing, log \"repair done\")"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veritraild repair: {e}");
            ExitCode::from(1)
        }
    }
}

fn restore(backup: &std::path::Path, args: &RunArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("veritraild: {e}");
            return ExitCode::from(2);
        }
    };
    let store_config = config.store_config();
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

/// Whether another process holds RocksDB's lock on `data_dir`: a node runs on it.
fn in_use_by_a_node(data_dir: &std::path::Path) -> bool {
    use rustix::fs::{FlockOperation, fcntl_lock};
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(veritrail_store::lock_file(data_dir))
    else {
        return false;
    };
    // RocksDB takes a POSIX record lock (fcntl F_SETLK) on the file; a test
    // lock of the same kind fails while another process holds it.
    match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            let _ = fcntl_lock(&file, FlockOperation::NonBlockingUnlock);
            false
        }
        Err(e) => e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS,
    }
}

fn fsck(data_dir: &std::path::Path) -> ExitCode {
    let running = in_use_by_a_node(data_dir);
    if running {
        eprintln!(
            "veritraild fsck: warning: a node is running on {} (it holds the database's lock). \
             fsck reads the files as they are while the node writes them: it can report what \
             it read, not vouch for the directory. Stop the node for a definitive check.",
            data_dir.display()
        );
    }
    // Progress on stderr, every few seconds, for a large log.
    let started = std::time::Instant::now();
    let mut said = started;
    let mut progress = |checked: u64, total: u64| {
        if said.elapsed() >= std::time::Duration::from_secs(2) {
            said = std::time::Instant::now();
            eprintln!(
                "veritraild fsck: {checked} of {total} entries checked ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    };
    match veritrail_store::fsck_with_progress(data_dir, &mut progress) {
        Ok(report) => {
            println!(
                "origin {}: {} entries, {} checkpoints checked",
                report.origin, report.entries, report.checkpoints
            );
            if let Some(damage) = &report.torn_wal {
                println!(
                    "damaged: the write-ahead log ({damage}), past its last whole synced write, as \
                     a power cut leaves it. The node replays up to the damage at its next start, \
                     keeps every whole synced write past it and a copy of the WAL, and loses \
                     nothing synced; what was checked here is that replay."
                );
            }
            if report.is_clean() && report.torn_wal.is_none() {
                if running {
                    println!("ok: no inconsistency found in what was read (the node was running)");
                } else {
                    println!("ok: no inconsistency found");
                }
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
    Fut: std::future::Future<Output = Result<(), ProbeFailure>>,
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
            ExitCode::from(e.exit_code())
        }
        Err(_) => {
            eprintln!("veritraild: no answer within 5 s");
            ExitCode::from(3)
        }
    }
}

fn certs(command: CertsCommand) -> ExitCode {
    use veritrail_server::certs;
    let made = match command {
        CertsCommand::Ca {
            dir,
            trust_domain,
            days,
        } => certs::make_ca(&dir, &trust_domain, days),
        CertsCommand::Node {
            dir,
            id,
            origin,
            hosts,
            days,
        } => certs::make_node(&dir, id, &origin, &hosts, days),
        CertsCommand::Client { dir, name, days } => certs::make_client(&dir, &name, days),
        CertsCommand::Revoke { dir, certs, days } => {
            return match certs::revoke(&dir, &certs, days) {
                Ok(r) => {
                    println!(
                        "wrote {}: {} certificates revoked ({} new); next update due {}. \
                         Copy it to every node's tls.crl_file",
                        r.path.display(),
                        r.total,
                        r.added,
                        r.next_update.date()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("veritraild certs: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match made {
        Ok(path) => {
            println!("wrote {} and its key", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("veritraild certs: {e}");
            ExitCode::from(2)
        }
    }
}

fn token(principal: &str) -> ExitCode {
    use sha2::Digest;
    if principal.is_empty() || principal.chars().any(char::is_control) {
        eprintln!("veritraild token: the principal must be non-empty text");
        return ExitCode::from(2);
    }
    let mut secret = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut secret) {
        eprintln!("veritraild token: no randomness from the OS: {e}");
        return ExitCode::FAILURE;
    }
    let token = hex::encode(secret);
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    println!("token (give to the client; it is not stored anywhere): {token}");
    println!("# for auth.tokens_file:");
    println!("[[token]]\nprincipal = {principal:?}\nsha256 = \"{digest}\"");
    ExitCode::SUCCESS
}

/// Why `status` or `health` failed, and so its exit code: the scheme of the
/// `veritrail` CLI (docs/ERRORS.md, "Exit codes").
#[derive(Debug)]
enum ProbeFailure {
    /// The node answered, and is not what was asked: no leader, too few
    /// voters, not serving (1).
    Unhealthy(String),
    /// Bad flags or files (2).
    Usage(String),
    /// The node did not answer, or could not (3).
    Unavailable(String),
    /// The node refused the credentials (5).
    Denied(String),
}

impl ProbeFailure {
    fn exit_code(&self) -> u8 {
        match self {
            ProbeFailure::Unhealthy(_) => 1,
            ProbeFailure::Usage(_) => 2,
            ProbeFailure::Unavailable(_) => 3,
            ProbeFailure::Denied(_) => 5,
        }
    }

    /// A call's failure, by its gRPC code.
    fn of(call: &str, status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = format!("{call}: {}", status.message());
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => ProbeFailure::Denied(message),
            Code::InvalidArgument | Code::Unimplemented => ProbeFailure::Usage(message),
            _ => ProbeFailure::Unavailable(message),
        }
    }
}

impl From<String> for ProbeFailure {
    fn from(message: String) -> Self {
        ProbeFailure::Usage(message)
    }
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeFailure::Unhealthy(m)
            | ProbeFailure::Usage(m)
            | ProbeFailure::Unavailable(m)
            | ProbeFailure::Denied(m) => f.write_str(m),
        }
    }
}

async fn channel(p: &ProbeArgs) -> Result<tonic::transport::Channel, ProbeFailure> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (ca, identity) = match &p.ca {
        Some(ca) => (Some(ca.clone()), p.cert.clone().zip(p.key.clone())),
        None if p.cert.is_some() => {
            return Err(ProbeFailure::Usage(
                "--cert needs --ca (VERITRAIL_CA): the CA to verify the node with".into(),
            ));
        }
        None => match Config::load(p.config.as_deref(), &NoOverrides {}) {
            Ok(config) if config.tls.enabled() => (
                config.tls.ca_file.clone(),
                config
                    .tls
                    .cert_file
                    .clone()
                    .zip(config.tls.key_file.clone()),
            ),
            // A development node.
            Ok(_) => (None, None),
            // A node's environment may hold only part of its settings (the
            // StatefulSet exports the certificate's path in the node's shell
            // only): its CA is enough to check a node.
            Err(e) => match std::env::var_os("VERITRAIL_TLS__CA_FILE") {
                Some(ca) => (Some(PathBuf::from(ca)), None),
                None if p.config.is_some() => {
                    return Err(ProbeFailure::Usage(format!(
                        "cannot take TLS settings from the configuration: {e}"
                    )));
                }
                None => (None, None),
            },
        },
    };
    let addr = &p.addr;
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| format!("{addr:?}: {e}"))?;
    if let Some(ca) = ca {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&ca)?));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(read(&cert)?, read(&key)?));
        }
        if let Some(name) = &p.server_name {
            tls = tls.domain_name(name.clone());
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| ProbeFailure::Unavailable(format!("cannot reach {addr}: {e}")))
}

#[derive(Serialize)]
struct NoOverrides {}

async fn status(probe: ProbeArgs, require_voters: usize) -> Result<(), ProbeFailure> {
    use veritrail_proto::v1::StatusRequest;
    use veritrail_proto::v1::admin_client::AdminClient;
    let s = AdminClient::new(channel(&probe).await?)
        .status(StatusRequest {})
        .await
        .map_err(|e| ProbeFailure::of("status", &e))?
        .into_inner();
    println!(
        "node {} ({}) term {} leader {} tree size {} root {}",
        s.node_id,
        s.role,
        s.term,
        s.leader_id
            .map_or("none".to_owned(), |l| format!("{l} at {}", s.leader_addr)),
        s.tree_size,
        veritrail_proto::hash_from_wire("root_hash", &s.root_hash)
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
        return Err(ProbeFailure::Unhealthy("no leader".into()));
    }
    if voters < require_voters {
        return Err(ProbeFailure::Unhealthy(format!(
            "{voters} voters, {require_voters} required"
        )));
    }
    Ok(())
}

async fn health(probe: ProbeArgs, ready: bool) -> Result<(), ProbeFailure> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let reply = HealthClient::new(channel(&probe).await?)
        .check(HealthCheckRequest {
            service: if ready {
                veritrail_server::background::READY_SERVICE.into()
            } else {
                "veritrail.v1.AuditLog".into()
            },
        })
        .await
        .map_err(|e| ProbeFailure::of("health", &e))?
        .into_inner();
    if reply.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        println!("serving");
        Ok(())
    } else {
        Err(ProbeFailure::Unhealthy(format!(
            "not serving (status {})",
            reply.status
        )))
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

//! Node configuration: embedded defaults, then a TOML file, then `VERITRAIL_*`
//! environment variables, then command-line flags; later sources win.
//!
//! Every limit carries its unit in its name. `Config::validate` checks the whole
//! result and says which setting is wrong and why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use veritrail_core::Limits;

/// Everything a node needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's Raft id. Never reuse the id of a node whose data was lost.
    pub node_id: u64,
    /// Where the gRPC server listens (public API and peer traffic).
    pub listen_addr: SocketAddr,
    /// The `host:port` peers and clients use to reach this node; defaults to
    /// `listen_addr`.
    pub advertise_addr: Option<String>,
    /// Where `/metrics` (Prometheus text) is served; off when absent.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's data directory (RocksDB, snapshots, its signing key).
    pub data_dir: PathBuf,
    /// The log's origin; identical on every node of a cluster.
    pub origin: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Bootstrap: `id=host:port` of the first voters. The member with the
    /// smallest id initializes the cluster once all are reachable; a cluster
    /// that is already initialized is left alone.
    pub initial_members: Vec<String>,
    pub batch: BatchConfig,
    pub raft: RaftConfig,
    pub checkpoint: CheckpointConfig,
    pub grpc: GrpcConfig,
    pub limits: LimitsConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub disk: DiskConfig,
    pub repair: RepairConfig,
    pub tiles: TilesConfig,
    /// External witnesses this node submits its checkpoints to
    /// (`witnesses.rs`), as `[[witness]]` tables.
    #[serde(rename = "witness")]
    pub witnesses: Vec<WitnessConfig>,
}

/// One external witness (C2SP tlog-witness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Its submission prefix, `http://host:port[/path]`; `/add-checkpoint`
    /// is appended.
    pub url: String,
    /// Its verifier key (`veritrail-witness key`): a cosignature is kept only
    /// when it verifies with this key.
    pub key: String,
}

/// The C2SP tlog-tiles read path (`tiles.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TilesConfig {
    /// Where `checkpoint` and `tile/...` are served over HTTP(S), TLS as on
    /// `listen_addr`; off when absent.
    pub listen_addr: Option<SocketAddr>,
    /// Serve to anyone, without a client certificate or token. Tiles hold
    /// hashes and the checkpoint only; off, a caller needs the policy's
    /// `proofs` grant.
    pub anonymous: bool,
    /// Connections held open at once; one more is closed as soon as it is
    /// accepted, before its TLS handshake. A connection with no request
    /// open for `grpc.idle_timeout_ms` is closed and gives its place back.
    pub max_connections: usize,
}

impl Default for TilesConfig {
    fn default() -> Self {
        TilesConfig {
            listen_addr: None,
            anonymous: false,
            max_connections: 1024,
        }
    }
}

/// What a node does with data that fails its checks on open (`repair.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepairConfig {
    /// Repair by itself: move the damaged state aside (never deleting it),
    /// start empty under the same identity, take no part in elections until
    /// it holds its leader's log again. Off: refuse to start, as before, for
    /// an operator (`veritraild repair` does the same by hand). The
    /// deployment examples turn it on.
    pub auto: bool,
}

/// The disk under the data directory (`disk.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Free bytes the data directory's file system keeps in reserve: below
    /// it, the node takes no new entries: as leader it refuses new appends
    /// (`RESOURCE_EXHAUSTED`, naming the disk), as follower the leader's
    /// entries, so that the disk never fills under Raft, which cannot recover
    /// from a failed write. Replication, checkpoints and snapshots go on in
    /// the reserve. 0 turns the check off.
    pub reserve_bytes: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            reserve_bytes: 256 << 20,
        }
    }
}

/// TLS for every connection, clients' and peers' (docs/SECURITY.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM of the cluster's certificate authority. It verifies peers (which
    /// must present a node certificate: mutual TLS) and client certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM of this node's certificate, with the SPIFFE ID
    /// `spiffe://<trust domain>/veritrail/<origin>/node/<node_id>` and a SAN for every
    /// name clients and peers reach it by. `veritraild certs node` makes one.
    pub cert_file: Option<PathBuf>,
    /// PEM of this node's private key (PKCS#8).
    pub key_file: Option<PathBuf>,
    /// PEM of certificate revocation lists of the CA (`veritraild certs
    /// revoke` makes and updates one). A client or peer certificate listed
    /// there fails the TLS handshake. Read again on reload, as the other files.
    pub crl_file: Option<PathBuf>,
    /// Run without TLS: no authentication, every client is `anonymous` and any
    /// process can speak Raft to the node. Refused unless every address of
    /// the node is on loopback. For development only; the node says so in its
    /// log at start and every minute.
    pub insecure_dev: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.insecure_dev
    }
}

/// Who may do what (docs/SECURITY.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// TOML policy: which principals may append to which sources, read, fetch
    /// proofs and administer. Without one, every authenticated principal may
    /// do everything; with one, whatever it does not grant is denied.
    pub policy_file: Option<PathBuf>,
    /// TOML list of bearer tokens (as SHA-256 digests) and the principal each
    /// authenticates, for clients without a certificate.
    pub tokens_file: Option<PathBuf>,
    /// Denied appends recorded in the log per principal per second at most;
    /// beyond it they are only counted (`veritrail_denied_total`), so a
    /// misbehaving client cannot flood the log with its own denials.
    pub denial_records_per_s: u32,
}

/// Per-principal rate limits; 0 turns one off. A client over its limit gets
/// `RESOURCE_EXHAUSTED` and may retry after a moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Events appended per principal per second, sustained.
    pub events_per_s: u32,
    /// Events a principal may append at once above the sustained rate.
    pub events_burst: u32,
    /// Requests (of any kind) per principal per second, sustained.
    pub requests_per_s: u32,
    /// Requests a principal may make at once above the sustained rate.
    pub requests_burst: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            policy_file: None,
            tokens_file: None,
            denial_records_per_s: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Group commit on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most events in one Raft entry.
    #[serde(alias = "max_events")]
    pub entry_max_events: usize,
    /// Most payload bytes (sum of events' sizes) in one Raft entry.
    #[serde(alias = "max_bytes")]
    pub entry_max_bytes: usize,
    /// How long the first request of a batch waits for company, microseconds.
    /// 0 (the default) proposes at once what is queued: requests that arrive
    /// while `inflight_max_entries` proposals replicate wait for a slot, and batch up
    /// there, so batches grow with the load without a timer. A non-zero value
    /// is rounded up to the runtime's 1 ms timer, and adds that to every
    /// append at low load.
    pub linger_us: u64,
    /// Raft entries proposed and not yet committed at once.
    #[serde(alias = "max_inflight")]
    pub inflight_max_entries: usize,
    /// Requests waiting for a batch; beyond it appends are refused
    /// (`RESOURCE_EXHAUSTED`) instead of queueing without bound.
    pub queue_max_requests: usize,
    /// Events waiting for a batch, across all requests; beyond it appends are
    /// refused (`RESOURCE_EXHAUSTED`). Keep it to a second or two of the
    /// cluster's throughput, so that queued requests finish well within
    /// `grpc.request_timeout_ms`. At least `grpc.request_max_events`.
    pub queue_max_events: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many Raft log entries since the last one.
    /// A snapshot only records a point of the append-only log (one small
    /// write), and it lets Raft purge its log up to that point. While the
    /// leader catches a member up, snapshots wait, up to ten times this.
    pub snapshot_after_entries: u64,
    /// Take a snapshot after this many events applied since the last one. Under
    /// load one Raft entry carries a whole batch (hundreds of events), so
    /// counting entries alone would let the Raft log, a second copy of every
    /// event, grow for millions of events. 0 counts entries only.
    pub snapshot_after_events: u64,
    /// Raft log entries kept after a snapshot, so that a follower slightly
    /// behind catches up from the log rather than by snapshot.
    pub keep_after_snapshot_entries: u64,
    /// Raft entries per AppendEntries message.
    #[serde(alias = "max_payload_entries")]
    pub append_entries_max_entries: u64,
    /// Bytes of Raft entries per AppendEntries message, at most (one entry
    /// goes alone whatever its size). A follower that is behind is sent its
    /// backlog in messages of this size or, after a message was slow to
    /// deliver, smaller ones: openraft gives each message one heartbeat to
    /// answer, and a message that cannot make it would be retried unchanged
    /// forever.
    pub append_entries_max_bytes: u64,
    /// How long one AppendEntries message may take in all. openraft waits for
    /// an answer one heartbeat at a time; a message still under way when that
    /// runs out keeps going, and the next attempt waits for it instead of
    /// sending it again.
    pub append_entries_timeout_ms: u64,
    /// A member that stays behind the leader without advancing for this long
    /// is logged as stuck, once, with the last replication error, and shown
    /// as stuck in status and metrics.
    pub replication_stuck_after_ms: u64,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Deadline of one snapshot chunk, including the final install.
    pub install_snapshot_timeout_ms: u64,
    /// Worker threads of Raft's own runtime, apart from client calls
    /// (`runtimes.rs`).
    pub threads: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// How often the leader cuts and co-signs a checkpoint when the log grew.
    pub interval_ms: u64,
    /// How long a voter waits to reach a checkpoint's size before refusing.
    pub catch_up_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Largest message accepted or sent, both ways.
    #[serde(alias = "max_message_bytes")]
    pub message_max_bytes: usize,
    /// Deadline of an append or read inside the node (forwarding included).
    pub request_timeout_ms: u64,
    /// Most events in one AppendBatch or stream request.
    #[serde(alias = "max_batch_events")]
    pub request_max_events: usize,
    /// Appends in flight on one AppendStream.
    pub stream_max_inflight: usize,
    /// Concurrent calls (HTTP/2 streams) on one connection; beyond it a
    /// client waits for one of its calls to end.
    #[serde(alias = "max_concurrent_streams")]
    pub connection_max_streams: u32,
    /// Streams (Scan, Tail, AppendStream) one principal may hold open on this
    /// node at once; one more is refused with RESOURCE_EXHAUSTED.
    pub principal_max_streams: usize,
    /// Reads and proofs one principal may have in progress on this node at
    /// once; one more is refused with RESOURCE_EXHAUSTED.
    pub principal_max_reads: usize,
    /// Longest TLS handshake before the connection is dropped.
    pub tls_handshake_timeout_ms: u64,
    /// Longest wait, after the handshake, for the client's HTTP/2 preface
    /// before the connection is dropped.
    pub preface_timeout_ms: u64,
    /// Longest time an admitted connection may have no call open before the
    /// node closes it (pings do not count; an open stream does).
    pub idle_timeout_ms: u64,
    /// After SIGTERM or SIGINT, how long open calls may take to finish once
    /// streams have been sent elsewhere; then the rest are closed. 0 closes
    /// them at once.
    pub shutdown_grace_ms: u64,
    /// How much less favoured by the scheduler the threads serving clients
    /// are than Raft's (a Unix nice increment, 0 to 19; `runtimes.rs`).
    pub client_thread_nice: u8,
    /// Threads that run client reads (tokio's blocking pool of the clients'
    /// runtime), at most; further reads wait for one.
    pub client_blocking_threads: usize,
}

/// The event limits this node accepts from clients (docs/FORMAT.md section 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub source_max_bytes: usize,
    pub event_id_max_bytes: usize,
    pub actor_max_bytes: usize,
    pub action_max_bytes: usize,
    pub resource_max_bytes: usize,
    pub outcome_max_bytes: usize,
    pub trace_id_max_bytes: usize,
    pub principal_max_bytes: usize,
    pub attributes_max_count: usize,
    pub attribute_key_max_bytes: usize,
    pub attribute_value_max_bytes: usize,
    pub payload_max_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7001)),
            advertise_addr: None,
            metrics_addr: None,
            data_dir: PathBuf::from("data/node1"),
            origin: "veritrail.local/audit".into(),
            log_format: LogFormat::Text,
            initial_members: Vec::new(),
            batch: BatchConfig::default(),
            raft: RaftConfig::default(),
            checkpoint: CheckpointConfig::default(),
            grpc: GrpcConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            disk: DiskConfig::default(),
            witnesses: Vec::new(),
            repair: RepairConfig::default(),
            tiles: TilesConfig::default(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            entry_max_events: 2048,
            entry_max_bytes: 2 << 20,
            linger_us: 0,
            inflight_max_entries: 4,
            queue_max_requests: 16_384,
            queue_max_events: 32_768,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_after_entries: 20_000,
            snapshot_after_events: 100_000,
            keep_after_snapshot_entries: 500,
            append_entries_max_entries: 64,
            append_entries_max_bytes: 1 << 20,
            append_entries_timeout_ms: 10_000,
            replication_stuck_after_ms: 30_000,
            snapshot_chunk_bytes: 1 << 20,
            install_snapshot_timeout_ms: 10_000,
            threads: 2,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval_ms: 1000,
            catch_up_timeout_ms: 2000,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            message_max_bytes: 16 << 20,
            request_timeout_ms: 10_000,
            request_max_events: 4096,
            stream_max_inflight: 1024,
            connection_max_streams: 256,
            principal_max_streams: 64,
            principal_max_reads: 64,
            tls_handshake_timeout_ms: 5_000,
            preface_timeout_ms: 5_000,
            idle_timeout_ms: 300_000,
            shutdown_grace_ms: 5_000,
            client_thread_nice: 5,
            client_blocking_threads: 64,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig::from(&Limits::default())
    }
}

impl From<&Limits> for LimitsConfig {
    fn from(l: &Limits) -> Self {
        LimitsConfig {
            source_max_bytes: l.source_max_bytes,
            event_id_max_bytes: l.event_id_max_bytes,
            actor_max_bytes: l.actor_max_bytes,
            action_max_bytes: l.action_max_bytes,
            resource_max_bytes: l.resource_max_bytes,
            outcome_max_bytes: l.outcome_max_bytes,
            trace_id_max_bytes: l.trace_id_max_bytes,
            principal_max_bytes: l.principal_max_bytes,
            attributes_max_count: l.attributes_max_count,
            attribute_key_max_bytes: l.attribute_key_max_bytes,
            attribute_value_max_bytes: l.attribute_value_max_bytes,
            payload_max_bytes: l.payload_max_bytes,
        }
    }
}

impl LimitsConfig {
    pub fn to_limits(&self) -> Limits {
        Limits {
            source_max_bytes: self.source_max_bytes,
            event_id_max_bytes: self.event_id_max_bytes,
            actor_max_bytes: self.actor_max_bytes,
            action_max_bytes: self.action_max_bytes,
            resource_max_bytes: self.resource_max_bytes,
            outcome_max_bytes: self.outcome_max_bytes,
            trace_id_max_bytes: self.trace_id_max_bytes,
            principal_max_bytes: self.principal_max_bytes,
            attributes_max_count: self.attributes_max_count,
            attribute_key_max_bytes: self.attribute_key_max_bytes,
            attribute_value_max_bytes: self.attribute_value_max_bytes,
            payload_max_bytes: self.payload_max_bytes,
        }
    }
}

/// A configuration that cannot be used, with the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: `{setting}` {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

/// The top-level settings, as environment variables may name them.
const SETTINGS: &[&str] = &[
    "node_id",
    "listen_addr",
    "advertise_addr",
    "metrics_addr",
    "data_dir",
    "origin",
    "log_format",
    "initial_members",
    "batch",
    "raft",
    "checkpoint",
    "grpc",
    "limits",
    "tls",
    "auth",
    "rate_limit",
    "disk",
    "repair",
    "tiles",
    "witness",
];

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// What the store is opened with.
    pub fn store_config(&self) -> veritrail_store::StoreConfig {
        let mut store = veritrail_store::StoreConfig::new(self.origin.clone());
        store.append_entries_max_bytes = self.raft.append_entries_max_bytes;
        store
    }

    /// Loads defaults, then `file` (if any), then `VERITRAIL_*` variables (nested
    /// keys with `__`, e.g. `VERITRAIL_BATCH__LINGER_US`), then `overrides`.
    ///
    /// The defaults come from `#[serde(default)]` on every section rather than
    /// from a provider: a setting's earlier name (a serde alias, kept when a
    /// limit was renamed to the `<what>_max_<unit>` order) would otherwise
    /// meet the default under its new name and be refused as a duplicate.
    pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("VERITRAIL_")
                    // Other tools share the prefix (VERITRAIL_LOG, VERITRAIL_ENDPOINTS):
                    // only variables naming a setting are configuration.
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        let top = key.split("__").next().unwrap_or_default();
                        SETTINGS.contains(&top)
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The address others reach this node at.
    pub fn advertise(&self) -> String {
        self.advertise_addr
            .clone()
            .unwrap_or_else(|| self.listen_addr.to_string())
    }

    /// Checks every setting; the first problem is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        veritrail_core::checkpoint::validate_origin(&self.origin)
            .map_err(|e| invalid("origin", e.to_string()))?;
        self.limits
            .to_limits()
            .validate()
            .map_err(|e| invalid("limits", e.to_string()))?;
        let b = &self.batch;
        if b.entry_max_events == 0
            || b.entry_max_bytes == 0
            || b.inflight_max_entries == 0
            || b.queue_max_requests == 0
        {
            return Err(invalid(
                "batch",
                "max_events, max_bytes, max_inflight and queue_max_requests must be at least 1",
            ));
        }
        if b.queue_max_events < self.grpc.request_max_events {
            return Err(invalid(
                "batch.queue_max_events",
                format!(
                    "must be at least grpc.request_max_events ({}), or the largest batch could never queue",
                    self.grpc.request_max_events
                ),
            ));
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                "must exceed raft.heartbeat_ms, which must be at least 1",
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                "must exceed raft.election_timeout_min_ms",
            ));
        }
        for (i, witness) in self.witnesses.iter().enumerate() {
            crate::witnesses::WitnessTarget::from_config(witness)
                .map_err(|e| invalid("witness", format!("[[witness]] number {}: {e}", i + 1)))?;
        }
        if r.threads == 0 {
            return Err(invalid("raft.threads", "must be at least 1"));
        }
        if self.grpc.client_thread_nice > 19 {
            return Err(invalid(
                "grpc.client_thread_nice",
                "is a nice increment: 0 (the node's own priority) to 19",
            ));
        }
        if self.grpc.client_blocking_threads == 0 {
            return Err(invalid(
                "grpc.client_blocking_threads",
                "must be at least 1",
            ));
        }
        if r.append_entries_max_entries == 0 || r.snapshot_chunk_bytes == 0 {
            return Err(invalid(
                "raft",
                "append_entries_max_entries and snapshot_chunk_bytes must be at least 1",
            ));
        }
        // One Raft entry (a batch) must fit a gRPC message; AppendEntries messages
        // holding several are split by the network layer to fit.
        if b.entry_max_bytes + 64 * 1024 > self.grpc.message_max_bytes {
            return Err(invalid(
                "batch.entry_max_bytes",
                "must be smaller than grpc.message_max_bytes minus 64 KiB",
            ));
        }
        if r.append_entries_max_bytes == 0
            || r.append_entries_max_bytes as usize + 64 * 1024 > self.grpc.message_max_bytes
        {
            return Err(invalid(
                "raft.append_entries_max_bytes",
                "must be at least 1 and smaller than grpc.message_max_bytes minus 64 KiB",
            ));
        }
        if r.append_entries_timeout_ms <= r.heartbeat_ms {
            return Err(invalid(
                "raft.append_entries_timeout_ms",
                "must exceed raft.heartbeat_ms",
            ));
        }
        if r.replication_stuck_after_ms == 0 {
            return Err(invalid(
                "raft.replication_stuck_after_ms",
                "must be at least 1",
            ));
        }
        if r.snapshot_chunk_bytes as usize + 64 * 1024 > self.grpc.message_max_bytes {
            return Err(invalid(
                "raft.snapshot_chunk_bytes",
                "must be smaller than grpc.message_max_bytes minus 64 KiB",
            ));
        }
        let entry_max = self.limits.to_limits().entry_max_bytes();
        if entry_max > b.entry_max_bytes {
            return Err(invalid(
                "batch.entry_max_bytes",
                format!("must hold at least one largest event ({entry_max} bytes)"),
            ));
        }
        if entry_max + 64 * 1024 > self.grpc.message_max_bytes {
            return Err(invalid(
                "grpc.message_max_bytes",
                format!("must hold at least one largest event ({entry_max} bytes)"),
            ));
        }
        if self.grpc.request_max_events == 0
            || self.grpc.stream_max_inflight == 0
            || self.grpc.request_timeout_ms == 0
        {
            return Err(invalid(
                "grpc",
                "request_max_events, stream_max_inflight and request_timeout_ms must be at least 1",
            ));
        }
        if self.grpc.connection_max_streams == 0
            || self.grpc.tls_handshake_timeout_ms == 0
            || self.grpc.preface_timeout_ms == 0
            || self.grpc.idle_timeout_ms == 0
            || self.grpc.principal_max_streams == 0
            || self.grpc.principal_max_reads == 0
        {
            return Err(invalid(
                "grpc",
                "connection_max_streams, tls_handshake_timeout_ms, preface_timeout_ms, idle_timeout_ms, \
                 principal_max_streams and principal_max_reads must be at least 1",
            ));
        }
        if self.tiles.max_connections == 0 {
            return Err(invalid("tiles", "max_connections must be at least 1"));
        }
        let rate = &self.rate_limit;
        if (rate.events_per_s > 0 && rate.events_burst < self.grpc.request_max_events as u32)
            || (rate.requests_per_s > 0 && rate.requests_burst == 0)
        {
            return Err(invalid(
                "rate_limit",
                format!(
                    "events_burst must be at least grpc.request_max_events ({}) and requests_burst at least 1 when their rate is set, or some requests could never pass",
                    self.grpc.request_max_events
                ),
            ));
        }
        self.validate_tls()?;
        if self.checkpoint.interval_ms == 0 {
            return Err(invalid("checkpoint.interval_ms", "must be at least 1"));
        }
        self.parse_initial_members()?;
        Ok(())
    }

    /// TLS is on, with all three files, or the node is a development node whose
    /// every address is on loopback.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        if t.insecure_dev {
            let mut addrs = vec![self.advertise()];
            addrs.extend(self.parse_initial_members()?.into_iter().map(|(_, a)| a));
            let remote: Vec<String> = std::iter::once(self.listen_addr)
                .chain(self.tiles.listen_addr)
                .filter(|a| !a.ip().is_loopback())
                .map(|a| a.to_string())
                .chain(addrs.into_iter().filter(|a| !is_loopback_addr(a)))
                .collect();
            if !remote.is_empty() {
                return Err(invalid(
                    "tls.insecure_dev",
                    format!(
                        "is for a development node on loopback only, and {} is not loopback: configure tls.ca_file, tls.cert_file and tls.key_file",
                        remote.join(", ")
                    ),
                ));
            }
            if t.ca_file.is_some()
                || t.cert_file.is_some()
                || t.key_file.is_some()
                || t.crl_file.is_some()
            {
                return Err(invalid(
                    "tls.insecure_dev",
                    "is set together with TLS files: choose one",
                ));
            }
            return Ok(());
        }
        if t.ca_file.is_none() || t.cert_file.is_none() || t.key_file.is_none() {
            return Err(invalid(
                "tls",
                "is required: set tls.ca_file, tls.cert_file and tls.key_file (`veritraild certs` makes development ones), or tls.insecure_dev = true on a loopback-only development node",
            ));
        }
        Ok(())
    }

    /// `initial_members` as `(id, addr)`.
    pub fn parse_initial_members(&self) -> Result<Vec<(u64, String)>, ConfigError> {
        let mut members = Vec::new();
        for item in &self.initial_members {
            let (id, addr) = item.split_once('=').ok_or_else(|| {
                invalid("initial_members", format!("{item:?} is not id=host:port"))
            })?;
            let id: u64 = id.trim().parse().map_err(|_| {
                invalid(
                    "initial_members",
                    format!("{item:?}: the id is not a number"),
                )
            })?;
            if id == 0 || addr.trim().is_empty() || members.iter().any(|(m, _)| *m == id) {
                return Err(invalid(
                    "initial_members",
                    format!("{item:?}: ids must be unique and at least 1, with an address"),
                ));
            }
            members.push((id, addr.trim().to_owned()));
        }
        if !members.is_empty() && !members.iter().any(|(id, _)| *id == self.node_id) {
            return Err(invalid(
                "initial_members",
                format!("does not list this node (node_id {})", self.node_id),
            ));
        }
        Ok(members)
    }
}

/// Reads the TOML file a setting names (the policy, the tokens), with errors
/// that name the setting and the file.
pub fn load_toml_file<T: serde::de::DeserializeOwned>(
    setting: &str,
    path: &Path,
) -> Result<T, String> {
    if !path.exists() {
        return Err(format!("{setting} {} does not exist", path.display()));
    }
    Figment::from(Toml::file(path))
        .extract()
        .map_err(|e| format!("{setting} {}: {e}", path.display()))
}

/// `host:port` whose host is a loopback IP or `localhost`, strictly: nothing
/// but a host and a numeric port (`127.0.0.1:1@example.com` is a URI whose host
/// is `example.com`).
fn is_loopback_addr(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().is_err() || host.contains(['@', '/', '?', '#', ' ']) {
        return false;
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct NoOverrides {}

    fn dev() -> Config {
        let mut c = Config::default();
        c.tls.insecure_dev = true;
        c
    }

    #[test]
    fn defaults_are_valid_once_tls_is_chosen() {
        let error = Config::default()
            .validate()
            .expect_err("no TLS")
            .to_string();
        assert!(error.contains("tls.ca_file"), "{error}");
        dev().validate().expect("a loopback development node");
        let mut c = Config::default();
        c.tls.ca_file = Some("ca.pem".into());
        c.tls.cert_file = Some("node.pem".into());
        c.tls.key_file = Some("node.key".into());
        c.validate().expect("TLS");
    }

    /// The systemd example's configuration is one a node reads: every key
    /// it names exists (unknown keys are errors).
    #[test]
    fn the_systemd_example_configuration_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/veritrail.toml");
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&path))
            .extract()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            config.tiles.listen_addr,
            Some("0.0.0.0:7080".parse().expect("addr"))
        );
    }

    /// Environment variables reach a section only when it is listed:
    /// `VERITRAIL_REPAIR__AUTO` was silently ignored while `repair` was not.
    #[test]
    fn every_section_can_be_set_from_the_environment() {
        use figment::Provider as _;
        let data = Figment::from(Serialized::defaults(Config::default()))
            .data()
            .expect("the defaults serialize");
        let fields: Vec<&String> = data.values().flat_map(|dict| dict.keys()).collect();
        for field in &fields {
            assert!(
                SETTINGS.contains(&field.as_str()),
                "{field} is not in SETTINGS"
            );
        }
        assert_eq!(
            fields.len(),
            SETTINGS.len(),
            "SETTINGS names a setting that is gone"
        );
    }

    #[test]
    fn insecure_only_on_loopback() {
        let mut c = dev();
        c.listen_addr = "0.0.0.0:7001".parse().expect("addr");
        let error = c.validate().expect_err("not loopback").to_string();
        assert!(error.contains("0.0.0.0:7001 is not loopback"), "{error}");
        let mut c = dev();
        c.initial_members = vec!["1=127.0.0.1:7001".into(), "2=10.0.0.2:7001".into()];
        assert!(c.validate().is_err());
        c.initial_members = vec!["1=localhost:7001".into(), "2=[::1]:7001".into()];
        c.validate().expect("loopback members");
        for sneaky in [
            "127.0.0.1:7001@db.example.com",
            "localhost:x@10.0.0.5",
            "127.0.0.1",
        ] {
            c.initial_members = vec![format!("1={sneaky}")];
            assert!(c.validate().is_err(), "{sneaky} passed for loopback");
        }
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node_id = 3\norigin = \"a.example/log\"\n[batch]\nlinger_us = 50\n[tls]\ninsecure_dev = true\n",
        )
        .expect("write");
        #[derive(Serialize)]
        struct Flags {
            node_id: u64,
        }
        let config = Config::load(Some(&path), &Flags { node_id: 4 }).expect("load");
        assert_eq!(
            (
                config.node_id,
                config.origin.as_str(),
                config.batch.linger_us
            ),
            (4, "a.example/log", 50)
        );
    }

    /// Limits renamed to the `<what>_max_<unit>` order (issue #16) still load
    /// under their earlier names, from a file and from the environment.
    #[test]
    fn earlier_names_of_renamed_limits_still_load() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[tls]\ninsecure_dev = true\n[batch]\nmax_events = 100\nmax_bytes = 1000000\n\
             max_inflight = 3\n[raft]\nmax_payload_entries = 7\n[grpc]\n\
             max_message_bytes = 8000000\nmax_batch_events = 50\nmax_concurrent_streams = 9\n",
        )
        .expect("write");
        let config = Config::load(Some(&path), &NoOverrides {}).expect("load");
        assert_eq!(config.batch.entry_max_events, 100);
        assert_eq!(config.batch.entry_max_bytes, 1_000_000);
        assert_eq!(config.batch.inflight_max_entries, 3);
        assert_eq!(config.raft.append_entries_max_entries, 7);
        assert_eq!(config.grpc.message_max_bytes, 8_000_000);
        assert_eq!(config.grpc.request_max_events, 50);
        assert_eq!(config.grpc.connection_max_streams, 9);
        // What a file does not name keeps its default.
        assert_eq!(config.batch.linger_us, BatchConfig::default().linger_us);
        assert_eq!(config.raft.heartbeat_ms, RaftConfig::default().heartbeat_ms);

        std::fs::write(&path, "[tls]\ninsecure_dev = true\n").expect("write");
        #[allow(
            clippy::result_large_err,
            reason = "figment's Jail takes a closure returning its own error type"
        )]
        figment::Jail::expect_with(|jail| {
            jail.set_env("VERITRAIL_BATCH__MAX_INFLIGHT", "5");
            let config = Config::load(Some(&path), &NoOverrides {}).expect("load");
            assert_eq!(config.batch.inflight_max_entries, 5);
            Ok(())
        });
    }

    #[test]
    fn names_the_bad_setting() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "[raft]\nheartbeat_ms = 900\n").expect("write");
        let error = Config::load(Some(&path), &NoOverrides {})
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("raft.election_timeout_min_ms"), "{error}");
        std::fs::write(&path, "unknown_key = 1\n").expect("write");
        let error = Config::load(Some(&path), &NoOverrides {})
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("unknown_key"), "{error}");
        let c = Config {
            initial_members: vec!["1=a:1".into(), "x=b:2".into()],
            ..dev()
        };
        assert!(c.validate().is_err());
    }
}

//! The server's metrics, exposed as Prometheus text on `metrics_addr`.
//! docs/OPERATIONS.md lists them with the alerts to set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::replication::MemberLag;

/// Every metric the server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub append_requests: Counter,
    pub append_events: Counter,
    pub append_rejected: Counter,
    pub append_errors: Counter,
    pub append_latency_seconds: Histogram,
    pub batch_events: Histogram,
    /// How long each synced write to the data directory took (its WAL fsync).
    pub store_sync_seconds: Histogram,
    pub raft_term: Gauge,
    pub raft_is_leader: Gauge,
    pub raft_last_log_index: Gauge,
    pub raft_applied_index: Gauge,
    pub raft_apply_lag: Gauge,
    pub raft_log_entries: Gauge,
    pub snapshot_tree_size: Gauge,
    pub tree_size: Gauge,
    pub checkpoint_size: Gauge,
    pub checkpoint_age_seconds: Gauge,
    pub checkpoint_signatures: Gauge,
    pub checkpoint_failures: Counter,
    pub unauthenticated: Counter,
    pub denied: Counter,
    pub rate_limited: Counter,
    /// New connections dropped before gRPC saw them, labelled `reason`
    /// (`listener.rs`).
    pub connections_dropped: Family<Vec<(String, String)>, Counter>,
    /// Requests to the tiles port, by HTTP status.
    pub tiles_requests: Family<Vec<(String, String)>, Counter>,
    /// Reloads of the TLS files, policy and tokens, labelled `outcome`
    /// (`ok`, `refused`).
    pub reloads: Family<Vec<(String, String)>, Counter>,
    /// Bytes under the data directory, and bytes free to this user on its file
    /// system (updated every [`crate::background::DISK_EVERY`]).
    pub data_dir_bytes: Gauge,
    pub data_dir_free_bytes: Gauge,
    /// 1 while the free space is below `disk.reserve_bytes` (`disk.rs`).
    pub disk_reserve_reached: Gauge,
    /// 1 while the node repairs its data and does not vote (`repair.rs`).
    pub repairing: Gauge,
    /// Per member, labelled `member`: the leader's view of its replication.
    pub replication_lag_entries: Family<Vec<(String, String)>, Gauge>,
    pub replication_lag_bytes: Family<Vec<(String, String)>, Gauge>,
    pub replication_lag_seconds: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    pub replication_stuck: Family<Vec<(String, String)>, Gauge>,
    /// Per witness, labelled `witness`: entries between the latest checkpoint
    /// and the latest this node holds its cosignature of (`witnesses.rs`).
    pub witness_lag_entries: Family<Vec<(String, String)>, Gauge>,
    /// Submissions to witnesses, labelled `witness` and `outcome`.
    pub witness_submissions: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("veritrail");
        let append_requests = Counter::default();
        let append_events = Counter::default();
        let append_rejected = Counter::default();
        let append_errors = Counter::default();
        let append_latency_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        // 50 us to about 1.6 s: a fast NVMe syncs in tens of microseconds, a
        // failing disk or a throttled cloud volume in hundreds of milliseconds.
        let store_sync_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        let m = Metrics {
            append_requests,
            append_events,
            append_rejected,
            append_errors,
            append_latency_seconds,
            batch_events,
            store_sync_seconds,
            raft_term: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_last_log_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_apply_lag: Gauge::default(),
            raft_log_entries: Gauge::default(),
            snapshot_tree_size: Gauge::default(),
            tree_size: Gauge::default(),
            checkpoint_size: Gauge::default(),
            checkpoint_age_seconds: Gauge::default(),
            checkpoint_signatures: Gauge::default(),
            checkpoint_failures: Counter::default(),
            unauthenticated: Counter::default(),
            denied: Counter::default(),
            rate_limited: Counter::default(),
            connections_dropped: Family::default(),
            tiles_requests: Family::default(),
            reloads: Family::default(),
            data_dir_bytes: Gauge::default(),
            data_dir_free_bytes: Gauge::default(),
            disk_reserve_reached: Gauge::default(),
            repairing: Gauge::default(),
            replication_lag_entries: Family::default(),
            replication_lag_bytes: Family::default(),
            replication_lag_seconds: Family::default(),
            replication_stuck: Family::default(),
            witness_lag_entries: Family::default(),
            witness_submissions: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "unauthenticated",
            "Calls refused for want of a valid certificate or token (UNAUTHENTICATED)",
            m.unauthenticated.clone(),
        );
        registry.register(
            "denied",
            "Calls the policy denied, peer calls without a node certificate, Raft messages in another node's name or from outside the membership, and declined vote requests from outside it (PERMISSION_DENIED)",
            m.denied.clone(),
        );
        registry.register(
            "rate_limited",
            "Calls refused by a per-principal rate limit (RESOURCE_EXHAUSTED)",
            m.rate_limited.clone(),
        );
        registry.register(
            "connections_dropped",
            "New connections dropped before gRPC saw them, by reason: tls_handshake_failed, tls_handshake_timeout, preface_timeout, not_http2, closed",
            m.connections_dropped.clone(),
        );
        registry.register(
            "tiles_requests",
            "Requests to the tlog-tiles port (tiles.listen_addr), by HTTP status: 200, 400, 401, 403, 404, ...; \
             connection_refused: connections closed because tiles.max_connections were open",
            m.tiles_requests.clone(),
        );
        registry.register(
            "reloads",
            "Reloads of the TLS files, policy and tokens (SIGHUP or a changed file), by outcome: ok, or refused (the files before stay in force)",
            m.reloads.clone(),
        );
        registry.register(
            "data_dir_bytes",
            "Bytes of the files under the data directory",
            m.data_dir_bytes.clone(),
        );
        registry.register(
            "disk_reserve_reached",
            "1 while the data directory's free space is below disk.reserve_bytes: the node takes no new entries (appends, and entries from the leader)",
            m.disk_reserve_reached.clone(),
        );
        registry.register(
            "repairing",
            "1 while the node repairs data that failed its checks on open: it receives the log again and does not vote until it holds its leader's",
            m.repairing.clone(),
        );
        registry.register(
            "storage_errors",
            "Storage failures answered to a caller as INTERNAL (a read the disk failed, a damaged record): the node answers the error, never a guess",
            crate::error::STORAGE_ERRORS.clone(),
        );
        registry.register(
            "data_dir_free_bytes",
            "Bytes this node may still write on the data directory's file system",
            m.data_dir_free_bytes.clone(),
        );
        let build_info: Family<Vec<(String, String)>, Gauge> = Family::default();
        build_info
            .get_or_create(&vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the label says which release this node runs",
            build_info,
        );
        registry.register_collector(Box::new(ProcessCollector));
        registry.register(
            "append_requests",
            "Append requests answered (unary, batch and stream)",
            m.append_requests.clone(),
        );
        registry.register(
            "append_events",
            "Events acknowledged, duplicates included",
            m.append_events.clone(),
        );
        registry.register(
            "append_rejected",
            "Append requests refused for invalid input or a conflicting event id",
            m.append_rejected.clone(),
        );
        registry.register(
            "append_errors",
            "Append requests that failed for another reason (leader change, timeout, storage)",
            m.append_errors.clone(),
        );
        registry.register(
            "append_latency_seconds",
            "Time from receiving an append to answering it",
            m.append_latency_seconds.clone(),
        );
        registry.register(
            "store_sync_seconds",
            "How long each synced write to the data directory took (RocksDB WAL fsync): \
             Raft log appends, votes and applied batches, each of which a commit waits for",
            m.store_sync_seconds.clone(),
        );
        registry.register(
            "batch_events",
            "Events per Raft entry proposed by this node as leader",
            m.batch_events.clone(),
        );
        registry.register("raft_term", "Current Raft term", m.raft_term.clone());
        registry.register(
            "raft_is_leader",
            "1 when this node leads",
            m.raft_is_leader.clone(),
        );
        registry.register(
            "raft_last_log_index",
            "Last Raft log index on this node",
            m.raft_last_log_index.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Last Raft log index applied to the state machine",
            m.raft_applied_index.clone(),
        );
        registry.register(
            "raft_apply_lag",
            "Log entries written but not yet applied",
            m.raft_apply_lag.clone(),
        );
        registry.register(
            "raft_log_entries",
            "Entries held in the Raft log: those after the last purge (the audit log keeps every event)",
            m.raft_log_entries.clone(),
        );
        registry.register(
            "snapshot_tree_size",
            "Audit log entries covered by the current snapshot; the Raft log is purged behind it",
            m.snapshot_tree_size.clone(),
        );
        registry.register(
            "tree_size",
            "Entries in the audit log on this node",
            m.tree_size.clone(),
        );
        registry.register(
            "checkpoint_size",
            "Tree size of the latest co-signed checkpoint this node holds",
            m.checkpoint_size.clone(),
        );
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the latest co-signed checkpoint was recorded here",
            m.checkpoint_age_seconds.clone(),
        );
        registry.register(
            "checkpoint_signatures",
            "Signatures on the latest co-signed checkpoint",
            m.checkpoint_signatures.clone(),
        );
        registry.register(
            "checkpoint_failures",
            "Checkpoint rounds (as leader) that did not gather a quorum",
            m.checkpoint_failures.clone(),
        );
        registry.register(
            "replication_lag_entries",
            "Raft entries a member lacks behind the leader's log (leader only)",
            m.replication_lag_entries.clone(),
        );
        registry.register(
            "replication_lag_bytes",
            "Stored bytes of the Raft entries a member lacks (leader only)",
            m.replication_lag_bytes.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Age of the oldest Raft entry a member lacks (leader only; 0 when caught up)",
            m.replication_lag_seconds.clone(),
        );
        registry.register(
            "witness_lag_entries",
            "Entries between the latest checkpoint and the latest one a witness cosigned for this node",
            m.witness_lag_entries.clone(),
        );
        registry.register(
            "witness_submissions",
            "Checkpoint submissions to a witness, by outcome (cosigned, unreachable, refused, conflict, error)",
            m.witness_submissions.clone(),
        );
        registry.register(
            "replication_stuck",
            "1 when a member has been behind without advancing for raft.replication_stuck_after_ms (leader only)",
            m.replication_stuck.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Sets the per-member replication gauges to `lags`, dropping members no
    /// longer replicated to (or all of them, when this node stopped leading).
    pub fn set_replication(&self, lags: &BTreeMap<u64, MemberLag>) {
        self.replication_lag_entries.clear();
        self.replication_lag_bytes.clear();
        self.replication_lag_seconds.clear();
        self.replication_stuck.clear();
        for (id, lag) in lags {
            let label = vec![("member".to_owned(), id.to_string())];
            self.replication_lag_entries
                .get_or_create(&label)
                .set(lag.entries as i64);
            self.replication_lag_bytes
                .get_or_create(&label)
                .set(lag.bytes as i64);
            self.replication_lag_seconds
                .get_or_create(&label)
                .set(lag.age.as_secs_f64());
            self.replication_stuck
                .get_or_create(&label)
                .set(i64::from(lag.stuck));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The process's own figures, read from `/proc` at each scrape:
/// `veritrail_process_cpu_seconds_total`, `_resident_memory_bytes`,
/// `_open_fds`, `_max_fds`, `_threads`, `_start_time_seconds`. Missing ones
/// (no `/proc`) are left out.
#[derive(Debug)]
struct ProcessCollector;

fn const_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use procfs::WithCurrentSystemInfo as _;
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second().max(1) as f64;
            let rss = stat.rss_bytes().get() as f64;
            const_gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            )?;
            const_gauge(
                &mut encoder,
                "process_threads",
                "OS threads in the process",
                stat.num_threads as f64,
            )?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / ticks;
                const_gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since the Unix epoch, in seconds",
                    start,
                )?;
            }
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                cpu.metric_type(),
            )?)?;
        }
        if let Ok(fds) = me.fd_count() {
            const_gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds as f64,
            )?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit
        {
            const_gauge(
                &mut encoder,
                "process_max_fds",
                "The most file descriptors the process may open",
                max as f64,
            )?;
        }
        Ok(())
    }
}

/// Serves `GET /metrics` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::Router;
    use axum::routing::get;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics");
    axum::serve(listener, app).await
}

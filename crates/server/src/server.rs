//! Starting a node: open the store, start Raft and the background tasks, serve
//! gRPC until SIGINT or SIGTERM, then shut Raft down cleanly.

use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use veritrail_proto::raft::raft_peer_server::RaftPeerServer;
use veritrail_proto::v1::admin_server::AdminServer;
use veritrail_proto::v1::audit_log_server::AuditLogServer;
use veritrail_store::{AsyncReader, Store};

use crate::admin_service::AdminService;
use crate::audit_service::AuditService;
use crate::background::{run_gauges, run_readiness, run_snapshot_trigger};
use crate::batcher::Batcher;
use crate::config::Config;
use crate::cosign::run_checkpoints;
use crate::drain::Drain;
use crate::gate::Gate;
use crate::membership::run_bootstrap;
use crate::metrics::Metrics;
use crate::network::{Network, ReplicationHealth};
use crate::node::Node;
use crate::peer_service::PeerService;
use crate::peers::Peers;
use crate::replication::Replication;

/// openraft's configuration from ours.
fn raft_config(config: &Config) -> Result<openraft::Config, String> {
    let r = &config.raft;
    openraft::Config {
        cluster_name: config.origin.clone(),
        heartbeat_interval: r.heartbeat_ms,
        election_timeout_min: r.election_timeout_min_ms,
        election_timeout_max: r.election_timeout_max_ms,
        install_snapshot_timeout: r.install_snapshot_timeout_ms,
        max_payload_entries: r.append_entries_max_entries,
        // Snapshots are taken by `background::run_snapshot_trigger`, which
        // counts events too and waits for members being caught up.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: r.keep_after_snapshot_entries,
        snapshot_max_chunk_size: r.snapshot_chunk_bytes,
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("raft configuration: {e}"))
}

/// Creates the data directory readable by this user only (0700), or makes an
/// existing one so: it holds every entry (the WAL, whose files RocksDB
/// creates under the process umask) and the node's signing key. systemd's
/// `StateDirectoryMode` does the same; this covers every other way to start.
fn private_data_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let shown = dir.display();
    let new = !dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating the data directory {shown}: {e}"))?;
    // A new directory's name lasts a power cut only once its parent is synced.
    if new && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::keys::sync_dir(parent)?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("the data directory {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("making the data directory {shown} private (0700): {e}"))?;
        tracing::warn!(
            dir = %shown,
            was = format!("{:o}", mode & 0o777),
            "the data directory was readable by others; it is now 0700"
        );
    }
    Ok(())
}

/// Opens the node's store. Data that fails its checks is refused, or with
/// `repair.auto` moved aside for a repair (repair.rs), and the store opened
/// empty.
fn open_store(config: &Config) -> Result<Store, String> {
    let dir = &config.data_dir;
    let failed = match Store::open(dir, &config.store_config()) {
        Ok(store) => return Ok(store),
        Err(e) if config.repair.auto && e.is_damage() => e,
        Err(e) => {
            let hint = if e.is_damage() {
                " (with repair.auto, or `veritraild repair`, the node moves it aside and \
                 receives the log again from the others: docs/OPERATIONS.md section 8)"
            } else {
                ""
            };
            return Err(format!("opening {}: {e}{hint}", dir.display()));
        }
    };
    tracing::error!(
        error = %failed,
        "the data directory failed its checks on open; repairing (repair.auto)"
    );
    let aside = crate::repair::begin(dir, &failed.to_string())?;
    tracing::warn!(
        moved_to = %aside.display(),
        "repair: the damaged data was moved aside (nothing was deleted); starting empty"
    );
    Store::open(dir, &config.store_config())
        .map_err(|e| format!("opening {} after moving its data aside: {e}", dir.display()))
}

/// Runs a node until it is asked to stop, on the clients' runtime; Raft's
/// work goes to `raft_runtime` (`runtimes.rs`).
pub async fn run(config: Config, raft_runtime: tokio::runtime::Handle) -> Result<(), String> {
    // TLS, the policy and the tokens first: a node refused for them leaves
    // nothing behind (no key, no database).
    let tls = crate::tls::TlsMaterial::load(&config.tls, config.node_id, &config.origin)?;
    let auth = crate::auth::Auth::new(&config, tls.as_ref().map(|t| t.cluster.clone()))?;
    private_data_dir(&config.data_dir)?;
    let signer = crate::keys::load_or_create(&config.data_dir, &config.origin, config.node_id)?;
    let store = open_store(&config)?;
    let repair = crate::repair::Repair::load(&config.data_dir)?;
    if repair.active() {
        tracing::warn!(
            "repairing: this node's data was moved aside; it receives the log again from the \
             others and does not vote until it holds its leader's log"
        );
    }
    let metrics = Metrics::new();
    let synced = metrics.store_sync_seconds.clone();
    store.observe_synced_writes(Box::new(move |took| synced.observe(took.as_secs_f64())));
    let principal = match &tls {
        Some(t) => t.spiffe_id.clone(),
        None => format!("veritrail/node/{}", config.node_id),
    };
    // The node's own records (denied appends) are admitted without checking
    // their principal again: it is checked once, here.
    veritrail_core::validate_principal(&principal, &config.limits.to_limits())
        .map_err(|e| format!("this node's identity {principal:?} cannot be a principal: {e}"))?;
    let connector = tls
        .as_ref()
        .map(crate::tls::TlsMaterial::peer_connector)
        .transpose()?;
    // Raft's calls to its peers have connections of their own, made on
    // Raft's runtime; forwarding and co-signing use the others.
    let peers = Peers::new(config.grpc.message_max_bytes, connector.clone());
    let raft_peers = Peers::new(config.grpc.message_max_bytes, connector);
    let replication_health = ReplicationHealth::default();
    let mut raft_settings = raft_config(&config)?;
    // No election before `Node::refresh_elections` has looked at this
    // node: it may repair (repair.rs), or have just started with a leader
    // about to reach it (`Node::start_quiet`).
    raft_settings.enable_elect = false;
    // openraft spawns its core and replication tasks where it starts.
    let network = Network {
        peers: raft_peers.clone(),
        message_max_bytes: config.grpc.message_max_bytes,
        append_entries_max_bytes: config.raft.append_entries_max_bytes as usize,
        append_entries_timeout: Duration::from_millis(config.raft.append_entries_timeout_ms),
        health: replication_health.clone(),
    };
    let (node_id, log, state_machine) = (
        config.node_id,
        store.log.clone(),
        store.state_machine.clone(),
    );
    let raft = raft_runtime
        .spawn(async move {
            openraft::Raft::new(
                node_id,
                Arc::new(raft_settings),
                network,
                log,
                state_machine,
            )
            .await
        })
        .await
        .map_err(|e| format!("starting raft: {e}"))?
        .map_err(|e| format!("starting raft: {e}"))?;
    let batcher = {
        let _raft_runtime = raft_runtime.enter();
        Batcher::start(raft.clone(), config.batch.clone(), Arc::clone(&metrics))
    };
    let node = Arc::new(Node {
        id: config.node_id,
        limits: config.limits.to_limits(),
        config: config.clone(),
        raft: raft.clone(),
        reader: AsyncReader::new(store.reader.clone()),
        signer,
        peers,
        raft_peers,
        batcher,
        metrics: Arc::clone(&metrics),
        auth,
        principal,
        replication: Arc::new(Replication::new(
            store.log.ledger(),
            replication_health,
            Duration::from_millis(config.raft.replication_stuck_after_ms),
        )),
        drain: Drain::default(),
        senders: Default::default(),
        disk: crate::disk::DiskRoom::new(config.disk.reserve_bytes),
        repair,
        cosignatures: Default::default(),
        quotas: crate::quota::Quotas::new(
            config.grpc.principal_max_streams,
            config.grpc.principal_max_reads,
        ),
    });
    tracing::info!(
        node_id = node.id,
        listen = %config.listen_addr,
        advertise = %config.advertise(),
        origin = %config.origin,
        key = %node.signer.public(),
        entries = node.reader.tail().size,
        tls = tls.is_some(),
        principal = %node.principal,
        "veritraild starting"
    );
    if tls.is_none() {
        tokio::spawn(warn_insecure());
    }

    node.refresh_elections();
    let quiet = Arc::clone(&node);
    raft_runtime.spawn(async move {
        tokio::time::sleep(quiet.start_quiet()).await;
        quiet.refresh_elections();
    });
    raft_runtime.spawn(run_checkpoints(Arc::clone(&node)));
    tokio::spawn(run_gauges(Arc::clone(&node)));
    tokio::spawn(crate::background::run_disk_gauges(Arc::clone(&node)));
    tokio::spawn(crate::disk::run_disk_watch(Arc::clone(&node)));
    raft_runtime.spawn(crate::background::run_fatal_watch(Arc::clone(&node)));
    tokio::spawn(run_snapshot_trigger(Arc::clone(&node)));
    let witnesses = config
        .witnesses
        .iter()
        .map(crate::witnesses::WitnessTarget::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    tokio::spawn(crate::witnesses::run_witnesses(
        Arc::clone(&node),
        witnesses,
    ));
    tokio::spawn(crate::repair::run_repair_watch(Arc::clone(&node)));
    let members = config.parse_initial_members().map_err(|e| e.to_string())?;
    // A node that repairs belongs to a cluster already: it never starts one.
    if !members.is_empty() && !node.repair.active() {
        tokio::spawn(run_bootstrap(Arc::clone(&node), members));
    }
    if let Some(addr) = config.metrics_addr {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, metrics).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AuditLogServer<AuditService>>().await;
    tokio::spawn(run_readiness(Arc::clone(&node), health.clone()));
    tokio::spawn(crate::membership::run_removal_watch(Arc::clone(&node)));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(veritrail_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let max = config.grpc.message_max_bytes;
    // Every service but health and reflection sits behind a Gate, which
    // authenticates each call before its body is read.
    let audit = InterceptedService::new(
        AuditLogServer::new(AuditService {
            node: Arc::clone(&node),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max),
        Gate::clients(Arc::clone(&node)),
    );
    let admin = InterceptedService::new(
        AdminServer::new(AdminService {
            node: Arc::clone(&node),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max),
        Gate::clients(Arc::clone(&node)),
    );
    let peer = InterceptedService::new(
        RaftPeerServer::new(PeerService {
            node: Arc::clone(&node),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max),
        Gate::peers(Arc::clone(&node)),
    );
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| format!("listening on {}: {e}", config.listen_addr))?;
    // The listener does TLS itself, so that a connection reaches gRPC only
    // once it has sent the HTTP/2 preface in time (listener.rs).
    let current_tls = tls
        .as_ref()
        .map(crate::tls::TlsMaterial::acceptor)
        .transpose()?
        .map(crate::listener::CurrentTls::new);
    tokio::spawn(crate::reload::run_reload(
        Arc::clone(&node),
        current_tls.clone(),
    ));
    if let Some(addr) = config.tiles.listen_addr {
        crate::tiles::spawn(Arc::clone(&node), addr, current_tls.clone()).await?;
    }
    // Nodes' connections are served on Raft's runtime (`runtimes.rs`).
    let (peer_lane, peer_incoming) = match &tls {
        Some(t) => {
            let (lane, incoming) = crate::listener::PeerLane::new(t.cluster.clone());
            (Some(lane), Some(incoming))
        }
        None => (None, None),
    };
    let incoming = crate::listener::incoming(
        listener,
        current_tls,
        crate::listener::Deadlines {
            handshake: Duration::from_millis(config.grpc.tls_handshake_timeout_ms),
            preface: Duration::from_millis(config.grpc.preface_timeout_ms),
            idle: Duration::from_millis(config.grpc.idle_timeout_ms),
        },
        Arc::clone(&metrics),
        peer_lane,
    );
    // Both servers carry every service: the lane decides where a
    // connection's calls run, the gates what they may do.
    let router = || {
        Server::builder()
            .layer(crate::idle::ActivityLayer)
            .max_concurrent_streams(Some(config.grpc.connection_max_streams))
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(audit.clone())
            .add_service(admin.clone())
            .add_service(peer.clone())
    };
    if let Some(peer_incoming) = peer_incoming {
        let peers_router = router();
        // It stops with Raft's runtime, after Raft has shut down (`main`).
        raft_runtime.spawn(async move {
            if let Err(e) = peers_router.serve_with_incoming(peer_incoming).await {
                tracing::error!(error = %e, "the peers' gRPC server failed");
            }
        });
    }
    // The first signal starts the drain (crate::drain): streams send their
    // clients elsewhere, readiness goes down, tonic stops accepting and waits
    // for open calls; a second signal stops at once.
    let drain = node.drain.clone();
    let grace_ms = config.grpc.shutdown_grace_ms;
    let draining = {
        let (drain, health) = (drain.clone(), health.clone());
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = drain.stop_requested() => {}
            }
            tracing::info!(grace_ms, "stopping: open streams are sent to other nodes");
            drain.start();
            health
                .set_not_serving::<AuditLogServer<AuditService>>()
                .await;
            tokio::spawn(async {
                shutdown_signal().await;
                tracing::warn!("second signal: stopping at once");
                std::process::exit(130);
            });
        }
    };
    let serve = router().serve_with_incoming_shutdown(incoming, draining);
    let served = tokio::select! {
        served = serve => served,
        () = async {
            drain.started().await;
            tokio::time::sleep(Duration::from_millis(grace_ms)).await;
        } => {
            tracing::warn!(grace_ms, "calls still open after the shutdown grace period: closing them");
            Ok(())
        }
    };
    tracing::info!("gRPC server stopped; shutting raft down");
    health
        .set_not_serving::<AuditLogServer<AuditService>>()
        .await;
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    served.map_err(|e| format!("gRPC server: {e}"))
}

/// A development node says what it is at start and every minute after, so
/// nobody mistakes it for a secured one.
async fn warn_insecure() {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        tracing::warn!(
            "INSECURE DEVELOPMENT NODE (tls.insecure_dev): no TLS, no authentication; every \
             caller is `anonymous` and any local process can speak Raft to this node"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::private_data_dir;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn the_data_directory_is_private_whether_new_or_found_open() {
        let parent = tempfile::TempDir::new().expect("temp dir");
        let new = parent.path().join("a/b/data");
        private_data_dir(&new).expect("created");
        assert_eq!(mode(&new), 0o700);

        let open = parent.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_data_dir(&open).expect("tightened");
        assert_eq!(mode(&open), 0o700);
    }
}

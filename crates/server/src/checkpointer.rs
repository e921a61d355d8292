//! Background tasks: the leader's checkpoint rounds, the bootstrap of a new
//! cluster, the readiness health status, and keeping the metrics gauges
//! current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::node::{Node, blocking};

/// On the leader, cut and co-sign a checkpoint every `checkpoint.interval_ms`
/// when the log has grown.
pub async fn run_checkpoints(node: Arc<Node>) {
    let mut ticker =
        tokio::time::interval(Duration::from_millis(node.config.checkpoint.interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !node.is_leader() {
            continue;
        }
        match node.checkpoint_round().await {
            Ok(Some(size)) => tracing::debug!(size, "checkpoint co-signed and recorded"),
            Ok(None) => {}
            Err(e) => {
                node.metrics.checkpoint_failures.inc();
                tracing::warn!(error = %e, "checkpoint round failed");
            }
        }
    }
}

/// With `initial_members` set, the member with the smallest id initializes the
/// cluster once every member answers, unless one of them already belongs to a
/// cluster. Idempotent: an initialized node does nothing, so restarts and
/// re-runs are safe, and a first member that lost its data does not start a
/// second history.
pub async fn run_bootstrap(node: Arc<Node>, members: Vec<(u64, String)>) {
    let Some(first) = members.iter().map(|(id, _)| *id).min() else {
        return;
    };
    if first != node.id {
        return;
    }
    let mut logged = Instant::now() - Duration::from_secs(60);
    loop {
        match node.raft.is_initialized().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "bootstrap: raft stopped");
                return;
            }
        }
        match node.initialize(&members).await {
            Ok(()) => {
                tracing::info!(members = ?members, "bootstrap: cluster initialized");
                return;
            }
            Err(crate::error::NodeError::FailedPrecondition(reason)) => {
                // Either another start won the race (nothing to say), or the
                // members disagree about who they are: that needs an operator.
                if !matches!(node.raft.is_initialized().await, Ok(true)) {
                    tracing::error!(%reason, "bootstrap: not initializing the cluster");
                }
                return;
            }
            Err(e) => {
                if logged.elapsed() > Duration::from_secs(5) {
                    tracing::info!(error = %e, "bootstrap: waiting for every initial member to answer");
                    logged = Instant::now();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The gRPC health service name that reports readiness: `SERVING` while this
/// node is a member of a cluster that has a leader it knows, so that it can
/// answer appends (directly or by forwarding) and linearizable reads.
/// Liveness is the `veritrail.v1.AuditLog` name, which serves as long as the
/// process does.
pub const READY_SERVICE: &str = "veritrail.ready";

/// Keeps [`READY_SERVICE`]'s status current, every 500 ms.
pub async fn run_readiness(node: Arc<Node>, health: tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut ready = None;
    loop {
        ticker.tick().await;
        let m = node.raft_metrics();
        let member = m
            .membership_config
            .membership()
            .get_node(&node.id)
            .is_some();
        let now = member && m.current_leader.is_some();
        if ready != Some(now) {
            tracing::info!(ready = now, leader = ?m.current_leader, "readiness changed");
            let status = if now {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(READY_SERVICE, status).await;
            ready = Some(now);
        }
    }
}

/// Asks Raft for a snapshot once `raft.snapshot_after_events` events were
/// applied since the last one. openraft's own policy counts Raft entries, and
/// under load one entry carries a whole batch of events.
pub async fn run_snapshot_trigger(node: Arc<Node>) {
    let every = node.config.raft.snapshot_after_events;
    if every == 0 {
        return;
    }
    let mut sizes = node.reader.watch_size();
    // The tree size when this task last asked: asked once, Raft builds it (in
    // a few milliseconds), so ask again only if it has not after as many events.
    let mut asked_at: Option<u64> = None;
    while sizes.changed().await.is_ok() {
        let size = *sizes.borrow_and_update();
        let snapshot = node.reader.snapshot_size().unwrap_or(0);
        if size.saturating_sub(snapshot) < every
            || asked_at.is_some_and(|at| at > snapshot && size.saturating_sub(at) < every)
        {
            continue;
        }
        asked_at = Some(size);
        tracing::debug!(
            size,
            snapshot,
            "events since the last snapshot: asking for one"
        );
        if let Err(e) = node.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "could not ask Raft for a snapshot");
        }
    }
}

/// Refreshes the gauges every second.
pub async fn run_gauges(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last_checkpoint: Option<(u64, Instant)> = None;
    let mut ticks: u64 = 0;
    loop {
        ticker.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(60) {
            node.auth.housekeeping();
        }
        let m = node.raft_metrics();
        let metrics = &node.metrics;
        metrics.raft_term.set(m.current_term as i64);
        metrics
            .raft_is_leader
            .set(i64::from(m.state == ServerState::Leader));
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        metrics.raft_last_log_index.set(last_log as i64);
        metrics.raft_applied_index.set(applied as i64);
        metrics
            .raft_apply_lag
            .set(last_log.saturating_sub(applied) as i64);
        let purged = m.purged.map_or(0, |l| l.index + 1);
        metrics.raft_log_entries.set(
            m.last_log_index
                .map_or(0, |last| last + 1)
                .saturating_sub(purged) as i64,
        );
        metrics
            .snapshot_tree_size
            .set(node.reader.snapshot_size().unwrap_or(0) as i64);
        let reader = node.reader.clone();
        let Ok((size, checkpoint)) =
            blocking(move || Ok((reader.tail().size, reader.latest_signed_checkpoint()?))).await
        else {
            continue;
        };
        metrics.tree_size.set(size as i64);
        if let Some((checkpoint_size, note)) = checkpoint {
            if last_checkpoint.is_none_or(|(s, _)| s != checkpoint_size) {
                last_checkpoint = Some((checkpoint_size, Instant::now()));
            }
            metrics.checkpoint_size.set(checkpoint_size as i64);
            let signatures =
                veritrail_core::note::SignedNote::parse(&note).map_or(0, |n| n.signatures().len());
            metrics.checkpoint_signatures.set(signatures as i64);
        }
        if let Some((_, at)) = last_checkpoint {
            metrics
                .checkpoint_age_seconds
                .set(at.elapsed().as_secs() as i64);
        }
    }
}

//! The loops that keep a node's outward state current: its readiness, when it
//! takes a snapshot, and the metrics gauges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::node::Node;

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

/// How many times its thresholds a snapshot may be put off while a member
/// catches up.
const SNAPSHOT_DEFERRAL_MAX: u64 = 10;

/// Takes snapshots: asks Raft for one once `raft.snapshot_after_events` events
/// or `raft.snapshot_after_entries` Raft entries were applied since the last
/// (openraft's own policy is off: it counts entries only, and under load one
/// entry carries a whole batch of events).
///
/// Each snapshot lets Raft purge its log up to `keep_after_snapshot_entries`
/// behind it, and openraft 0.9 purges even while a snapshot is being sent
/// (#1706). A member being caught up by snapshot would then find the entries
/// after that snapshot gone, and need another one, for ever under steady load.
/// So while this node leads and a member's replication stands behind the last
/// snapshot, it waits, up to [`SNAPSHOT_DEFERRAL_MAX`] times the thresholds:
/// a member that is down must not hold the log for ever.
pub async fn run_snapshot_trigger(node: Arc<Node>) {
    let raft = &node.config.raft;
    let (every_events, every_entries) = (raft.snapshot_after_events, raft.snapshot_after_entries);
    if every_events == 0 && every_entries == 0 {
        return;
    }
    let mut sizes = node.reader.watch_size();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The Raft index applied when this task last asked: Raft builds one in
    // milliseconds, so ask again only once the snapshot moved or much later.
    let mut asked_at: Option<u64> = None;
    loop {
        tokio::select! {
            changed = sizes.changed() => if changed.is_err() { return },
            _ = ticker.tick() => {}
        }
        let m = node.raft_metrics();
        let snapshot_index = m.snapshot.map_or(0, |l| l.index);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let entries = applied.saturating_sub(snapshot_index);
        let events = node
            .reader
            .tail()
            .size
            .saturating_sub(node.reader.snapshot_size().unwrap_or(0));
        // How far past its thresholds the log is: 1 means due.
        let due = |count: u64, every: u64| count.checked_div(every).unwrap_or(0);
        let overdue = due(events, every_events).max(due(entries, every_entries));
        if overdue == 0 || asked_at.is_some_and(|at| at > snapshot_index && applied < at + 1000) {
            continue;
        }
        let catching_up = m.replication.as_ref().and_then(|replication| {
            replication
                .iter()
                .find(|(_, matched)| matched.is_none_or(|l| l.index < snapshot_index))
                .map(|(id, _)| *id)
        });
        if let Some(member) = catching_up
            && overdue < SNAPSHOT_DEFERRAL_MAX
        {
            tracing::debug!(
                member,
                snapshot_index,
                "a member is catching up: snapshot put off"
            );
            continue;
        }
        asked_at = Some(applied);
        tracing::debug!(entries, events, "asking for a snapshot");
        if let Err(e) = node.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "could not ask Raft for a snapshot");
        }
    }
}

/// Refreshes the gauges every second.
/// How often the data directory's size and free space are measured.
pub const DISK_EVERY: Duration = Duration::from_secs(15);

/// Bytes of the files under `dir`, and bytes free to this user on its file
/// system. A file that vanishes while it is counted (RocksDB compacts) is
/// skipped.
fn disk_usage(dir: &std::path::Path) -> std::io::Result<(u64, u64)> {
    fn size(dir: &std::path::Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|entry| match entry.file_type() {
                Ok(t) if t.is_dir() => size(&entry.path()),
                Ok(_) => entry.metadata().map_or(0, |m| m.len()),
                Err(_) => 0,
            })
            .sum()
    }
    let fs = rustix::fs::statvfs(dir)?;
    Ok((size(dir), fs.f_bavail.saturating_mul(fs.f_frsize)))
}

/// Keeps the data directory's gauges current, every [`DISK_EVERY`].
pub async fn run_disk_gauges(node: Arc<Node>) {
    let mut ticker = tokio::time::interval(DISK_EVERY);
    loop {
        ticker.tick().await;
        let dir = node.config.data_dir.clone();
        match tokio::task::spawn_blocking(move || disk_usage(&dir)).await {
            Ok(Ok((used, free))) => {
                node.metrics.data_dir_bytes.set(used as i64);
                node.metrics.data_dir_free_bytes.set(free as i64);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "measuring the data directory"),
            Err(e) => tracing::warn!(error = %e, "measuring the data directory"),
        }
    }
}

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
        metrics.set_replication(&node.replication.tick(&m));
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
        let Ok((size, checkpoint)) = node
            .reader
            .read(|reader| Ok((reader.tail().size, reader.latest_signed_checkpoint()?)))
            .await
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

/// Exit status of a node whose Raft stopped on a storage error (EX_IOERR).
pub const EXIT_STORAGE_FAILED: i32 = 74;
/// Exit status of a node whose Raft stopped on a panic (EX_SOFTWARE).
pub const EXIT_RAFT_PANICKED: i32 = 70;

/// Stops the process once Raft has stopped on a fatal error.
///
/// openraft stops its core on a failed storage write (a failed fsync among
/// them) and never retries it; a process that went on running would answer
/// reads from a state machine that may hold more than the disk does, and
/// stand as a member that can no longer vote or take entries. So the node
/// stops, with a status that tells a supervisor it failed: on restart it
/// recovers from what the disk holds, which is at least every write it
/// acknowledged. A disk that still fails stops it again at start. An
/// orderly shutdown (`Fatal::Stopped`) is not a failure and is left to the
/// caller.
pub async fn run_fatal_watch(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    loop {
        let fatal = match &metrics.borrow_and_update().running_state {
            Ok(()) => None,
            Err(openraft::error::Fatal::Stopped) => return,
            Err(fatal) => Some(fatal.clone()),
        };
        if let Some(fatal) = fatal {
            let status = match fatal {
                openraft::error::Fatal::StorageError(_) => EXIT_STORAGE_FAILED,
                _ => EXIT_RAFT_PANICKED,
            };
            tracing::error!(
                error = %fatal,
                exit_status = status,
                "raft stopped on a fatal error; the node stops rather than serve a state the \
                 disk may not hold. Nothing it acknowledged is lost: on restart it recovers \
                 from what was synced. If the disk still fails, it stops again at start"
            );
            std::process::exit(status);
        }
        if metrics.changed().await.is_err() {
            // The core is gone without a word: it panicked (an orderly
            // shutdown says `Stopped` first, and starts with the drain).
            if node.drain.is_draining() {
                return;
            }
            tracing::error!(
                exit_status = EXIT_RAFT_PANICKED,
                "raft stopped on a fatal error (its core panicked); the node stops"
            );
            std::process::exit(EXIT_RAFT_PANICKED);
        }
    }
}

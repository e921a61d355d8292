//! Replication makes progress whatever the size of the events (issue #22): a
//! follower that fell behind while writers sent large events catches up after
//! a pause, a partition, or a restart from an empty disk, and the largest
//! events the limits allow, in the largest batches the message limit allows,
//! reach every node.
//!
//! Each test prints what it measured (`replication:` lines): the write rate
//! while the follower was away and how long it took to catch up. The bounds
//! asserted are generous on purpose (a shared 2-core machine, debug builds):
//! they catch a follower that never catches up, not a slow one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use veritrail_tests::{Cluster, ClusterOptions, sdk_event, veritrail, wait_for, wait_for_opt};

/// The large events of the report.
const LARGE_PAYLOAD_BYTES: usize = 16 * 1024;
/// How long a follower stays away while the writers go on.
const AWAY: Duration = Duration::from_secs(20);
/// How long a follower may take to catch up once it is back, writers stopped
/// five seconds after its return.
const CATCH_UP_BOUND: Duration = Duration::from_secs(90);

/// Writers appending batches of events with large payloads as fast as the
/// cluster takes them.
struct Load {
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &Cluster, writers: usize, batch: usize, payload_bytes: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let client = cluster.sdk();
        let tasks = (0..writers)
            .map(|w| {
                let (client, stop) = (client.clone(), Arc::clone(&stop));
                let (events, bytes) = (Arc::clone(&events), Arc::clone(&bytes));
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let batch_events: Vec<_> = (0..batch)
                            .map(|i| {
                                let mut event = sdk_event("large", &format!("w{w}-{n}-{i}"));
                                event.payload = vec![b'a' + (i % 26) as u8; payload_bytes];
                                event
                            })
                            .collect();
                        let sent = tokio::time::timeout(Duration::from_secs(20), async {
                            client.append_batch(batch_events).await
                        })
                        .await;
                        match sent {
                            Ok(Ok(receipts)) => {
                                events.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                                bytes.fetch_add(
                                    (receipts.len() * payload_bytes) as u64,
                                    Ordering::Relaxed,
                                );
                                n += 1;
                            }
                            // Leader changes and overload are retried with the
                            // same ids; the run's checks are on the nodes.
                            _ => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            events,
            bytes,
            started: Instant::now(),
            tasks,
        }
    }

    /// Acknowledged events so far.
    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Stops the writers; returns (events, payload bytes, seconds) acknowledged.
    async fn stop(self) -> (u64, u64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        (
            self.events.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.started.elapsed().as_secs_f64(),
        )
    }
}

/// The index of the node that the running nodes other than `away` call leader.
async fn leader_besides(cluster: &Cluster, away: usize) -> usize {
    wait_for(Duration::from_secs(30), "a leader", || async {
        for i in (0..cluster.nodes.len()).filter(|i| *i != away) {
            let leader_id = cluster.status(i).await?.leader_id?;
            if let Some(l) = cluster.nodes.iter().position(|n| n.id == leader_id) {
                return Some(l);
            }
        }
        None
    })
    .await
}

/// Waits until node `follower` holds as many entries as the leader, with the
/// same root, and returns how long that took.
async fn wait_caught_up(cluster: &Cluster, follower: usize, since: Instant) -> Duration {
    let remaining = CATCH_UP_BOUND.saturating_sub(since.elapsed());
    let caught_up = wait_for_opt(remaining, || async {
        let leader = leader_besides(cluster, follower).await;
        let l = cluster.status(leader).await?;
        let f = cluster.status(follower).await?;
        (f.tree_size == l.tree_size && f.root_hash == l.root_hash).then_some(())
    })
    .await;
    if caught_up.is_none() {
        let f = cluster.status(follower).await;
        let leader = leader_besides(cluster, follower).await;
        panic!(
            "node {} did not catch up within {CATCH_UP_BOUND:?}: follower {:?}, leader {:?}\n\
             leader's log:\n{}\nfollower's log:\n{}",
            cluster.nodes[follower].id,
            f.map(|s| s.tree_size),
            cluster.status(leader).await.map(|s| s.tree_size),
            cluster.log_tail(leader),
            cluster.log_tail(follower),
        );
    }
    since.elapsed()
}

/// The leader's view of a member's replication, once it shows `check`.
async fn member_lag(
    cluster: &Cluster,
    leader: usize,
    member_id: u64,
    what: &str,
    check: impl Fn(&veritrail_proto::v1::MemberStatus) -> bool,
) -> veritrail_proto::v1::MemberStatus {
    wait_for(Duration::from_secs(30), what, || async {
        let status = cluster.status(leader).await?;
        let member = status
            .members
            .into_iter()
            .find(|m| m.node_id == member_id)?;
        check(&member).then_some(member)
    })
    .await
}

/// The lag `veritrail cluster status --output json` shows for `member_id`.
async fn cli_lag_entries(cluster: &Cluster, member_id: u64) -> u64 {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(veritrail())
            .args(["cluster", "status", "--output", "json"])
            .envs(cluster.cli_env().0.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("cluster status answers within 60 s")
    .expect("run veritrail");
    let text = String::from_utf8_lossy(&out.stdout);
    let status: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("cluster status JSON ({e}): {text}"));
    status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node_id"] == member_id))
        .and_then(|n| n["replication"]["lag_entries"].as_u64())
        .unwrap_or_else(|| panic!("no replication lag for node {member_id}: {text}"))
}

/// Runs the load while `away` is done to a follower, `back` undoes it, then
/// measures the catch-up. Returns how many times the leader logged the
/// follower stuck while it was away.
async fn away_and_back(
    cluster: &mut Cluster,
    label: &str,
    away: impl FnOnce(&mut Cluster, usize),
    back: impl FnOnce(&mut Cluster, usize),
) -> usize {
    let leader = cluster.leader().await;
    let follower = (leader + 1) % cluster.nodes.len();
    let follower_id = cluster.nodes[follower].id;
    let load = Load::start(cluster, 6, 8, LARGE_PAYLOAD_BYTES);
    wait_for(
        Duration::from_secs(30),
        "the first acknowledgments",
        || async { (load.events() > 100).then_some(()) },
    )
    .await;

    away(cluster, follower);
    let before = load.events();
    let gone = Instant::now();
    // While it is away, the leader reports it behind, in entries, bytes and
    // seconds.
    let lagging = member_lag(
        cluster,
        leader_besides(cluster, follower).await,
        follower_id,
        "the leader to report the follower behind",
        |m| m.lag_entries > 0 && m.lag_bytes > 0 && m.lag_ms > 0,
    )
    .await;
    eprintln!("replication: {label}: while away, the leader reported {lagging:?}");
    // The operator's view: `veritrail cluster status` shows it behind. Asked
    // while it is away: once it is back, it may have caught up before the
    // command answers, and a partitioned node coming back with a higher term
    // can depose the leader for a moment, leaving no leader to measure lag.
    let cli_lag = cli_lag_entries(cluster, follower_id).await;
    assert!(
        cli_lag > 0,
        "veritrail cluster status shows node {follower_id} in sync"
    );
    tokio::time::sleep_until((gone + AWAY).into()).await;
    let while_away = load.events() - before;
    let stuck_reports = std::fs::read_to_string(&cluster.nodes[leader].log_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("replication stuck: node {follower_id} ")))
        .count();
    back(cluster, follower);
    let returned = Instant::now();

    tokio::time::sleep(Duration::from_secs(5)).await;
    let (events, bytes, secs) = load.stop().await;
    let took = wait_caught_up(cluster, follower, returned).await;
    let leader_log = std::fs::read_to_string(&cluster.nodes[leader].log_path).unwrap_or_default();
    eprintln!(
        "replication: {label}: {while_away} events of {} KiB acknowledged in {:.0} s away; \
         overall {:.0} events/s ({:.1} MiB/s); caught up {:.1} s after its return; \
         openraft logged {} AppendEntries deadlines on the leader (each answered later)",
        LARGE_PAYLOAD_BYTES / 1024,
        AWAY.as_secs_f64(),
        events as f64 / secs,
        bytes as f64 / secs / f64::from(1 << 20),
        took.as_secs_f64(),
        leader_log
            .lines()
            .filter(|l| l.contains("RPCError") && l.contains("timeout after"))
            .count(),
    );
    assert!(
        while_away > 0,
        "nothing was acknowledged while node {follower_id} was away"
    );
    // The member at the follower's place now (a replaced node has a new id).
    let member_id = cluster.nodes[follower].id;
    let leader = leader_besides(cluster, follower).await;
    member_lag(
        cluster,
        leader,
        member_id,
        "the leader to report the follower caught up",
        |m| m.lag_entries == 0 && m.lag_bytes == 0,
    )
    .await;
    stuck_reports
}

/// A follower frozen (SIGSTOP) for 20 s while six writers send 16 KiB events
/// at full speed catches up once it runs again, and the leader logs it stuck,
/// once, with the reason, while it is away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_follower_catches_up_after_large_events() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            raft_toml: "replication_stuck_after_ms = 5000\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let stuck_reports = away_and_back(
        &mut cluster,
        "paused",
        |c, f| c.pause(f),
        |c, f| c.resume(f),
    )
    .await;
    // Once, not once per check: a follower stuck for 20 s is one event. A
    // response the frozen follower wrote just before it stopped can reach a
    // leader slowed by the load after the first report, and count as
    // movement; a second report then is the most a slow machine may show.
    assert!(
        (1..=2).contains(&stuck_reports),
        "the leader logged the frozen follower stuck {stuck_reports} times in 20 s, not once"
    );
}

/// The same with the follower cut off by a partition (real packet loss
/// between network namespaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_follower_catches_up_after_large_events() {
    let Some(mut cluster) = Cluster::start_partitionable(3).await else {
        return;
    };
    away_and_back(
        &mut cluster,
        "partitioned",
        |c, f| c.partition(&[f]),
        |c, _| c.heal(),
    )
    .await;
}

/// A follower whose disk was lost is replaced by an empty node under a new id
/// while the writers go on; the new node catches up and becomes a voter.
/// Snapshots are taken every 200 events, so the leader's Raft log no longer
/// holds the beginning and the new node is sent a snapshot of the large
/// events, in chunks of `raft.snapshot_chunk_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_restarted_empty_catches_up_after_large_events() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            raft_toml: "snapshot_after_events = 200\nkeep_after_snapshot_entries = 10\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let new_id = 4;
    away_and_back(
        &mut cluster,
        "restarted empty",
        |c, f| c.kill(f),
        move |c, f| {
            let old_id = c.nodes[f].id;
            c.replace(f, new_id);
            let addr = c.nodes[f].addr.clone();
            let client = c.sdk();
            // Membership changes run in the background: the measured
            // catch-up starts when the empty node is asked to join.
            tokio::spawn(async move {
                client
                    .add_learner(new_id, &addr, false)
                    .await
                    .expect("add the empty node as a learner");
                let voters: Vec<u64> = [1, 2, 3]
                    .into_iter()
                    .filter(|id| *id != old_id)
                    .chain([new_id])
                    .collect();
                client
                    .change_membership(voters, false)
                    .await
                    .expect("promote the new node, remove the old one");
            });
        },
    )
    .await;
    cluster.wait_for_voters(3).await;
    let new = cluster
        .nodes
        .iter()
        .position(|n| n.id == new_id)
        .expect("the new node");
    let status = cluster.status(new).await.expect("the new node's status");
    assert!(
        status.snapshot_tree_size.is_some_and(|s| s > 0),
        "the empty node should have been sent a snapshot: {status:?}"
    );
}

/// Events at the largest payload the limits allow, in batches as large as
/// one request may be, replicate to every node with one root. One request is
/// appended as one Raft entry, so its bytes are bounded by `batch.entry_max_bytes`
/// (2 MiB), well before the batch limit of 4,096 events: a request past that
/// is refused with `INVALID_ARGUMENT` and writes nothing. (It used to be
/// accepted as a Raft entry too large for any message, which no follower
/// could ever receive: the cluster stopped committing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn largest_events_in_largest_batches_reach_every_node() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let payload = veritrail_core::Limits::default().payload_max_bytes;
    let batch_max_bytes = 2usize << 20;
    // The server's bound of an event's size: the payload, the other fields
    // and 64 bytes of framing.
    let event_bytes = |i: usize| {
        let mut e = sdk_event("large", &format!("refused-{i}"));
        e.payload = vec![b'z'; payload];
        (
            e.clone(),
            64 + payload
                + e.source.len()
                + e.event_id.len()
                + e.actor.len()
                + e.action.len()
                + e.resource.len()
                + e.outcome.len(),
        )
    };
    let fits = batch_max_bytes / event_bytes(0).1;

    let client = cluster.sdk();
    let leader = cluster.leader().await;
    let status = cluster.status(leader).await.expect("status");
    let (before, first_term) = (status.tree_size, status.term);
    let too_many: Vec<_> = (0..=fits).map(|i| event_bytes(i).0).collect();
    let refused = client
        .append_batch(too_many)
        .await
        .expect_err("a request larger than one Raft entry");
    assert_eq!(
        refused.code(),
        Some(tonic::Code::InvalidArgument),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("batch.entry_max_bytes"),
        "{refused}"
    );
    assert_eq!(
        cluster.status(leader).await.expect("status").tree_size,
        before,
        "a refused request wrote something"
    );

    let load = Load::start(&cluster, 2, fits, payload);
    let wanted = 16 * fits as u64;
    wait_for(
        Duration::from_secs(120),
        "sixteen batches of the largest events",
        || async { (load.events() >= wanted).then_some(()) },
    )
    .await;
    let (events, bytes, secs) = load.stop().await;
    eprintln!(
        "replication: {events} events of {} KiB in batches of {fits}: {:.1} MiB/s",
        payload / 1024,
        bytes as f64 / secs / f64::from(1 << 20)
    );
    for i in 0..cluster.nodes.len() {
        wait_caught_up(&cluster, i, Instant::now()).await;
    }
    assert_eq!(
        cluster.roots().await.len(),
        1,
        "the nodes disagree on the root"
    );
    // Leadership may move under this load: now that every node holds what
    // the leader of the moment holds, any node has every acknowledged event.
    let after = cluster.status(0).await.expect("status");
    eprintln!(
        "replication: terms {first_term} -> {} during the run",
        after.term
    );
    let size = after.tree_size;
    assert!(
        size >= before + events,
        "the nodes hold {size} < {before} + {events} acknowledged"
    );
}

/// A voter whose log lacks entries the leader told it are committed stands
/// for no election until it has caught up: it could not win one (a majority
/// holds those entries and refuses a candidate less up to date), and standing
/// would only raise the term and depose the leader that learns it. A voter
/// catching up under load misses heartbeats; before, each time its timer ran
/// out it stood, and a voter restarted empty could keep the cluster electing
/// for longer than it took to catch up (docs/FAULTS.md, "Flakes"). The same
/// rule answers an operator who hands leadership to such a voter:
/// `FAILED_PRECONDITION`, "still catching up", and no term is spent; once it
/// has caught up the transfer goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_still_catching_up_stands_for_no_election() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let leader_id = cluster.nodes[leader].id;
    let follower = (leader + 1) % 3;
    let follower_id = cluster.nodes[follower].id;
    let load = Load::start(&cluster, 6, 8, LARGE_PAYLOAD_BYTES);
    wait_for(
        Duration::from_secs(30),
        "the first acknowledgments",
        || async { (load.events() > 100).then_some(()) },
    )
    .await;
    cluster.kill(follower);
    let away_from = load.events();
    wait_for(Duration::from_secs(60), "the writers to go on", || async {
        (load.events() > away_from + 1000).then_some(())
    })
    .await;
    let term = cluster.status(leader).await.expect("status").term;
    cluster.restart(follower);
    // Back and led: the follower names its leader as soon as it starts (its
    // vote is on disk), so what shows the leader has reached it is its log
    // growing; two looks in a row at that while its log is still far short
    // of the leader's.
    let restarted_with = wait_for(Duration::from_secs(30), "the follower back", || async {
        cluster
            .status(follower)
            .await
            .map(|f| f.last_log_index.unwrap_or(0))
    })
    .await;
    let seen = AtomicU64::new(0);
    wait_for(
        Duration::from_secs(30),
        "the follower back, led and behind",
        || async {
            let f = cluster.status(follower).await?;
            let l = cluster.status(leader).await?;
            let held = f.last_log_index.unwrap_or(0);
            let led_and_behind = f.leader_id == Some(leader_id)
                && held > restarted_with
                && held + 50 < l.last_log_index.unwrap_or(0);
            if !led_and_behind {
                seen.store(0, Ordering::Relaxed);
                return None;
            }
            (seen.fetch_add(1, Ordering::Relaxed) >= 1).then_some(())
        },
    )
    .await;
    let admin = cluster.sdk();
    let refused = admin
        .transfer_leader(follower_id)
        .await
        .expect_err("leadership handed to a voter still catching up");
    let terms: Vec<u64> = {
        let mut t = Vec::new();
        for i in 0..3 {
            t.push(cluster.status(i).await.map_or(0, |s| s.term));
        }
        t
    };
    load.stop().await;
    eprintln!("replication: transfer to a voter catching up: {refused}; terms {terms:?}");
    assert!(
        refused.to_string().contains("catching up"),
        "the transfer was not refused for the voter catching up: {refused}"
    );
    assert!(
        terms.iter().all(|t| *t == term),
        "asking a voter still catching up to lead spent a term: {terms:?}, was {term}"
    );
    wait_caught_up(&cluster, follower, Instant::now()).await;
    let to = wait_for(
        Duration::from_secs(30),
        "a transfer to the caught-up voter",
        || {
            let admin = admin.clone();
            async move { admin.transfer_leader(follower_id).await.ok() }
        },
    )
    .await;
    assert_eq!(to, follower_id);
}

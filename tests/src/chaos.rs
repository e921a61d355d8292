//! Fault injection against a real cluster: a seeded schedule of faults while
//! clients append, read and fetch checkpoints; a recorded history; and a
//! checker that looks for every way history could have been lost, duplicated,
//! invented or forked. One event in four carries a 16 KiB payload, so every
//! fault is also tried with a backlog of large entries to replicate.
//!
//! Faults are real: `kill -9` of the leader or of any node followed by a
//! restart on the same data; `SIGSTOP`/`SIGCONT` pauses longer than the
//! election timeout; and network partitions made of packet loss between
//! network namespaces (`crate::netns`): the leader or any node isolated, a
//! bridge node that alone sees both halves, a clean minority/majority split. One fault at a time, each healed before the next, so a
//! majority is always up and the cluster must stay live; the checker holds it
//! to safety regardless. The schedule is drawn from a seed, printed first, so
//! a run can be replayed with `VERITRAIL_CHAOS_SEED`.
//!
//! Disk damage too: a byte flipped in a stopped follower's WAL or table, which
//! `veritraild fsck` must flag; the node is then replaced by an empty one under
//! a new id at the same address, as an operator would.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use veritrail_client::{Client, Event, ScanQuery};
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::merkle::verify_consistency;
use veritrail_core::note::NoteKey;
use veritrail_core::{ChainVerifier, Hash};

use crate::{Cluster, ClusterOptions, ORIGIN};

/// The event source every chaos writer appends under.
pub const SOURCE: &str = "chaos";

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub seed: u64,
    pub duration: Duration,
    pub nodes: usize,
    pub writers: usize,
}

impl ChaosConfig {
    /// `VERITRAIL_CHAOS_SECS` (else `default_secs`) and `VERITRAIL_CHAOS_SEED`
    /// (else drawn from the clock), for a cluster of `nodes`.
    pub fn from_env(default_secs: u64, nodes: usize) -> ChaosConfig {
        let secs = std::env::var("VERITRAIL_CHAOS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_secs);
        let seed = std::env::var("VERITRAIL_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        ChaosConfig {
            seed,
            duration: Duration::from_secs(secs),
            nodes,
            writers: 8,
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Invoke {
        at_ms: u64,
        writer: usize,
        id: String,
    },
    Ack {
        at_ms: u64,
        writer: usize,
        id: String,
        seq: u64,
        hash: String,
        duplicate: bool,
    },
    Fail {
        at_ms: u64,
        writer: usize,
        id: String,
        error: String,
    },
    Fault {
        at_ms: u64,
        kind: String,
        node: u64,
        for_ms: u64,
    },
    Checkpoint {
        at_ms: u64,
        size: u64,
        note: String,
        /// The voters' keys when it was fetched.
        keys: Vec<String>,
    },
    Violation {
        at_ms: u64,
        what: String,
    },
}

#[derive(Debug)]
struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn push(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    fn violation(&self, what: String) {
        eprintln!("chaos: VIOLATION: {what}");
        self.push(Op::Violation {
            at_ms: self.now_ms(),
            what,
        });
    }
}

/// What a run did and found.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub seconds: u64,
    pub invoked: u64,
    pub acknowledged: u64,
    /// Events never acknowledged: the run ended while they were retried.
    pub unknown: u64,
    /// Appends that failed after the SDK's own retries, and were tried again
    /// with the same event id.
    pub failed_attempts: u64,
    /// Reads of acknowledged events that answered (and were compared).
    pub reads: u64,
    pub checkpoints_seen: u64,
    pub faults: BTreeMap<String, u64>,
    /// Disks damaged, and how many of those nodes refused to start on them.
    pub damaged_nodes: u64,
    pub damaged_nodes_refused_start: u64,
    /// False where partitions could not be made (not root): then only kills,
    /// pauses and disk faults ran.
    pub partitions: bool,
    pub final_size: u64,
    pub violations: Vec<String>,
    /// Where the history was written, when there were violations.
    pub history_file: Option<String>,
}

/// One event in four carries a payload of this size, so that every fault is
/// also tried with large events behind it (issue #22: a backlog of large
/// entries once stalled a follower for good).
pub const LARGE_PAYLOAD_BYTES: usize = 16 * 1024;

/// The event writer `writer` sends under `id` (`w{writer}-{n}`): a function of
/// the id alone, so that the checker can tell what was sent.
fn event(id: &str, writer: usize) -> Event {
    let n: u64 = id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let payload = if n % 4 == 3 {
        id.bytes().cycle().take(LARGE_PAYLOAD_BYTES).collect()
    } else {
        id.as_bytes().to_vec()
    };
    Event {
        source: SOURCE.into(),
        event_id: id.into(),
        actor: format!("writer-{writer}"),
        action: "chaos.append".into(),
        resource: format!("item/{id}"),
        outcome: "success".into(),
        payload,
        ..Event::default()
    }
}

/// Runs the workload and the faults for `config.duration`, heals, checks, and
/// returns the summary (it does not panic on violations: the caller decides).
pub async fn run(config: &ChaosConfig) -> Summary {
    eprintln!(
        "chaos: seed {} ({} s, {} nodes, {} writers); replay with VERITRAIL_CHAOS_SEED={}",
        config.seed,
        config.duration.as_secs(),
        config.nodes,
        config.writers,
        config.seed
    );
    let mut cluster = Cluster::start(
        config.nodes,
        ClusterOptions {
            netns: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let history = Arc::new(History {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, u64, Hash)>>> = Arc::new(Mutex::new(Vec::new()));
    let reads = Arc::new(AtomicU64::new(0));
    let client = cluster.sdk();

    let mut tasks = Vec::new();
    for w in 0..config.writers {
        tasks.push(tokio::spawn(writer(
            w,
            client.clone(),
            Arc::clone(&history),
            Arc::clone(&stop),
            Arc::clone(&acked),
        )));
    }
    for r in 0..2 {
        tasks.push(tokio::spawn(reader(
            config.seed ^ r,
            client.clone(),
            Arc::clone(&history),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&reads),
        )));
    }
    tasks.push(tokio::spawn(checkpoints(
        client.clone(),
        Arc::clone(&history),
        Arc::clone(&stop),
    )));

    let mut faults = nemesis(&mut cluster, config, &history).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut summary = check(&cluster, &client, &history).await;
    summary.seed = config.seed;
    summary.seconds = config.duration.as_secs();
    summary.damaged_nodes = faults.get("corrupt-and-replace").copied().unwrap_or(0);
    summary.damaged_nodes_refused_start = faults.remove("damaged-node-refused-start").unwrap_or(0);
    summary.partitions = cluster.can_partition();
    summary.faults = faults;
    summary.reads = reads.load(Ordering::Relaxed);
    if !summary.violations.is_empty() {
        let path = std::env::temp_dir().join(format!("veritrail-chaos-{}.jsonl", config.seed));
        let ops = history.ops.lock().unwrap_or_else(|e| e.into_inner());
        let text: String = ops
            .iter()
            .map(|op| serde_json::to_string(op).unwrap_or_default() + "\n")
            .collect();
        if std::fs::write(&path, text).is_ok() {
            summary.history_file = Some(path.display().to_string());
        }
        // The nodes' logs go with the history: the cluster's directory is
        // removed when the test ends.
        for node in &cluster.nodes {
            let copy = std::env::temp_dir().join(format!(
                "veritrail-chaos-{}-node{}.log",
                config.seed, node.id
            ));
            let _ = std::fs::copy(&node.log_path, copy);
        }
    }
    summary
}

/// Appends new events one after another, retrying each with its own id until
/// it is acknowledged or the run ends.
async fn writer(
    w: usize,
    client: Client,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, u64, Hash)>>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{w}-{n}");
        history.push(Op::Invoke {
            at_ms: history.now_ms(),
            writer: w,
            id: id.clone(),
        });
        loop {
            let outcome =
                tokio::time::timeout(Duration::from_secs(20), client.append(event(&id, w))).await;
            match outcome {
                Ok(Ok(receipt)) => {
                    history.push(Op::Ack {
                        at_ms: history.now_ms(),
                        writer: w,
                        id: id.clone(),
                        seq: receipt.seq,
                        hash: receipt.entry_hash.to_hex(),
                        duplicate: receipt.duplicate,
                    });
                    acked.lock().unwrap_or_else(|e| e.into_inner()).push((
                        id.clone(),
                        receipt.seq,
                        receipt.entry_hash,
                    ));
                    break;
                }
                Ok(Err(e)) if e.code() == Some(tonic::Code::AlreadyExists) => {
                    // The same event under the same id must deduplicate.
                    history.violation(format!("{id}: a retry of the same event was refused: {e}"));
                    break;
                }
                other => {
                    let error = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer within 20 s".to_owned(),
                    };
                    history.push(Op::Fail {
                        at_ms: history.now_ms(),
                        writer: w,
                        id: id.clone(),
                        error,
                    });
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // The SDK already backed off within its policy; pause a
                    // little before starting over with the same id.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        n += 1;
    }
}

/// Reads back acknowledged events, by seq and by id, and compares.
async fn reader(
    seed: u64,
    client: Client,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, u64, Hash)>>>,
    reads: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let pick = {
            let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
            (!acked.is_empty()).then(|| acked[rng.random_range(0..acked.len())].clone())
        };
        let Some((id, seq, hash)) = pick else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let read = if rng.random_bool(0.5) {
            client.get(seq).await
        } else {
            client.get_by_event_id(SOURCE, &id).await
        };
        if read.is_ok() {
            reads.fetch_add(1, Ordering::Relaxed);
        }
        match read {
            Ok(entry) if entry.hash == hash && entry.entry.event.event_id == id && entry.seq() == seq => {}
            Ok(entry) => history.violation(format!(
                "{id} was acknowledged at seq {seq} with hash {hash}; a read returned seq {} id {} hash {}",
                entry.seq(),
                entry.entry.event.event_id,
                entry.hash
            )),
            // Faults make reads fail for a while; that is availability, not safety.
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches the latest checkpoint now and then, keeping every one seen.
async fn checkpoints(client: Client, history: Arc<History>, stop: Arc<AtomicBool>) {
    let mut seen = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(c) = client.checkpoint(None).await
            && seen.insert(c.note.clone())
        {
            // The voters of the moment: membership changes when a node is
            // replaced, and a checkpoint is judged by the keys of its time.
            let keys = match client.status().await {
                Ok(status) => status
                    .members
                    .iter()
                    .filter(|m| m.voter)
                    .map(|m| m.public_key.clone())
                    .collect(),
                Err(_) => Vec::new(),
            };
            history.push(Op::Checkpoint {
                at_ms: history.now_ms(),
                size: c.tree_size,
                note: c.note,
                keys,
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The node the running nodes agree leads, if they do within a short wait.
async fn current_leader(cluster: &Cluster) -> Option<usize> {
    for _ in 0..20 {
        let mut leaders = BTreeSet::new();
        for i in 0..cluster.nodes.len() {
            if let Some(status) = cluster.status(i).await
                && let Some(l) = status.leader_id
            {
                leaders.insert(l);
            }
        }
        if leaders.len() == 1 {
            let id = leaders.first().copied()?;
            return cluster.nodes.iter().position(|n| n.id == id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Injects one fault at a time, each healed before the next, until the run's
/// time is up. Returns the count by kind.
async fn nemesis(
    cluster: &mut Cluster,
    config: &ChaosConfig,
    history: &History,
) -> BTreeMap<String, u64> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut faults = BTreeMap::new();
    let end = Instant::now() + config.duration;
    let mut next_id = 100 + cluster.nodes.len() as u64;
    let mut kinds = vec!["kill-leader", "kill-node", "pause-leader", "pause-node"];
    if cluster.can_partition() {
        kinds.extend(["isolate-leader", "isolate-node", "bridge", "split"]);
        // Replacing a node reuses its address, which needs the node's own
        // network namespace.
        kinds.push("corrupt-and-replace");
    } else {
        eprintln!("chaos: no private network (needs root): partitions are not injected");
    }
    while Instant::now() < end {
        // The quiet time between faults is part of the schedule.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        let kind = kinds[rng.random_range(0..kinds.len())];
        let n = cluster.nodes.len();
        let random_node = rng.random_range(0..n);
        let target = if kind.ends_with("leader") {
            current_leader(cluster).await.unwrap_or(random_node)
        } else {
            random_node
        };
        // Longer than the election timeout (300-600 ms in the fixture).
        let for_ms = rng.random_range(700..3_000);
        history.push(Op::Fault {
            at_ms: history.now_ms(),
            kind: kind.to_owned(),
            node: cluster.nodes[target].id,
            for_ms,
        });
        *faults.entry(kind.to_owned()).or_insert(0) += 1;
        match kind {
            "corrupt-and-replace" => {
                let (problems, refused) = corrupt_and_replace(cluster, &mut rng, next_id).await;
                for problem in problems {
                    history.violation(problem);
                }
                if refused {
                    *faults
                        .entry("damaged-node-refused-start".to_owned())
                        .or_insert(0) += 1;
                }
                next_id += 1;
            }
            "kill-leader" | "kill-node" => {
                cluster.kill(target);
                tokio::time::sleep(Duration::from_millis(for_ms)).await;
                cluster.restart(target);
            }
            "pause-leader" | "pause-node" => {
                cluster.pause(target);
                tokio::time::sleep(Duration::from_millis(for_ms)).await;
                cluster.resume(target);
            }
            partition => {
                match partition {
                    // The target alone on one side: a leader in a minority.
                    "isolate-leader" | "isolate-node" => cluster.partition(&[target]),
                    // The target talks to everyone; the others, split in two
                    // halves, do not talk across: only the bridge sees a majority.
                    "bridge" => {
                        let others: Vec<usize> = (0..n).filter(|i| *i != target).collect();
                        let (left, right) = others.split_at(others.len() / 2);
                        for &a in left {
                            for &b in right {
                                cluster.cut(a, b);
                            }
                        }
                    }
                    // A clean split: a random minority against the majority.
                    _ => {
                        let mut side: Vec<usize> = (0..n).collect();
                        for i in (1..side.len()).rev() {
                            side.swap(i, rng.random_range(0..=i));
                        }
                        side.truncate((n - 1) / 2);
                        cluster.partition(&side);
                    }
                }
                tokio::time::sleep(Duration::from_millis(for_ms)).await;
                cluster.heal();
            }
        }
    }
    faults
}

/// Flips one byte in the middle of the largest file of a stopped follower's
/// data directory, checks that `veritraild fsck` flags it and that the node
/// does not come back as if nothing happened, then does what an operator
/// would: replaces it by an empty node with a new id at the same address
/// (`AddLearner`, then `ChangeMembership`). Returns what went wrong, and
/// whether the damaged node refused to start.
pub async fn corrupt_and_replace(
    cluster: &mut Cluster,
    rng: &mut StdRng,
    new_id: u64,
) -> (Vec<String>, bool) {
    let mut problems = Vec::new();
    let n = cluster.nodes.len();
    let leader = current_leader(cluster).await;
    let followers: Vec<usize> = (0..n).filter(|i| Some(*i) != leader).collect();
    let victim = followers[rng.random_range(0..followers.len())];
    cluster.kill(victim);
    let data_dir = cluster.nodes[victim].data_dir.clone();
    let Some((file, offset)) = flip_a_byte(&data_dir, rng) else {
        return (
            vec![format!("no file to corrupt in {}", data_dir.display())],
            false,
        );
    };
    let fsck = std::process::Command::new(crate::veritraild())
        .arg("fsck")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .expect("run fsck");
    if fsck.status.success() {
        problems.push(format!(
            "fsck passed node {} after byte {offset} of {file} was flipped",
            cluster.nodes[victim].id
        ));
    }
    // Restarted on the damaged disk, the node should refuse to start (damage in
    // the WAL does; damage in a table it has not read yet may only show when
    // read). Either way it is replaced below; fsck flagging it is the check.
    cluster.restart(victim);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut refused = false;
    while Instant::now() < deadline && !refused {
        refused = cluster.nodes[victim].has_exited();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let old_id = cluster.nodes[victim].id;
    cluster.replace(victim, new_id);
    let addr = cluster.nodes[victim].addr.clone();
    let client = cluster.sdk();
    let repaired = async {
        client.add_learner(new_id, &addr, true).await?;
        let status = client.status().await?;
        let voters: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.voter && m.node_id != old_id)
            .map(|m| m.node_id)
            .chain([new_id])
            .collect();
        client.change_membership(voters, false).await
    };
    match tokio::time::timeout(Duration::from_secs(60), repaired).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => problems.push(format!("replacing node {old_id} by {new_id} failed: {e}")),
        Err(_) => problems.push(format!(
            "replacing node {old_id} by {new_id} took over 60 s"
        )),
    }
    (problems, refused)
}

/// Flips one byte at a random offset in the middle half of the largest WAL
/// (`*.log`), table (`*.sst`) or current snapshot (`*.snap`) under `dir`:
/// data that is checksummed, not RocksDB's own text log (`LOG`) or the node
/// key. Returns the file and the offset.
fn flip_a_byte(dir: &std::path::Path, rng: &mut StdRng) -> Option<(String, u64)> {
    let mut largest: Option<(u64, std::path::PathBuf)> = None;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "log" || e == "sst" || e == "snap")
                && largest.as_ref().is_none_or(|(size, _)| meta.len() > *size)
            {
                largest = Some((meta.len(), path));
            }
        }
    }
    let (size, path) = largest.filter(|(size, _)| *size >= 16)?;
    let offset = rng.random_range(size / 4..size * 3 / 4);
    let mut bytes = std::fs::read(&path).ok()?;
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(&path, bytes).ok()?;
    Some((path.display().to_string(), offset))
}

/// Waits for every node to agree, then checks the history against the log.
async fn check(cluster: &Cluster, client: &Client, history: &History) -> Summary {
    let mut summary = Summary::default();
    let mut violations = Vec::new();

    // What the clients saw, counted first so that a run whose nodes never
    // converge still reports it.
    let ops = history
        .ops
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut invoked = BTreeSet::new();
    let mut acks = BTreeMap::new();
    for op in &ops {
        match op {
            Op::Invoke { id, .. } => {
                invoked.insert(id.clone());
            }
            Op::Ack { id, seq, hash, .. } => {
                acks.insert(id.clone(), (*seq, hash.clone()));
            }
            Op::Fail { .. } => summary.failed_attempts += 1,
            Op::Violation { what, .. } => violations.push(what.clone()),
            _ => {}
        }
    }
    summary.invoked = invoked.len() as u64;
    summary.acknowledged = acks.len() as u64;
    summary.unknown = summary.invoked - summary.acknowledged;

    // Settle: every node at the same size, root and head.
    let settled = crate::wait_for_opt(Duration::from_secs(90), || async {
        let mut states = BTreeSet::new();
        for i in 0..cluster.nodes.len() {
            let s = cluster.status(i).await?;
            states.insert((s.tree_size, s.root_hash, s.chain_head));
        }
        (states.len() == 1).then(|| states.into_iter().next())?
    })
    .await;
    let Some((final_size, final_root, final_head)) = settled else {
        let mut last = Vec::new();
        for i in 0..cluster.nodes.len() {
            last.push(match cluster.status(i).await {
                Some(s) => format!(
                    "node {}: size {}, leader {:?}, term {}",
                    cluster.nodes[i].id, s.tree_size, s.leader_id, s.term
                ),
                None => format!("node {}: no answer", cluster.nodes[i].id),
            });
        }
        violations.push(format!(
            "the nodes did not converge on one size, root and head within 90 s ({})",
            last.join("; ")
        ));
        summary.violations = violations;
        return summary;
    };
    summary.final_size = final_size;

    // The whole log, replayed: dense seqs, unbroken chain, the nodes' root.
    let mut chain = ChainVerifier::from_genesis(ORIGIN);
    let mut by_id: BTreeMap<String, Vec<(u64, Hash)>> = BTreeMap::new();
    let mut entries = client.scan(ScanQuery {
        to_seq: Some(final_size),
        ..ScanQuery::default()
    });
    while let Some(entry) = entries.next().await {
        match entry {
            Ok(entry) => {
                if let Err(e) = chain.push(&entry.canonical) {
                    violations.push(format!("the final log does not replay: {e}"));
                    break;
                }
                let e = &entry.entry.event;
                // The event must be, field for field, the one its writer sent.
                let sent = e
                    .event_id
                    .strip_prefix('w')
                    .and_then(|rest| rest.split_once('-'))
                    .and_then(|(w, _)| w.parse::<usize>().ok())
                    .map(|w| event(&e.event_id, w));
                if sent.as_ref() != Some(e) {
                    violations.push(format!(
                        "seq {} holds {}/{}, which no client sent in that form",
                        entry.seq(),
                        e.source,
                        e.event_id
                    ));
                }
                by_id
                    .entry(e.event_id.clone())
                    .or_default()
                    .push((entry.seq(), entry.hash));
            }
            Err(e) => {
                violations.push(format!("reading the final log failed: {e}"));
                break;
            }
        }
    }
    if chain.next_seq() != final_size {
        violations.push(format!(
            "the final log has {} entries; the nodes report {final_size}",
            chain.next_seq()
        ));
    }
    let replayed_root = chain
        .root()
        .unwrap_or_else(veritrail_core::merkle::empty_root);
    if replayed_root.as_bytes() != final_root.as_slice() {
        violations.push("the replayed Merkle root is not the nodes' root".into());
    }
    if final_size > 0 && chain.head().map(|h| h.as_bytes().to_vec()) != Some(final_head) {
        violations.push("the replayed chain head is not the nodes' head".into());
    }

    // Every acknowledged event exactly once, where its receipt said; every
    // unacknowledged one at most once.
    for (id, (seq, hash)) in &acks {
        match by_id.get(id).map(Vec::as_slice) {
            None | Some([]) => {
                violations.push(format!("{id} was acknowledged at seq {seq} and is lost"))
            }
            Some([(s, h)]) if s == seq && &h.to_hex() == hash => {}
            Some([(s, h)]) => violations.push(format!(
                "{id} was acknowledged at seq {seq} ({hash}) but is at seq {s} ({h})"
            )),
            Some(many) => violations.push(format!("{id} appears {} times", many.len())),
        }
    }
    for (id, places) in &by_id {
        if !invoked.contains(id) {
            violations.push(format!("{id} is in the log but no client sent it"));
        } else if places.len() > 1 && !acks.contains_key(id) {
            violations.push(format!("{id} appears {} times", places.len()));
        }
    }

    // Checkpoints: quorum-signed by the voters of their time, one root per
    // size, all consistent with the end.
    let final_root_hash = Hash::from_slice(&final_root).unwrap_or_default();
    let mut roots: BTreeMap<u64, BTreeSet<Hash>> = BTreeMap::new();
    let mut previous_keys: Vec<String> = Vec::new();
    // The last key set of a settled membership (as many voters as nodes). A
    // replacement passes through a joint membership whose voters (both
    // halves, {1, 3, 103} and {1, 3, 104}) are all the keys a status shows;
    // a checkpoint recorded then carries a majority of each half, which is
    // not a majority of all four, but is one of the settled set before.
    let mut settled_keys: Vec<String> = Vec::new();
    for op in &ops {
        let Op::Checkpoint {
            size, note, keys, ..
        } = op
        else {
            continue;
        };
        summary.checkpoints_seen += 1;
        let verify_with = |keys: &[String]| {
            // A key that does not parse fails the whole set: dropping it would
            // lower the majority.
            let keys: Vec<NoteKey> = keys
                .iter()
                .map(|k| NoteKey::parse(k))
                .collect::<Result<_, _>>()
                .ok()?;
            CheckpointVerifier::majority(ORIGIN, keys)
                .ok()
                .and_then(|v| v.verify(note).ok())
        };
        // Fetched around a membership change, the keys may be one step ahead.
        let verified = verify_with(keys)
            .or_else(|| verify_with(&previous_keys))
            .or_else(|| verify_with(&settled_keys));
        if !keys.is_empty() {
            previous_keys = keys.clone();
        }
        if keys.len() == cluster.nodes.len() {
            settled_keys = keys.clone();
        }
        let Some(verified) = verified else {
            violations.push(format!(
                "a checkpoint of size {size} is not signed by a quorum of the voters"
            ));
            continue;
        };
        let c = verified.checkpoint;
        roots.entry(c.size).or_default().insert(c.root);
        match client.consistency_proof(c.size, final_size).await {
            Ok(p) => {
                if let Err(e) =
                    verify_consistency(c.size, final_size, &c.root, &final_root_hash, &p.proof)
                {
                    violations.push(format!(
                        "the checkpoint of size {} is not consistent with the final log: {e}",
                        c.size
                    ));
                }
            }
            Err(e) => violations.push(format!("no consistency proof from {}: {e}", c.size)),
        }
    }
    for (size, set) in roots {
        if set.len() > 1 {
            violations.push(format!(
                "{} different quorum-signed roots for size {size}",
                set.len()
            ));
        }
    }
    summary.violations = violations;
    summary
}

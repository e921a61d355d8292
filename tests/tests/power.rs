//! Power cuts (issue #18): every node's data directory is mounted through the
//! fault file system (`tests/faultfs`), which keeps only what was made
//! durable. A cut kills the nodes and takes away the rest, cleanly or torn
//! (a random part of the unsynced pages and names survives).
//!
//! What must hold after every cut, whoever lost power: every node starts by
//! itself, the cluster elects a leader and takes appends, every acknowledged
//! event is there exactly once with the seq and hash it was acknowledged with,
//! and every node holds the same history.
//!
//! A torn cut can leave a node's WAL damaged before its end, in the records
//! written after the last sync; RocksDB then refuses to replay it
//! ("Corruption: checksum mismatch", first seen with `Cut::Torn { seed: 5 }`
//! after eight whole-cluster cuts). The store tells that damage from damage
//! to synced writes, replays up to it and keeps the whole synced writes past
//! it (`Db::open` in crates/store); `Cut::Hole` makes that damage on every
//! node at once.

use std::sync::Arc;
use std::time::Duration;

use veritrail_faultfs::Cut;
use veritrail_tests::load::{
    Acked, Load, SOURCE, every_node_back_and_in_step, nothing_acknowledged_is_lost, on_fault_disks,
};
use veritrail_tests::{Cluster, ClusterOptions, sdk_event, veritraild, wait_for_opt};

/// Cuts the power of `which` while writers append, then checks.
async fn cut_under_load(
    cluster: &mut Cluster,
    which: &[usize],
    cut: Cut,
    acked: &Acked,
    what: &str,
) {
    let client = cluster.sdk();
    let load = Load::start(&client, acked, what).await;
    let reports = cluster.power_cut(which, cut);
    eprintln!("{what}: {reports:?}");
    // Writers retry through the cut until the cluster is back.
    let after_cut = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
    let resumed = wait_for_opt(Duration::from_secs(60), || async {
        (acked.lock().unwrap_or_else(|p| p.into_inner()).len() >= after_cut + 20).then_some(())
    })
    .await;
    if resumed.is_none() {
        panic!(
            "{what}: no appends acknowledged within 60 s of the cut\n{}",
            cluster.describe().await
        );
    }
    load.stop().await;
    for node in &mut cluster.nodes {
        assert!(
            !node.has_exited(),
            "{what}: node {} stopped after the cut:\n{}",
            node.id,
            std::fs::read_to_string(&node.log_path)
                .map(|log| log.lines().rev().take(30).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default()
        );
    }
    every_node_back_and_in_step(cluster, what).await;
    nothing_acknowledged_is_lost(&client, acked, what).await;
}

/// The whole cluster loses power at once, again and again, under load:
/// cleanly (every unsynced byte and name lost) and torn (a random part of
/// them kept). Nothing acknowledged is lost, nothing appears twice, and the
/// cluster comes back by itself every time. (The first run of this test lost
/// every acknowledged event: the database directory's own name was never
/// synced into the data directory.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_loses_power_and_comes_back_with_everything_acknowledged() {
    let mut cluster = on_fault_disks().await;
    let acked: Acked = Arc::default();
    let all = [0, 1, 2];
    let cuts = (1..=4).flat_map(|seed| [Cut::Torn { seed }, Cut::Clean]);
    for (round, cut) in cuts.enumerate() {
        cut_under_load(
            &mut cluster,
            &all,
            cut,
            &acked,
            &format!("round {round} ({cut:?})"),
        )
        .await;
    }
}

/// A three-node cluster on fault disks whose every WAL was torn by a hole
/// cut `rounds` times under load (`Cut::Hole`), each time checked.
async fn holes_under_load(rounds: usize) -> (Cluster, Acked) {
    let mut cluster = on_fault_disks().await;
    let acked: Acked = Arc::default();
    for round in 0..rounds {
        cut_under_load(
            &mut cluster,
            &[0, 1, 2],
            Cut::Hole,
            &acked,
            &format!("hole {round}"),
        )
        .await;
    }
    (cluster, acked)
}

/// Every node's WAL is torn in the middle of what it wrote since its last
/// sync (the first unsynced page lost, every later one kept), at once, under
/// load, three times: RocksDB alone refused to open all three nodes. Every
/// node now replays up to the damage, says so, keeps a copy of the damaged
/// WAL, and loses nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_torn_after_its_last_sync_on_every_node_costs_nothing() {
    let (cluster, _) = holes_under_load(3).await;
    let recovered = (0..cluster.nodes.len())
        .filter(|&i| cluster.log_tail(i).contains("replayed up to the damage"))
        .count();
    eprintln!("{recovered} of 3 nodes replayed a torn WAL up to the damage in their last start");
}

/// As above, with the nodes left down after the last cut: `fsck` of a torn
/// WAL says what the node will do (exit 1, "damaged: the write-ahead log ...
/// as a power cut leaves it"), and then the nodes start and lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_of_a_torn_wal_says_what_the_node_will_do_and_nothing_is_lost() {
    let (mut cluster, acked) = holes_under_load(1).await;
    let client = cluster.sdk();
    let load = Load::start(&client, &acked, "before the last hole").await;
    let reports = cluster.power_off(&[0, 1, 2], Cut::Hole);
    eprintln!("the last hole: {reports:?}");
    load.stop().await;
    let mut torn = 0;
    for node in &cluster.nodes {
        let out = std::process::Command::new(veritraild())
            .args(["fsck", "--data-dir"])
            .arg(&node.data_dir)
            .output()
            .expect("run fsck");
        let text = String::from_utf8_lossy(&out.stdout);
        let is_torn = text.contains("damaged: the write-ahead log");
        // Clean, or torn past the last whole synced write and nothing else.
        assert!(
            out.status.success()
                || (is_torn && out.status.code() == Some(1) && !text.contains("seq ")),
            "fsck of node {}: {text}{}",
            node.id,
            String::from_utf8_lossy(&out.stderr)
        );
        torn += usize::from(is_torn);
    }
    eprintln!("fsck found {torn} of 3 WALs torn after their last sync");
    for i in 0..3 {
        cluster.restart(i);
    }
    // An append acknowledged now was committed by the new leader, after
    // everything before it: what the check reads is then all applied. (Without
    // it the check once read the log before the new leader had committed the
    // last entries of the term before, and took them for lost.)
    client
        .append(sdk_event(SOURCE, "after-fsck"))
        .await
        .expect("the cluster takes appends again");
    every_node_back_and_in_step(&cluster, "after fsck").await;
    nothing_acknowledged_is_lost(&client, &acked, "after fsck").await;
}

/// One node, then a majority, lose power while the others keep going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_or_a_majority_loses_power_and_catches_up() {
    let mut cluster = on_fault_disks().await;
    let acked: Acked = Arc::default();
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    cut_under_load(&mut cluster, &[leader], Cut::Clean, &acked, "the leader").await;
    cut_under_load(&mut cluster, &[follower], Cut::Clean, &acked, "a follower").await;
    let leader = cluster.leader().await;
    let majority = [leader, (leader + 1) % 3];
    cut_under_load(&mut cluster, &majority, Cut::Clean, &acked, "a majority").await;
}

/// Damage before the WAL's last synced write is not a power cut's: replaying
/// up to it would forget synced writes, so the node still refuses to start,
/// says that a synced write past the damage is damaged, and changes nothing:
/// it refuses again at the next start. (Bytes flipped an eighth of the way
/// into a stopped follower's WAL, with hundreds of synced Raft appends after.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_the_last_synced_write_is_refused() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    for n in 0..200 {
        client
            .append(sdk_event(SOURCE, &format!("before-{n}")))
            .await
            .expect("append");
    }
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    veritrail_tests::damage_wal(&cluster.nodes[victim].data_dir);
    cluster.restart(victim);
    assert!(
        cluster.wait_exited(victim, Duration::from_secs(30)).await,
        "the node started on a WAL damaged before synced writes"
    );
    let log = std::fs::read_to_string(&cluster.nodes[victim].log_path).expect("log");
    assert!(
        log.contains("and so is a synced write past the damage"),
        "{}",
        cluster.log_tail(victim)
    );
    cluster.restart(victim);
    assert!(
        cluster.wait_exited(victim, Duration::from_secs(30)).await,
        "the node started on its damaged WAL the second time"
    );
    client
        .append(sdk_event(SOURCE, "after"))
        .await
        .expect("the two others go on");
}

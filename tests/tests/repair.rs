//! A damaged replica heals itself (issue #18, item 7): with `repair.auto`, a
//! node whose data fails its checks on open moves it aside, rejoins empty
//! under its own identity, receives the log again, and votes only once it
//! holds its leader's log (crates/server/src/repair.rs says why).

use std::sync::Arc;
use std::time::Duration;

use veritrail_tests::load::{
    Acked, Load, acked_count, appends_go_on, every_node_back_and_in_step,
    nothing_acknowledged_is_lost,
};
use veritrail_tests::{Cluster, ClusterOptions, damage_wal, veritraild, wait_for, wait_for_opt};

async fn repairing_cluster() -> Cluster {
    Cluster::start(
        3,
        ClusterOptions {
            extra_toml: "[repair]\nauto = true\n".into(),
            metrics: true,
            ..ClusterOptions::default()
        },
    )
    .await
}

/// Waits for node `i`'s log to say `what`.
async fn logged(cluster: &Cluster, i: usize, what: &str) {
    let path = cluster.nodes[i].log_path.clone();
    let found = wait_for_opt(Duration::from_secs(60), || async {
        std::fs::read_to_string(&path)
            .ok()?
            .contains(what)
            .then_some(())
    })
    .await;
    if found.is_none() {
        panic!(
            "node {} did not log {what:?} within 60 s:\n{}\n{}",
            cluster.nodes[i].id,
            cluster.log_tail(i),
            cluster.describe().await
        );
    }
}

/// `veritraild repair` or `fsck` on a data directory: exit code and output.
fn tool(args: &[&str], data_dir: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(veritraild())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run veritraild");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A follower's WAL is damaged before its last synced write while it is
/// stopped (it refused to start on such data, waiting for a person). With
/// `repair.auto` it moves the data aside, starts empty, catches up, says the
/// repair is done, and passes `fsck`; nothing acknowledged is lost. Then the
/// same by hand: `veritraild repair` refuses a running node, repairs a
/// stopped one, and the node catches up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_follower_repairs_itself_and_catches_up() {
    let mut cluster = repairing_cluster().await;
    let client = cluster.sdk();
    let acked: Acked = Arc::default();
    let load = Load::start(&client, &acked, "before the damage").await;
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    cluster.kill(victim);
    let data_dir = cluster.nodes[victim].data_dir.clone();
    damage_wal(&data_dir);
    cluster.restart(victim);
    logged(&cluster, victim, "the damaged data was moved aside").await;
    // Its vote came through the repair (the copy outside the database).
    logged(&cluster, victim, "the database takes the vote of its copy").await;
    logged(&cluster, victim, "repair done").await;
    assert!(!cluster.nodes[victim].has_exited(), "the node stopped");
    let aside: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("damaged-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("db").is_dir(), "the damaged database is kept");
    assert!(!data_dir.join("repairing").exists(), "the marker is left");
    let metrics = cluster.scrape(victim).await.expect("metrics");
    assert!(metrics.contains("veritrail_repairing 0"), "metric");
    load.stop().await;
    every_node_back_and_in_step(&cluster, "repaired").await;
    nothing_acknowledged_is_lost(&client, &acked, "repaired").await;

    // By hand: not while the node runs; then as above.
    let (code, out) = tool(&["repair"], &data_dir);
    assert_eq!(code, Some(1), "repair of a running node: {out}");
    assert!(out.contains("running"), "{out}");
    cluster.terminate(victim);
    assert!(cluster.wait_exited(victim, Duration::from_secs(30)).await);
    let (code, out) = tool(&["fsck"], &data_dir);
    assert_eq!(code, Some(0), "fsck of the repaired node: {out}");
    let (code, out) = tool(&["repair"], &data_dir);
    assert_eq!(code, Some(0), "repair by hand: {out}");
    assert!(data_dir.join("repairing").exists());
    let load = Load::start(&client, &acked, "after the repair by hand").await;
    cluster.restart(victim);
    wait_for(
        Duration::from_secs(60),
        "the second repair to finish",
        || async { (!data_dir.join("repairing").exists()).then_some(()) },
    )
    .await;
    load.stop().await;
    every_node_back_and_in_step(&cluster, "repaired by hand").await;
    nothing_acknowledged_is_lost(&client, &acked, "repaired by hand").await;
}

/// The hazard of a repair: events committed on the leader and one follower
/// only (the other paused), then that follower's data damaged and the leader
/// down. The repaired follower, empty, must not vote the lagging one in: it
/// would lead without those events, and cut them from the old leader's log
/// when it returned. The repairing node declines; no leader is elected
/// until the old leader is back, and nothing acknowledged is lost. (With the
/// repairing node voting, this lost every event of the pause.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repairing_node_does_not_vote_until_it_holds_the_leaders_log() {
    let mut cluster = repairing_cluster().await;
    let client = cluster.sdk();
    let acked: Acked = Arc::default();
    let leader = cluster.leader().await;
    let (lagging, repaired) = ((leader + 1) % 3, (leader + 2) % 3);
    let load = Load::start(&client, &acked, "all up").await;
    cluster.pause(lagging);
    let from = acked_count(&acked);
    appends_go_on(&cluster, &acked, 100, "the leader and one follower").await;
    load.stop().await;
    eprintln!(
        "{} events acknowledged while node {} was paused",
        acked_count(&acked) - from,
        cluster.nodes[lagging].id
    );

    cluster.kill(repaired);
    damage_wal(&cluster.nodes[repaired].data_dir);
    cluster.kill(leader);
    cluster.resume(lagging);
    cluster.restart(repaired);
    logged(
        &cluster,
        repaired,
        "declined a vote: this node is repairing",
    )
    .await;
    for i in [lagging, repaired] {
        let status = cluster.status(i).await.expect("status");
        assert_ne!(status.role, "leader", "node {} leads", cluster.nodes[i].id);
    }

    cluster.restart(leader);
    logged(&cluster, repaired, "repair done").await;
    every_node_back_and_in_step(&cluster, "the old leader back").await;
    nothing_acknowledged_is_lost(&client, &acked, "the old leader back").await;
}

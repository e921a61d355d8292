//! The bounded fault-injection runs of `make test`: kills, pauses and
//! partitions under a seeded schedule while eight clients append, two read
//! back and one fetches checkpoints; then the checker (`tests/src/chaos.rs`).
//!
//! `VERITRAIL_CHAOS_SECS` runs longer (a soak) and `VERITRAIL_CHAOS_SEED`
//! replays a schedule, for example:
//! `VERITRAIL_CHAOS_SECS=1800 cargo nextest run -p veritrail-tests -E 'test(three_nodes)'`.

use veritrail_tests::chaos::{ChaosConfig, Summary, run};

fn assert_clean(summary: &Summary) {
    eprintln!(
        "chaos summary: {}",
        serde_json::to_string_pretty(summary).unwrap_or_default()
    );
    // A run that checked nothing passes nothing.
    assert!(
        summary.acknowledged > 0,
        "nothing was acknowledged: the cluster never served"
    );
    assert!(summary.reads > 0, "no acknowledged event was read back");
    assert!(summary.checkpoints_seen > 0, "no checkpoint was collected");
    if !summary.partitions {
        eprintln!(
            "WARNING: no partitions were injected (needs root); kills, pauses and disk faults only"
        );
    }
    assert!(
        summary.violations.is_empty(),
        "{} violations (seed {}, history {:?}): {:#?}",
        summary.violations.len(),
        summary.seed,
        summary.history_file,
        summary.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_duplicate_and_fork_nothing_under_faults() {
    assert_clean(&run(&ChaosConfig::from_env(45, 3)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_lose_duplicate_and_fork_nothing_under_faults() {
    assert_clean(&run(&ChaosConfig::from_env(30, 5)).await);
}

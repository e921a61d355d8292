//! The bounded fault-injection run of `make test`: kills and pauses under a
//! seeded schedule while eight clients append, two read back and one fetches
//! checkpoints; then the checker. `VERITRAIL_CHAOS_SECS` runs longer (a soak),
//! `VERITRAIL_CHAOS_SEED` replays a schedule.

use veritrail_tests::chaos::{ChaosConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_event_is_lost_duplicated_or_forked_under_faults() {
    let config = ChaosConfig::from_env(45);
    let summary = run(&config).await;
    eprintln!(
        "chaos summary: {}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    assert!(
        summary.acknowledged > 0,
        "nothing was acknowledged: the cluster never served"
    );
    assert!(
        summary.violations.is_empty(),
        "{} violations (seed {}, history {:?}): {:#?}",
        summary.violations.len(),
        summary.seed,
        summary.history_file,
        summary.violations
    );
}

//! docs/AUDITING.md, run line by line as an outside auditor would: every line
//! of its `sh` blocks, in order, by bash in a scratch directory, against a
//! three-node cluster that submits its checkpoints to one external witness.
//! The auditor's only inputs are the witness's verifier key (from the
//! witness's operator) and the voters' keys the guide fetches once.

use std::path::Path;
use std::time::Duration;

use veritrail_core::cosignature::CosignerKey;
use veritrail_core::note::SignedNote;
use veritrail_tests::witness::{WitnessProcess, witness_config, witness_key};
use veritrail_tests::{
    Cluster, ClusterOptions, bash_line, expect_success, free_port, sdk_event, shell_lines, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_auditing_guide_works() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let guide = std::fs::read_to_string(repo.join("docs/AUDITING.md")).expect("AUDITING.md");
    let lines = shell_lines(&guide, None);
    assert!(lines.len() >= 10, "the guide lost its commands: {lines:?}");

    let scratch = tempfile::tempdir().expect("scratch dir");
    let witness_dir = tempfile::tempdir().expect("the witness's own directory");
    let (key_file, vkey) = witness_key(witness_dir.path(), "witness.test/auditing");
    // What the witness's operator hands the auditor.
    std::fs::write(scratch.path().join("witness.vkey"), format!("{vkey}\n")).expect("vkey");

    let addr = format!("127.0.0.1:{}", free_port());
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: format!("\n[[witness]]\nurl = \"http://{addr}\"\nkey = \"{vkey}\"\n"),
            ..ClusterOptions::default()
        },
    )
    .await;
    let log_keys = cluster.voter_keys().await;
    let config = witness_config(witness_dir.path(), &addr, &key_file, &log_keys);
    let _witness = WitnessProcess::start(&config, &addr).await;

    // A log to audit, its latest checkpoint cosigned.
    let client = cluster.sdk();
    let events = (0..40)
        .map(|i| sdk_event("billing", &format!("invoice-{i}")))
        .collect();
    client.append_batch(events).await.expect("append");
    let cosigner = CosignerKey::parse(&vkey).expect("vkey");
    wait_for(
        Duration::from_secs(30),
        "the checkpoint of 40, cosigned",
        || async {
            let checkpoint = client.checkpoint(None).await.ok()?;
            let note = SignedNote::parse(&checkpoint.note).ok()?;
            (checkpoint.tree_size == 40
                && note
                    .signatures()
                    .iter()
                    .any(|l| cosigner.verify(note.text(), l).is_ok()))
            .then_some(())
        },
    )
    .await;

    let env = cluster.cli_env();
    for line in &lines {
        let child = bash_line(line, scratch.path(), &env).spawn().expect("bash");
        expect_success(child, line).await;
    }

    // The guide's files are what it says they are.
    let policy = std::fs::read_to_string(scratch.path().join("auditor.policy")).expect("policy");
    assert_eq!(
        policy.lines().filter(|l| l.starts_with("log ")).count(),
        3,
        "{policy}"
    );
    assert!(policy.contains(&format!("witness W1 {vkey}")), "{policy}");
    for file in [
        "audit.json",
        "entry-0.tlog-proof",
        "evidence.vtb",
        "tiles/checkpoint",
    ] {
        assert!(scratch.path().join(file).exists(), "{file} was not written");
    }
}

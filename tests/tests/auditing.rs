//! docs/AUDITING.md, run line by line as an outside auditor would: every line
//! of its `sh` blocks, in order, by bash in a scratch directory, against a
//! three-node cluster that submits its checkpoints to one external witness.
//! The auditor's only inputs are the witness's verifier key (from the
//! witness's operator) and the voters' keys the guide fetches once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use veritrail_core::cosignature::CosignerKey;
use veritrail_core::note::SignedNote;
use veritrail_tests::{
    Cluster, ClusterOptions, ORIGIN, free_port, sdk_event, shell_lines, veritrail,
    veritrail_witness, wait_for,
};

/// A witness process, stopped when dropped.
struct Witness(Child);

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let key_file = witness_dir.path().join("witness.key");
    let made = Command::new(veritrail_witness())
        .args(["keygen", "--name", "witness.test/auditing", "-o"])
        .arg(&key_file)
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{made:?}");
    let vkey = String::from_utf8(made.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
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
    let config = witness_dir.path().join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nkey_file = \"{}\"\nstate_file = \"{}\"\n\n[[log]]\norigin = \"{ORIGIN}\"\nkeys = {log_keys:?}\n",
            key_file.display(),
            witness_dir.path().join("state.json").display()
        ),
    )
    .expect("config");
    let _witness = Witness(
        Command::new(veritrail_witness())
            .args(["run", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the witness"),
    );

    // A log to audit, its latest checkpoint cosigned.
    let client = cluster.sdk();
    let events = (0..40)
        .map(|i| sdk_event("billing", &format!("invoice-{i}")))
        .collect();
    client.append_batch(events).await.expect("append");
    let witness_key = CosignerKey::parse(&vkey).expect("vkey");
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
                    .any(|l| witness_key.verify(note.text(), l).is_ok()))
            .then_some(())
        },
    )
    .await;

    let bin_dir = veritrail().parent().expect("bin dir").to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = cluster.cli_env();
    for line in &lines {
        let child = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", line])
            .current_dir(scratch.path())
            .env("PATH", &path)
            .env("VERITRAIL_CLI_CONFIG", "/nonexistent/veritrail/config.toml")
            .envs(env.0.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("bash");
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`{line}` did not finish"))
            .expect("output");
        assert!(
            output.status.success(),
            "`{line}` failed with {:?}\nstdout: {}\nstderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
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

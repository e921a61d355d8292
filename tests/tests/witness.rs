//! `veritrail-witness`, a C2SP tlog-witness, run as its own process against
//! the checkpoints of a real cluster: it cosigns an advance proved
//! consistent, refuses a rollback, a fork, a bad proof, an unknown log and a
//! checkpoint without a quorum of the log's keys with the spec's status
//! codes, and remembers what it cosigned across a restart. Its
//! cosignatures are checked by Go's `sumdb/note` with a cosignature/v1
//! verifier written from the spec (`tests/go/verify_cosignature.go`)
//! (issue #19).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use veritrail_core::Checkpoint;
use veritrail_core::cosignature::{Cosigner, CosignerKey};
use veritrail_core::note::{NoteSigner, SignedNote};
use veritrail_tests::witness::{WitnessProcess, witness_config, witness_key};
use veritrail_tests::{
    Cluster, ClusterOptions, HttpAnswer, ORIGIN, build_go_program, free_port, http_post,
    metric_sample, run_cli, sdk_event, wait_for,
};

const WITNESS_NAME: &str = "witness.test/w1";

/// Appends events up to `size` and returns the co-signed checkpoint of that
/// size (its signed note).
async fn checkpoint_at(cluster: &Cluster, from: u64, size: u64) -> String {
    let client = cluster.sdk();
    let events = (from..size)
        .map(|i| sdk_event("witnessed", &format!("e-{i}")))
        .collect();
    client.append_batch(events).await.expect("append");
    wait_for(
        Duration::from_secs(30),
        "a checkpoint of the size",
        || async {
            let checkpoint = client.checkpoint(None).await.ok()?;
            (checkpoint.tree_size == size).then_some(checkpoint.note)
        },
    )
    .await
}

fn status_and_body(answer: &HttpAnswer) -> (u16, &str) {
    (answer.status, answer.body.as_str())
}

/// The nodes' own signing keys, to forge what a quorum of compromised
/// voters could sign: a fork the witness must refuse.
fn node_signers(cluster: &Cluster) -> Vec<NoteSigner> {
    cluster
        .nodes
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(n.data_dir.join("node.key")).expect("node key");
            NoteSigner::parse(text.trim()).expect("a signer key")
        })
        .collect()
}

fn signed_by(checkpoint: &Checkpoint, signers: &[NoteSigner]) -> String {
    let mut note = SignedNote::new(&checkpoint.body()).expect("note");
    for signer in signers {
        note.sign(signer).expect("sign");
    }
    note.to_string()
}

/// Checks a cosigned checkpoint with the Go verifier: whether it passed, and
/// what it said.
fn go_check(go: &Path, dir: &Path, log_keys: &[String], vkey: &str, note: &str) -> (bool, String) {
    let keys_file = dir.join("log-keys.txt");
    std::fs::write(&keys_file, log_keys.join("\n")).expect("keys");
    let note_file = dir.join("cosigned.txt");
    std::fs::write(&note_file, note).expect("note");
    let out = Command::new(go)
        .arg(format!("-note={}", note_file.display()))
        .arg(format!("-log-keys={}", keys_file.display()))
        .args(["-log-quorum=2", &format!("-witness={vkey}")])
        .output()
        .expect("run the Go check");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("Go's check: {said}");
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosigns_consistent_checkpoints_and_refuses_forks_and_rollbacks() {
    let dir = tempfile::TempDir::new().expect("dir");
    let go = build_go_program(&["go/verify_cosignature.go", "go/policy.go"], dir.path());
    let cluster = Cluster::start(3, ClusterOptions::default()).await;

    let (key_file, vkey) = witness_key(dir.path(), WITNESS_NAME);
    let witness_key = CosignerKey::parse(&vkey).expect("a witness verifier key");
    let log_keys = cluster.voter_keys().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let config = witness_config(dir.path(), &addr, &key_file, &log_keys);
    let witness = WitnessProcess::start(&config, &addr).await;

    let a = checkpoint_at(&cluster, 0, 40).await;
    let b = checkpoint_at(&cluster, 40, 100).await;
    let proof: Vec<String> = cluster
        .sdk()
        .consistency_proof(40, 100)
        .await
        .expect("consistency proof")
        .proof
        .iter()
        .map(|h| h.to_base64())
        .collect();

    // The first checkpoint of a log it never saw: from 0, no proof.
    let first = witness.add(0, &[], &a).await;
    assert_eq!(first.status, 200, "{first:?}");
    let mut cosigned = SignedNote::parse(&a).expect("checkpoint");
    let line = SignedNote::parse(&format!("{}\n{}", cosigned.text(), first.body))
        .expect("the answer is signature lines")
        .signatures()[0]
        .clone();
    witness_key
        .verify(cosigned.text(), &line)
        .expect("the cosignature verifies");
    cosigned.add_signature(line).expect("add");

    // The same again is no advance, and fine; from 0 again is not.
    assert_eq!(witness.add(40, &[], &a).await.status, 200);
    let stale = witness.add(0, &[], &b).await;
    assert_eq!(status_and_body(&stale), (409, "40\n"), "{stale:?}");
    assert_eq!(stale.header("content-type"), Some("text/x.tlog.size"));

    // An advance with its consistency proof.
    let advanced = witness.add(40, &proof, &b).await;
    assert_eq!(advanced.status, 200, "{advanced:?}");

    // A rollback: the old size beyond the checkpoint's, or a stale old size.
    assert_eq!(witness.add(100, &[], &a).await.status, 400);
    assert_eq!(
        status_and_body(&witness.add(40, &[], &a).await),
        (409, "100\n")
    );

    // A fork signed by a quorum of the log's own keys: the same size with
    // another root, and a larger tree that does not extend the cosigned one.
    let signers = node_signers(&cluster);
    let mut forked = Checkpoint::parse(SignedNote::parse(&b).expect("b").text()).expect("body");
    forked.root = veritrail_core::Hash([9; 32]);
    let fork = witness
        .add(100, &[], &signed_by(&forked, &signers[..2]))
        .await;
    assert_eq!(fork.status, 409, "{fork:?}");
    assert!(fork.body.contains("another root"), "{fork:?}");
    forked.size = 120;
    let bad_proof = witness
        .add(100, &proof, &signed_by(&forked, &signers[..2]))
        .await;
    assert_eq!(bad_proof.status, 422, "{bad_proof:?}");

    // Not enough of the log's keys, a log it does not follow, nonsense.
    let mut one = SignedNote::parse(&b).expect("b");
    let only = one.signatures()[0].clone();
    one = SignedNote::new(one.text()).expect("note");
    one.add_signature(only).expect("one signature");
    assert_eq!(witness.add(100, &[], &one.to_string()).await.status, 403);
    let mut elsewhere = forked.clone();
    elsewhere.origin = "elsewhere.test/log".into();
    assert_eq!(
        witness
            .add(0, &[], &signed_by(&elsewhere, &signers))
            .await
            .status,
        404
    );
    let nonsense = http_post(&addr, "/add-checkpoint", "old 0\nnot a proof").await;
    assert_eq!(nonsense.status, 400, "{nonsense:?}");

    // It remembers across a restart.
    let witness = witness.restart().await;
    assert_eq!(
        status_and_body(&witness.add(0, &[], &a).await),
        (409, "100\n")
    );

    // Go's note package, with a cosignature/v1 verifier written from the
    // spec, checks the cosigned checkpoint; and refuses it altered.
    let Some(go) = go else { return };
    let go_check = |note: &str| go_check(&go, dir.path(), &log_keys, &vkey, note);
    let (passed, said) = go_check(&cosigned.to_string());
    assert!(passed, "{said}");
    assert!(
        said.starts_with(&format!(
            "OK: 3 log signatures, cosigned by {WITNESS_NAME} at "
        )),
        "{said}"
    );
    let mut altered = cosigned.clone();
    let mut line = altered.signatures()[3].clone();
    line.signature[20] ^= 1;
    altered.add_signature(line).expect("replace");
    let (passed, said) = go_check(&altered.to_string());
    assert!(!passed, "an altered cosignature passed: {said}");
}

/// Nodes submit each new checkpoint to the witnesses in their `[[witness]]`
/// list, retrying while a witness is down, and serve the checkpoint with the
/// witness's cosignature once they hold it (issue #19). The witness starts
/// after the cluster: its config needs the nodes' keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_submit_checkpoints_to_a_witness_and_serve_its_cosignature() {
    let dir = tempfile::TempDir::new().expect("dir");
    let go = build_go_program(&["go/verify_cosignature.go", "go/policy.go"], dir.path());
    let (key_file, vkey) = witness_key(dir.path(), WITNESS_NAME);
    let witness_key = CosignerKey::parse(&vkey).expect("a witness verifier key");
    let addr = format!("127.0.0.1:{}", free_port());

    let cluster = Cluster::start(
        3,
        ClusterOptions {
            metrics: true,
            extra_toml: format!("\n[[witness]]\nurl = \"http://{addr}\"\nkey = \"{vkey}\"\n"),
            ..ClusterOptions::default()
        },
    )
    .await;
    checkpoint_at(&cluster, 0, 50).await;
    // The witness is not there yet: every node counts its failed attempts.
    for i in 0..3 {
        wait_for(
            Duration::from_secs(20),
            "a failed submission counted",
            || async {
                let text = cluster.scrape(i).await?;
                let failed = metric_sample(
                    &text,
                    "veritrail_witness_submissions_total",
                    "outcome=\"unreachable\"",
                )?;
                (failed >= 1.0).then_some(())
            },
        )
        .await;
    }

    let log_keys = cluster.voter_keys().await;
    let config = witness_config(dir.path(), &addr, &key_file, &log_keys);
    let witness = WitnessProcess::start(&config, &addr).await;

    // Then 50 more entries: the nodes advance the witness by a consistency
    // proof, and serve the checkpoint of 100 cosigned.
    checkpoint_at(&cluster, 50, 100).await;
    let client = cluster.sdk();
    let cosigned = wait_for(
        Duration::from_secs(30),
        "the checkpoint of 100 served with the witness's cosignature",
        || async {
            let checkpoint = client.checkpoint(Some(100)).await.ok()?;
            let note = SignedNote::parse(&checkpoint.note).ok()?;
            note.signatures()
                .iter()
                .any(|line| witness_key.verify(note.text(), line).is_ok())
                .then_some(checkpoint.note)
        },
    )
    .await;
    // The witness followed: it holds 100, and refuses to go back to 50.
    let back = witness.add(0, &[], &cosigned).await;
    assert_eq!(status_and_body(&back), (409, "100\n"), "{back:?}");
    // Every node caught the witness up and says so.
    for i in 0..3 {
        wait_for(Duration::from_secs(20), "no witness lag", || async {
            let text = cluster.scrape(i).await?;
            let lag = metric_sample(&text, "veritrail_witness_lag_entries", WITNESS_NAME)?;
            let cosigned = metric_sample(
                &text,
                "veritrail_witness_submissions_total",
                "outcome=\"cosigned\"",
            )?;
            (lag == 0.0 && cosigned >= 1.0).then_some(())
        })
        .await;
    }

    // An auditor's trust policy (C2SP tlog-policy) naming the witness: the
    // CLI accepts the cosigned checkpoint, online and in a tlog-proof file;
    // a policy that also asks for a witness that never cosigned refuses both,
    // naming the quorum it missed.
    let write_policy = |name: &str, witnesses: &str| {
        let mut text = String::from("# the voters\n");
        for key in &log_keys {
            text.push_str(&format!("log {key}\n"));
        }
        text.push_str(witnesses);
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("policy");
        path.display().to_string()
    };
    let one = write_policy("one.policy", &format!("witness W1 {vkey}\nquorum W1\n"));
    let absent = Cosigner::from_seed("witness.test/w2", &[42; 32]).expect("w2");
    let both = write_policy(
        "both.policy",
        &format!(
            "witness W1 {vkey}\nwitness W2 {}\ngroup both all W1 W2\nquorum both\n",
            absent.public()
        ),
    );
    let env = cluster.cli_env();
    let out = run_cli(&env, &["verify", "--policy", &one], None).await;
    assert!(out.status.success(), "verify --policy: {out:?}");
    let out = run_cli(&env, &["verify", "--policy", &both], None).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("witness quorum \"both\" is not met"),
        "{said}"
    );
    let proof = dir.path().join("e7.tlog-proof").display().to_string();
    let out = run_cli(
        &env,
        &[
            "proof",
            "inclusion",
            "--seq",
            "7",
            "--tlog-proof",
            &proof,
            "--policy",
            &one,
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "proof inclusion --policy: {out:?}");
    let out = run_cli(&env, &["verify-proof", &proof, "--policy", &one], None).await;
    assert!(out.status.success(), "verify-proof --policy: {out:?}");
    let out = run_cli(&env, &["verify-proof", &proof, "--policy", &both], None).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let Some(go) = go else { return };
    let (passed, said) = go_check(&go, dir.path(), &log_keys, &vkey, &cosigned);
    assert!(passed, "{said}");

    // The Go tlog client reads the same policies (its own reader, written
    // from tlog-policy) and checks the tlog-proof file with them.
    let tiles_client = build_go_program(&["go/verify_tiles.go", "go/policy.go"], dir.path())
        .expect("Go built the cosignature check, so it builds this");
    let go_tlog_proof = |policy: &str| {
        let out = Command::new(&tiles_client)
            .arg(format!("-tlog-proof={proof}"))
            .arg(format!("-policy={policy}"))
            .arg(format!("-origin={ORIGIN}"))
            .output()
            .expect("run the Go tlog client");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("Go's tlog client: {said}");
        (out.status.success(), said)
    };
    let (passed, said) = go_tlog_proof(&one);
    assert!(
        passed && said.contains("tlog-proof: entry 7 in the tree of size 100"),
        "{said}"
    );
    let (passed, said) = go_tlog_proof(&both);
    assert!(!passed, "{said}");
    assert!(
        said.contains("the witness quorum both is not met"),
        "{said}"
    );
}

/// The fork every voter signs: the whole cluster is wiped (keys kept) and
/// writes another history. The voters' signatures on it are valid, so an
/// auditor who trusts the voters alone and never saw the first history takes
/// it. Two witnesses saw the first one: they refuse the forked checkpoint, and
/// an auditor whose trust policy asks for both cosignatures refuses it too
/// (issue #19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnesses_refuse_a_history_every_voter_rewrote_and_so_does_a_policy() {
    let dir = tempfile::TempDir::new().expect("dir");
    let names = ["witness.test/a", "witness.test/b"];
    let keys: Vec<(PathBuf, String)> = names.iter().map(|n| witness_key(dir.path(), n)).collect();
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let listed: String = keys
        .iter()
        .zip(&addrs)
        .map(|((_, vkey), addr)| {
            format!("\n[[witness]]\nurl = \"http://{addr}\"\nkey = \"{vkey}\"\n")
        })
        .collect();
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            metrics: true,
            extra_toml: listed,
            ..ClusterOptions::default()
        },
    )
    .await;
    let log_keys = cluster.voter_keys().await;
    let mut witnesses = Vec::new();
    for ((key_file, _), addr) in keys.iter().zip(&addrs) {
        let config = witness_config(dir.path(), addr, key_file, &log_keys);
        witnesses.push(WitnessProcess::start(&config, addr).await);
    }
    let mut policy = String::new();
    for key in &log_keys {
        policy.push_str(&format!("log {key}\n"));
    }
    policy.push_str(&format!(
        "witness A {}\nwitness B {}\ngroup both all A B\nquorum both\n",
        keys[0].1, keys[1].1
    ));
    let policy_file = dir.path().join("auditor.policy");
    std::fs::write(&policy_file, policy).expect("policy");
    let policy_arg = policy_file.display().to_string();
    let keys_arg = format!("--keys={}", log_keys.join(","));

    // The true history, cosigned by both witnesses.
    let true_note = checkpoint_at(&cluster, 0, 20).await;
    let witness_keys: Vec<CosignerKey> = keys
        .iter()
        .map(|(_, vkey)| CosignerKey::parse(vkey).expect("key"))
        .collect();
    let client = cluster.sdk();
    wait_for(
        Duration::from_secs(30),
        "both cosignatures of 20",
        || async {
            let note = SignedNote::parse(&client.checkpoint(Some(20)).await.ok()?.note).ok()?;
            witness_keys
                .iter()
                .all(|k| {
                    note.signatures()
                        .iter()
                        .any(|l| k.verify(note.text(), l).is_ok())
                })
                .then_some(())
        },
    )
    .await;
    let out = run_cli(
        &cluster.cli_env(),
        &["verify", "--policy", &policy_arg],
        None,
    )
    .await;
    assert!(
        out.status.success(),
        "the true history under the policy: {out:?}"
    );

    // Every node wiped but its key, and another history written.
    cluster.wipe_all_but_keys().await;
    let client = cluster.sdk();
    let forged = (0..30)
        .map(|i| sdk_event("witnessed", &format!("forged-{i}")))
        .collect();
    client.append_batch(forged).await.expect("append");
    let forged_note = wait_for(
        Duration::from_secs(30),
        "the forged checkpoint of 30",
        || async {
            let checkpoint = client.checkpoint(None).await.ok()?;
            (checkpoint.tree_size == 30).then_some(checkpoint.note)
        },
    )
    .await;

    // The nodes submit it; each witness refuses it (its proof from 20 does
    // not verify against the root it cosigned), and stays at 20.
    for i in 0..3 {
        wait_for(
            Duration::from_secs(30),
            "the witnesses' refusals counted",
            || async {
                let text = cluster.scrape(i).await?;
                let refused = |name: &str| {
                    metric_sample(
                        &text,
                        "veritrail_witness_submissions_total",
                        &format!("witness=\"{name}\",outcome=\"refused\""),
                    )
                };
                (refused(names[0])? >= 1.0 && refused(names[1])? >= 1.0).then_some(())
            },
        )
        .await;
    }
    for witness in &witnesses {
        let stays = witness.add(0, &[], &forged_note).await;
        assert_eq!(status_and_body(&stays), (409, "20\n"), "{stays:?}");
    }
    let served =
        SignedNote::parse(&client.checkpoint(None).await.expect("checkpoint").note).expect("note");
    assert_eq!(
        served.signatures().len(),
        3,
        "only the voters signed the fork: {served:?}"
    );
    assert_ne!(true_note, forged_note);

    // An auditor new to the log who trusts the voters alone takes the fork;
    // one with the policy refuses it, naming the missing cosignatures.
    let env = cluster.cli_env();
    let voters_only = run_cli(&env, &["verify", &keys_arg], None).await;
    assert!(voters_only.status.success(), "{voters_only:?}");
    let with_policy = run_cli(&env, &["verify", "--policy", &policy_arg], None).await;
    assert_eq!(with_policy.status.code(), Some(1), "{with_policy:?}");
    let said = String::from_utf8_lossy(&with_policy.stderr);
    assert!(
        said.contains("witness quorum \"both\" is not met"),
        "{said}"
    );
}

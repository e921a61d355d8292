//! The `veritrail` CLI as a user runs it: a real binary against a real
//! cluster, checked by its output and its documented exit codes (0 success,
//! 1 verification failed, 2 usage, 3 unavailable, 4 not found, 5 denied).

use std::process::Output;

use serde_json::Value;
use veritrail_client::{Advance, Client, Error, Verifier};
use veritrail_core::note::{NoteKey, NoteSigner, SignedNote};
use veritrail_tests::{
    CliEnv, Cluster, ClusterOptions, ORIGIN, run_cli as run, veritrail, veritraild, wait_for,
};

fn lines_of(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", explain(output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_verify_export_and_check_a_bundle_offline() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let endpoints = cluster.cli_env();
    let ep = &endpoints;

    // One event from flags.
    let out = run(
        ep,
        &[
            "--output",
            "json",
            "append",
            "--source",
            "billing",
            "--event-id",
            "inv-1",
            "--actor",
            "alice",
            "--action",
            "invoice.refund",
            "--resource",
            "invoice/1",
            "--outcome",
            "success",
            "--attr",
            "amount=42",
            "--payload",
            "{\"x\":1}",
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(lines_of(&out)[0]["seq"], 0);
    // An entry that does not exist is exit 4, not the 2 of a usage error.
    let out = run(ep, &["get", "--seq", "1000000"], None).await;
    assert_exit(&out, 4);

    // A thousand more as NDJSON on stdin, through the producer.
    let ndjson: String = (0..1000)
        .map(|n| {
            format!(
                "{{\"source\":\"{}\",\"event_id\":\"e{n}\",\"actor\":\"bob\",\"action\":\"doc.read\",\"resource\":\"doc/{n}\",\"outcome\":\"success\"}}\n",
                if n % 2 == 0 { "docs" } else { "wiki" }
            )
        })
        .collect();
    let out = run(
        ep,
        &["--output", "json", "append", "--stdin"],
        Some(ndjson.clone()),
    )
    .await;
    assert_exit(&out, 0);
    let receipts = lines_of(&out);
    assert_eq!(receipts.len(), 1000);
    assert!(receipts.iter().all(|r| r["duplicate"] == false));
    // The same input again writes nothing new.
    let out = run(ep, &["append", "--stdin"], Some(ndjson)).await;
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("appended 1000 events (1000 were already in the log)"),
        "{}",
        explain(&out)
    );

    let out = run(
        ep,
        &[
            "--output",
            "json",
            "get",
            "--source",
            "billing",
            "--event-id",
            "inv-1",
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let entry = &lines_of(&out)[0];
    assert_eq!(entry["event"]["attributes"]["amount"], "42");
    // Every time in nanoseconds has an RFC 3339 twin (#23, item 7).
    let stamp = entry["timestamp"].as_str().expect("an RFC 3339 timestamp");
    let parsed = humantime::parse_rfc3339(stamp).expect("RFC 3339");
    let ns = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    assert_eq!(
        entry["timestamp_ns"].as_u64().map(u128::from),
        Some(ns),
        "{entry}"
    );
    let out = run(
        ep,
        &[
            "--output", "json", "scan", "--source", "wiki", "--from", "1", "--limit", "7",
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let scanned = lines_of(&out);
    assert_eq!(scanned.len(), 7);
    assert!(scanned.iter().all(|e| e["event"]["source"] == "wiki"));
    // Filters on fields without an index: resource, outcome, principal (#23,
    // item 7), alone and with an indexed one.
    let scan = |filters: &'static [&'static str]| async move {
        let mut args = vec!["--output", "json", "scan"];
        args.extend_from_slice(filters);
        let out = run(ep, &args, None).await;
        assert_exit(&out, 0);
        lines_of(&out)
    };
    let found = scan(&["--resource", "doc/7", "--source", "wiki"]).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["event"]["event_id"], "e7");
    assert!(
        scan(&["--resource", "doc/7", "--source", "docs"])
            .await
            .is_empty()
    );
    assert_eq!(
        scan(&["--outcome", "success", "--actor", "bob"])
            .await
            .len(),
        1000
    );
    let mine = scan(&[
        "--principal",
        veritrail_tests::TEST_PRINCIPAL,
        "--limit",
        "3",
    ])
    .await;
    assert_eq!(mine.len(), 3);
    assert!(
        scan(&["--principal", "spiffe://veritrail.test/service/nobody"])
            .await
            .is_empty()
    );

    // Wait until a checkpoint covers everything.
    wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint of 1001 entries",
        || async {
            let out = run(ep, &["--output", "json", "checkpoint"], None).await;
            (out.status.success() && lines_of(&out)[0]["tree_size"] == 1001).then_some(())
        },
    )
    .await;

    // Verify on the client, then again incrementally from a trusted state.
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("trusted.json");
    let state_arg = state.to_str().expect("utf-8 path");
    let out = run(
        ep,
        &["--output", "json", "verify", "--trusted-state", state_arg],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let report = &lines_of(&out)[0];
    assert_eq!(report["entries_checked"], 1001, "{report}");
    let out = run(
        ep,
        &[
            "append",
            "--source",
            "billing",
            "--actor",
            "a",
            "--action",
            "b",
            "--resource",
            "c",
            "--outcome",
            "d",
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let report = wait_for(
        std::time::Duration::from_secs(30),
        "an incremental verify",
        || async {
            let out = run(
                ep,
                &["--output", "json", "verify", "--trusted-state", state_arg],
                None,
            )
            .await;
            assert_exit(&out, 0);
            let report = lines_of(&out).remove(0);
            (report["tree_size"] == 1002).then_some(report)
        },
    )
    .await;
    assert_eq!(report["checked_from"], 1001);
    assert_eq!(report["entries_checked"], 1);

    // The keys, pinned the way an auditor would.
    let out = run(ep, &["--output", "json", "cluster", "status"], None).await;
    assert_exit(&out, 0);
    let status = &lines_of(&out)[0];
    assert_eq!(status["voters"], 3);
    let keys: Vec<String> = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["public_key"].as_str().expect("key").to_owned())
        .collect();
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(&keys_file, keys.join("\n")).expect("keys");
    let keys_arg = format!("@{}", keys_file.display());

    // Export a middle range; verify it offline with the pinned keys.
    let bundle = dir.path().join("evidence.vtb");
    let bundle_arg = bundle.to_str().expect("utf-8 path");
    let out = run(
        ep,
        &[
            "export", "--from", "100", "--to", "600", "-o", bundle_arg, "--keys", &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &[
            "--output",
            "json",
            "verify-bundle",
            bundle_arg,
            "--keys",
            &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let report = &lines_of(&out)[0];
    assert_eq!(
        (report["start"].as_u64(), report["count"].as_u64()),
        (Some(100), Some(500))
    );
    assert_eq!(report["keys_from_bundle"], false);
    // The events inside, read offline (#23, item 7): one JSON entry per line,
    // checked as they are read, then the result of the checks.
    let out = run(
        &CliEnv(Vec::new()),
        &[
            "--output", "json", "bundle", "show", bundle_arg, "--keys", &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let shown = lines_of(&out);
    assert_eq!(shown.len(), 501, "500 entries and the result");
    assert_eq!(shown[0]["seq"], 100);
    assert_eq!(shown[499]["seq"], 599);
    assert_eq!(shown[0]["event"]["actor"], "bob");
    assert_eq!(shown[500]["ok"], true);
    let out = run(&CliEnv(Vec::new()), &["bundle", "show", bundle_arg], None).await;
    assert_exit(&out, 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 500, "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verified: 500 entries from seq 100"),
        "{}",
        explain(&out)
    );

    // Tampered bundles: each fails with exit 1 and its reason.
    let text = std::fs::read_to_string(&bundle).expect("read");
    let original: Vec<String> = text.lines().map(str::to_owned).collect();
    let header: Value = serde_json::from_str(&original[0]).expect("header");
    let note = header["checkpoint"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    let with_note = |note: String| {
        let mut h = header.clone();
        h["checkpoint"] = Value::String(note);
        let mut lines = original.clone();
        lines[0] = h.to_string();
        lines
    };
    let signed = SignedNote::parse(&note).expect("note");
    let stranger = NoteSigner::from_seed("stranger", &[9; 32]).expect("signer");
    let mut foreign = signed.clone();
    foreign.sign(&stranger).expect("sign");
    let mut lonely = SignedNote::new(signed.text()).expect("note");
    lonely
        .add_signature(signed.signatures()[0].clone())
        .expect("signature");
    let mut flipped = original.clone();
    let mut line = flipped[43].clone().into_bytes();
    line[40] = if line[40] == b'A' { b'B' } else { b'A' };
    flipped[43] = String::from_utf8(line).expect("ascii");
    let mut dropped = original.clone();
    dropped.remove(200);
    let mut swapped = original.clone();
    swapped.swap(300, 301);
    let cases: Vec<(&str, Vec<String>, Option<u64>, &str)> = vec![
        // Line k holds seq 100 + k - 1.
        ("a flipped byte", flipped, Some(142), "prev_hash"),
        ("a dropped entry", dropped, Some(299), "carries seq 300"),
        ("two entries swapped", swapped, Some(399), "seq"),
        (
            "an altered checkpoint",
            with_note(note.replacen("\n", "\n1", 1)),
            None,
            "signature",
        ),
        (
            "fewer signatures than the quorum",
            with_note(lonely.to_string()),
            None,
            "quorum",
        ),
    ];
    // A signature by a key the auditor does not hold (a voter that joined
    // after the keys were pinned) is skipped, not taken for tampering (#23).
    let path = dir.path().join("cosigned-by-a-stranger.vtb");
    std::fs::write(&path, with_note(foreign.to_string()).join("\n") + "\n").expect("write");
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &[
            "verify-bundle",
            path.to_str().expect("path"),
            "--keys",
            &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    for (what, lines, bad_seq, reason) in cases {
        let path = dir.path().join("tampered.vtb");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let path = path.to_str().expect("path");
        let out = run(
            &CliEnv::endpoints("127.0.0.1:1"),
            &[
                "--output",
                "json",
                "verify-bundle",
                path,
                "--keys",
                &keys_arg,
            ],
            None,
        )
        .await;
        assert_exit(&out, 1);
        let failure = &lines_of(&out)[0];
        assert_eq!(
            failure["first_bad_seq"].as_u64(),
            bad_seq,
            "{what}: {failure}"
        );
        let text = failure["reason"].as_str().expect("reason").to_lowercase();
        assert!(
            text.contains(reason),
            "{what}: {text:?} does not mention {reason:?}"
        );
        // The text form names the reason too.
        let out = run(
            &CliEnv::endpoints("127.0.0.1:1"),
            &["verify-bundle", path, "--keys", &keys_arg],
            None,
        )
        .await;
        assert_exit(&out, 1);
        // Reading it fails the same way.
        let shown = run(
            &CliEnv(Vec::new()),
            &["bundle", "show", path, "--keys", &keys_arg],
            None,
        )
        .await;
        assert_exit(&shown, 1);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("VERIFICATION FAILED"),
            "{}",
            explain(&out)
        );
    }

    // Proofs, checked on the client.
    let out = run(
        ep,
        &[
            "--output",
            "json",
            "proof",
            "inclusion",
            "--seq",
            "5",
            "--keys",
            &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    // The same proof, by the event's source and id (#23, item 7).
    let by_seq = lines_of(&out)[0].clone();
    let entry = run(ep, &["--output", "json", "get", "--seq", "5"], None).await;
    let entry = lines_of(&entry)[0].clone();
    let out = run(
        ep,
        &[
            "--output",
            "json",
            "proof",
            "inclusion",
            "--source",
            entry["event"]["source"].as_str().expect("source"),
            "--event-id",
            entry["event"]["event_id"].as_str().expect("event id"),
            "--keys",
            &keys_arg,
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let by_id = &lines_of(&out)[0];
    assert_eq!(by_id["seq"], 5, "{by_id}");
    assert_eq!(by_id["leaf"], by_seq["leaf"], "{by_id}");
    let out = run(
        ep,
        &[
            "--output",
            "json",
            "proof",
            "consistency",
            "--from",
            "1001",
            "--keys",
            &keys_arg,
        ],
        None,
    )
    .await;
    // From the checkpoint of 1001 entries awaited above: both roots co-signed.
    assert_exit(&out, 0);
    let proof = &lines_of(&out)[0];
    assert_eq!(proof["from_root_signed"], true, "{proof}");
    assert_eq!(proof["to_size"], 1002, "{proof}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_unreachable_nodes_3_with_a_message() {
    // No such flag.
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &["append", "--nonsense"],
        None,
    )
    .await;
    assert_exit(&out, 2);
    // Missing required fields.
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &["append", "--source", "x"],
        None,
    )
    .await;
    assert_exit(&out, 2);
    // Nobody listens: a bounded wait, said once while it lasts, then exit 3
    // (unavailable, not a usage error: #23 item 5) naming the failure.
    let port = veritrail_tests::free_port();
    let out = run(
        &CliEnv::endpoints(&format!("127.0.0.1:{port}")),
        &[
            "--timeout-ms",
            "500",
            "--retry-ms",
            "4000",
            "--output",
            "json",
            "get",
            "--seq",
            "0",
        ],
        None,
    )
    .await;
    assert_exit(&out, 3);
    let failure = &lines_of(&out)[0];
    assert_eq!(failure["ok"], false);
    // The error names the address tried and why it failed, and the wait
    // said that it was retrying (#23 item 5).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no node has answered") && stderr.contains("retrying"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
    let text = failure.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("refused"),
        "{text}"
    );
    // A name that does not resolve is not retried for the whole retry budget
    // (a minute here): the error comes as soon as every endpoint has failed
    // to resolve once, and names them.
    let started = std::time::Instant::now();
    let out = run(
        &CliEnv::endpoints("nonexistent.invalid:7001,also-missing.invalid:7001"),
        &["--retry-ms", "60000", "get", "--seq", "0"],
        None,
    )
    .await;
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no endpoint's name resolves")
            && stderr.contains("nonexistent.invalid:7001")
            && stderr.contains("also-missing.invalid:7001"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "an unresolvable name was retried for {:?}",
        started.elapsed()
    );
    // veritraild's probes use the same codes: a node that does not answer is 3.
    let probe = std::process::Command::new(veritraild())
        .args(["status", "--addr", &format!("127.0.0.1:{port}")])
        .output()
        .expect("veritraild status");
    assert_eq!(
        probe.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // A mistyped command gets a "did you mean" (#23 item 7).
    let out = run(&CliEnv::endpoints("127.0.0.1:1"), &["apend"], None).await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("'append'"),
        "{}",
        explain(&out)
    );
    // Shell completions and the manual page, offline (#23 item 7).
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &["completions", "bash"],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("_veritrail") && script.contains("verify-bundle"),
        "{script}"
    );
    let out = run(&CliEnv::endpoints("127.0.0.1:1"), &["man"], None).await;
    assert_exit(&out, 0);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains(".TH veritrail") && page.contains("verify\\-bundle"),
        "{page}"
    );
    // A bundle that does not exist: a usage error, like a bad flag.
    let out = run(
        &CliEnv::endpoints("127.0.0.1:1"),
        &["verify-bundle", "/nonexistent/bundle"],
        None,
    )
    .await;
    assert_exit(&out, 2);
    // Connection flags given to an offline command are refused, not ignored
    // (#23, item 6); set in the environment, as above, they are left alone.
    let out = run(
        &CliEnv(Vec::new()),
        &[
            "verify-bundle",
            "b.bundle",
            "--endpoints",
            "10.0.0.1:7001",
            "--local",
        ],
        None,
    )
    .await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--endpoints, --local cannot apply"),
        "{}",
        explain(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stdin_stops_at_the_line_and_says_which() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let endpoints = cluster.cli_env();
    let input = "{\"source\":\"s\",\"actor\":\"a\",\"action\":\"b\",\"resource\":\"c\",\"outcome\":\"d\"}\nnot json\n";
    let out = run(&endpoints, &["append", "--stdin"], Some(input.into())).await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        explain(&out)
    );
    // The valid line before it was appended; nothing after it was.
    let leader = cluster.leader().await;
    assert_eq!(cluster.status(leader).await.expect("status").tree_size, 1);

    // With --id-prefix, running the input again once it is fixed appends only
    // what is missing (#23, item 6).
    let line = |n: u32| {
        format!(
            "{{\"source\":\"s\",\"actor\":\"a\",\"action\":\"b\",\"resource\":\"r{n}\",\"outcome\":\"d\"}}\n"
        )
    };
    let broken = format!("{}{}not json\n", line(1), line(2));
    let out = run(
        &endpoints,
        &["append", "--stdin", "--id-prefix", "batch-7"],
        Some(broken),
    )
    .await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--id-prefix batch-7"),
        "{}",
        explain(&out)
    );
    let fixed = format!("{}{}{}", line(1), line(2), line(3));
    let out = run(
        &endpoints,
        &["append", "--stdin", "--id-prefix", "batch-7"],
        Some(fixed),
    )
    .await;
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("appended 3 events (2 were already in the log)"),
        "{}",
        explain(&out)
    );
    assert_eq!(cluster.status(leader).await.expect("status").tree_size, 4);
}

/// The same node keys signing a second history (every node wiped but its key,
/// as if a quorum of keys were stolen or the cluster rebuilt to rewrite
/// history): the SDK's verifier reports a fork with both signed notes, and the
/// CLI's incremental verify exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_history_is_caught_as_a_fork() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let endpoints = cluster.cli_env();
    let client = cluster.sdk();
    let status = client.status().await.expect("status");
    let keys: Vec<NoteKey> = status
        .members
        .iter()
        .map(|m| NoteKey::parse(&m.public_key).expect("key"))
        .collect();
    let append = |client: Client, prefix: &'static str, n: usize| async move {
        let events = (0..n)
            .map(|i| veritrail_client::Event {
                source: "ledger".into(),
                event_id: format!("{prefix}-{i}"),
                actor: "alice".into(),
                action: "entry.post".into(),
                resource: format!("account/{i}"),
                outcome: prefix.into(),
                ..Default::default()
            })
            .collect();
        client.append_batch(events).await.expect("append")
    };
    append(client.clone(), "true", 20).await;
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("trusted.json");
    let state_arg = state.to_str().expect("path").to_owned();
    let mut verifier = Verifier::majority(ORIGIN, keys).expect("verifier");
    wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint of 20",
        || async { (client.checkpoint(None).await.ok()?.tree_size == 20).then_some(()) },
    )
    .await;
    assert!(matches!(
        verifier.update(&client).await.expect("update"),
        Advance::First { size: 20 }
    ));
    let out = run(&endpoints, &["verify", "--trusted-state", &state_arg], None).await;
    assert_exit(&out, 0);

    // Wipe every node but its key, and write another history, longer.
    cluster.wipe_all_but_keys().await;
    let client = cluster.sdk();
    append(client.clone(), "forged", 30).await;
    wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint of 30",
        || async { (client.checkpoint(None).await.ok()?.tree_size == 30).then_some(()) },
    )
    .await;

    match verifier.update(&client).await {
        Err(Error::Fork(evidence)) => {
            assert!(evidence.trusted.contains("\n20\n"), "{}", evidence.trusted);
            assert!(evidence.offered.contains("\n30\n"), "{}", evidence.offered);
        }
        other => panic!("expected a fork, got {other:?}"),
    }
    assert_eq!(
        verifier.trusted().map(|t| t.checkpoint.size),
        Some(20),
        "trust did not move"
    );
    let out = run(
        &endpoints,
        &["--output", "json", "verify", "--trusted-state", &state_arg],
        None,
    )
    .await;
    assert_exit(&out, 1);
    let failure = &lines_of(&out)[0];
    assert!(
        failure["details"]["fork"]["offered"].is_string(),
        "{failure}"
    );
}

/// `veritraild restore` of a backup file, as an operator runs it.
fn restore(cluster: &Cluster, i: usize, backup: &std::path::Path) -> Output {
    std::process::Command::new(veritrail_tests::veritraild())
        .arg("restore")
        .arg("--backup")
        .arg(backup)
        .arg("--config")
        .arg(&cluster.nodes[i].config_path)
        .output()
        .expect("run veritraild restore")
}

/// A refused restore: exit 1, the reason on stderr.
#[track_caller]
fn assert_refused(out: &Output, reason: &str) {
    assert_exit(out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(reason),
        "{}",
        explain(out)
    );
}

/// Disaster recovery: every node's database is lost (their keys were kept).
/// The same backup, restored on every member, brings the cluster back at the
/// backup's state: same entries, same root, checkpoints that still verify, and
/// appends go on from there. A damaged backup and a restore over existing
/// state are refused with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_on_every_member_brings_the_cluster_back() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let endpoints = cluster.cli_env();
    let client = cluster.sdk();
    for i in 0..40 {
        client
            .append(veritrail_tests::sdk_event("billing", &format!("kept-{i}")))
            .await
            .expect("append");
    }
    wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint covering the 40 events",
        || async {
            let c = client.checkpoint(None).await.ok()?;
            (c.tree_size >= 40).then_some(())
        },
    )
    .await;

    let backup = cluster.dir.path().join("cluster.vtbackup");
    let out = run(
        &endpoints,
        &[
            "--output",
            "json",
            "cluster",
            "backup",
            "--out",
            backup.to_str().expect("utf-8 path"),
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let info = &lines_of(&out)[0];
    let size = info["tree_size"].as_u64().expect("tree_size");
    let root = info["root"].as_str().expect("root").to_owned();
    assert!(size >= 40, "{info}");
    assert!(
        !backup.with_extension("part").exists(),
        "no partial file left"
    );

    // Written after the backup: a restore loses these.
    for i in 0..10 {
        client
            .append(veritrail_tests::sdk_event("billing", &format!("lost-{i}")))
            .await
            .expect("append");
    }

    // The disaster: every database is gone; each node's key file is kept.
    for i in 0..3 {
        cluster.kill(i);
        let dir = &cluster.nodes[i].data_dir;
        for entry in std::fs::read_dir(dir).expect("data dir").flatten() {
            if entry.file_name() != "node.key" {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).expect("wipe");
                } else {
                    std::fs::remove_file(&path).expect("wipe");
                }
            }
        }
    }

    // A damaged backup is refused before anything is written.
    let damaged = cluster.dir.path().join("damaged.vtbackup");
    let mut bytes = std::fs::read(&backup).expect("read backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&damaged, &bytes).expect("write damaged copy");
    assert_refused(&restore(&cluster, 0, &damaged), "digest");

    for i in 0..3 {
        let out = restore(&cluster, i, &backup);
        assert_exit(&out, 0);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("restored {size} entries")),
            "{}",
            explain(&out)
        );
    }
    // A second restore over restored state is refused.
    assert_refused(
        &restore(&cluster, 0, &backup),
        "restore only into an empty one",
    );

    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_for_voters(3).await;
    let roots = cluster.roots().await;
    assert_eq!(roots.len(), 1, "the nodes disagree: {roots:?}");
    assert_eq!(
        veritrail_core::Hash::from_slice(roots.first().expect("a root"))
            .expect("a 32-byte root")
            .to_hex(),
        root,
        "the restored root is the backup's"
    );

    let client = cluster.sdk();
    client
        .get_by_event_id("billing", "kept-0")
        .await
        .expect("an event from before the backup");
    let lost = client.get_by_event_id("billing", "lost-0").await;
    assert_eq!(
        lost.as_ref().err().and_then(Error::code),
        Some(tonic::Code::NotFound),
        "{lost:?}"
    );
    let receipt = client
        .append(veritrail_tests::sdk_event("billing", "after-restore"))
        .await
        .expect("append after the restore");
    assert_eq!(receipt.seq, size, "the log goes on from the backup");

    // The auditor's check passes over the restored history and the new entry.
    wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint covering the new entry",
        || async {
            let c = client.checkpoint(None).await.ok()?;
            (c.tree_size > size).then_some(())
        },
    )
    .await;
    let out = run(&endpoints, &["verify"], None).await;
    assert_exit(&out, 0);
}

/// A reader that stops early (`veritrail cluster status | head -1`) closes
/// the pipe: both tools end quietly, with status 0 and no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_the_pipe_ends_the_tools_quietly() {
    let cluster = Cluster::start(
        1,
        ClusterOptions {
            insecure: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let addr = cluster.nodes[0].addr.clone();
    let env = cluster.cli_env();
    let tools = [
        (veritrail(), vec!["cluster", "status"]),
        (veritraild(), vec!["status", "--addr", addr.as_str()]),
    ];
    for (binary, args) in tools {
        let mut child = std::process::Command::new(&binary)
            .args(&args)
            .envs(env.0.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader goes away before the tool has anything to print.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{} {args:?} into a closed pipe: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// `cluster add-learner` returns once the new node holds every entry the
/// leader held when it was added, as its help and OPERATIONS.md say (it used
/// to return at once, the learner empty: #23 item 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_returns_once_the_learner_holds_the_log() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    for batch in 0..12 {
        let events = (0..500)
            .map(|i| veritrail_tests::sdk_event("bulk", &format!("b{batch}-{i}")))
            .collect();
        client.append_batch(events).await.expect("append");
    }
    let leader = cluster.leader().await;
    let size = cluster.status(leader).await.expect("status").tree_size;
    let learner = cluster.spawn_extra(4);
    cluster.channel(learner).await;
    let addr = cluster.nodes[learner].addr.clone();
    let out = run(
        &cluster.cli_env(),
        &["cluster", "add-learner", "--id", "4", "--addr", &addr],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let held = cluster
        .status(learner)
        .await
        .expect("learner status")
        .tree_size;
    assert!(
        held >= size,
        "add-learner returned with node 4 holding {held} of {size} entries\n{}",
        explain(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("node 4 holds all {size} entries")),
        "{}",
        explain(&out)
    );
}

/// Ctrl-C during `export` removes the partial file and exits 130 (#23 item
/// 6: it used to leave a 0-byte `.partial` behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_export_leaves_no_partial_file() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    // Enough entries that the export is still writing when it is stopped.
    for batch in 0..120 {
        let events = (0..500)
            .map(|i| veritrail_tests::sdk_event("bulk", &format!("b{batch}-{i}")))
            .collect();
        client.append_batch(events).await.expect("append");
    }
    let dir = tempfile::TempDir::new().expect("dir");
    let bundle = dir.path().join("audit.bundle");
    let partial = dir.path().join("audit.bundle.partial");
    let child = tokio::process::Command::new(veritrail())
        .args(["export", "-o", bundle.to_str().expect("utf-8 path")])
        .envs(cluster.cli_env().0.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn veritrail export");
    // Polled closely: the export is under way from the moment the file exists.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !partial.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the export never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let pid = child.id().expect("running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the export stops")
        .expect("output");
    assert_eq!(out.status.code(), Some(130), "{}", explain(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        explain(&out)
    );
    assert!(!partial.exists(), "the partial file is left behind");
    assert!(!bundle.exists(), "an interrupted export wrote a bundle");
}

/// An auditor's trusted state follows the voters through two replacements,
/// one at a time, learning each new key from the keys it already trusts
/// (#23, item 2). Pinned keys alone would fail after the second: only one of
/// the three first keys still signs. A voter refuses to vouch for a key set
/// that is not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_learns_new_voters_from_the_keys_it_trusts() {
    use veritrail_proto::raft::SignCheckpointRequest;
    use veritrail_proto::raft::raft_peer_client::RaftPeerClient;
    use veritrail_proto::v1::{AddLearnerRequest, ChangeMembershipRequest, Member};
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let env = cluster.cli_env();
    let client = cluster.sdk();
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("trusted.json");
    let state_arg = state.to_str().expect("path").to_owned();
    let mut size = 0u64;
    let append_and_wait = |client: Client, size: u64| async move {
        let events = (0..5)
            .map(|i| veritrail_tests::sdk_event("keys", &format!("e{}", size + i)))
            .collect();
        client.append_batch(events).await.expect("append");
        let size = size + 5;
        wait_for(
            std::time::Duration::from_secs(30),
            "a checkpoint covering every append",
            || async { (client.checkpoint(None).await.ok()?.tree_size == size).then_some(()) },
        )
        .await;
        size
    };
    size = append_and_wait(client.clone(), size).await;
    let out = run(&env, &["verify", "--trusted-state", &state_arg], None).await;
    assert_exit(&out, 0);

    let mut reports = Vec::new();
    for new_id in [4u64, 5] {
        // Replace a follower that is one of the first three voters.
        let status = client.status().await.expect("status");
        let leader_id = status.leader_id.expect("a leader");
        let mut voters: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect();
        let gone = *voters
            .iter()
            .find(|v| **v != leader_id && **v <= 3)
            .expect("an original follower");
        voters.retain(|v| *v != gone);
        let leader = cluster.leader().await;
        let mut admin = cluster.admin(leader).await;
        admin
            .change_membership(ChangeMembershipRequest {
                voters: voters.clone(),
                retain_removed: false,
            })
            .await
            .expect("remove");
        let gone_index = cluster
            .nodes
            .iter()
            .position(|n| n.id == gone)
            .expect("node");
        cluster.kill(gone_index);
        let added = cluster.spawn_extra(new_id);
        // Listening before it is added.
        cluster.channel(added).await;
        admin
            .add_learner(AddLearnerRequest {
                member: Some(Member {
                    node_id: new_id,
                    addr: cluster.nodes[added].addr.clone(),
                }),
                wait: true,
            })
            .await
            .expect("add learner");
        voters.push(new_id);
        admin
            .change_membership(ChangeMembershipRequest {
                voters,
                retain_removed: false,
            })
            .await
            .expect("promote");
        size = append_and_wait(client.clone(), size).await;

        let out = run(
            &env,
            &["verify", "--trusted-state", &state_arg, "--output", "json"],
            None,
        )
        .await;
        assert_exit(&out, 0);
        let report = lines_of(&out)[0].clone();
        assert_eq!(report["tree_size"], size, "{report}");
        reports.push((new_id, gone, report));
    }
    for (new_id, gone, report) in reports {
        assert_eq!(report["key_set"]["result"], "adopted", "{report}");
        let added_keys = report["key_set"]["added"].to_string();
        assert!(added_keys.contains(&format!("node-{new_id}+")), "{report}");
        let removed_keys = report["key_set"]["removed"].to_string();
        assert!(removed_keys.contains(&format!("node-{gone}+")), "{report}");
    }
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    let keys = saved["keys"].to_string();
    assert!(
        keys.contains("node-4+") && keys.contains("node-5+"),
        "{saved}"
    );
    assert!(saved["key_set_epoch"].is_u64(), "{saved}");

    // A voter signs only the key set it holds: not one naming a stranger's key.
    let running = cluster
        .nodes
        .iter()
        .position(|n| n.is_running() && n.id == 1)
        .unwrap_or_else(|| {
            cluster
                .nodes
                .iter()
                .position(|n| n.is_running())
                .expect("a node")
        });
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(4, "127.0.0.1");
    let mut peer = RaftPeerClient::new(cluster.channel_as(running, Some((&cert, &key))).await);
    let stranger = NoteSigner::from_seed(&format!("{ORIGIN}/node-9"), &[9; 32]).expect("signer");
    let current = client.key_set().await.expect("key set").0;
    let current = SignedNote::parse(&current).expect("note");
    let forged = format!("{}{}\n", current.text(), stranger.public());
    let refused = peer
        .sign_key_set(SignCheckpointRequest { body: forged })
        .await
        .expect_err("a key set that is not the voter's own");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
}

/// A named context holds a cluster's endpoints and credentials (#23, item
/// 7); flags override it, and an unknown name is a usage error that lists
/// the known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_context_holds_the_endpoints_and_credentials() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let env: std::collections::BTreeMap<String, String> = cluster.cli_env().0.into_iter().collect();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.toml");
    let endpoints: Vec<String> = env["VERITRAIL_ENDPOINTS"]
        .split(',')
        .map(|e| format!("{e:?}"))
        .collect();
    std::fs::write(
        &config,
        format!(
            "context = \"it\"\n\n[contexts.it]\nendpoints = [{}]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\n\
             [contexts.elsewhere]\nendpoints = [\"127.0.0.1:1\"]\n",
            endpoints.join(", "),
            env["VERITRAIL_CA"],
            env["VERITRAIL_CERT"],
            env["VERITRAIL_KEY"],
        ),
    )
    .expect("config");
    let only_config = CliEnv(vec![(
        "VERITRAIL_CLI_CONFIG".into(),
        config.display().to_string(),
    )]);
    // The file's default context, then one named on the command line.
    let out = run(
        &only_config,
        &["--output", "json", "cluster", "status"],
        None,
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(lines_of(&out)[0]["voters"], 3);
    let out = run(
        &only_config,
        &[
            "--context",
            "it",
            "append",
            "--source",
            "ctx",
            "--actor",
            "a",
            "--action",
            "b",
            "--resource",
            "c",
            "--outcome",
            "d",
        ],
        None,
    )
    .await;
    assert_exit(&out, 0);
    // A flag wins over the context: this one points nowhere.
    let out = run(
        &only_config,
        &[
            "--retry-ms",
            "500",
            "--endpoints",
            "127.0.0.1:1",
            "cluster",
            "status",
        ],
        None,
    )
    .await;
    assert_exit(&out, 3);
    let out = run(
        &only_config,
        &["--context", "nope", "cluster", "status"],
        None,
    )
    .await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("elsewhere, it"),
        "{}",
        explain(&out)
    );
}

/// A service signs its events from the CLI, and an auditor holds them to its
/// signer list offline: `keygen` makes the key (owner-only, never over
/// another file), the policy registers it, `append` signs one event and a
/// stream of them, and `verify` and `verify-bundle --signers` check every
/// entry's signature and key, refusing a bundle under a list that names
/// another key (issue #17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_signs_its_events_and_an_auditor_checks_them_against_its_signer_list() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::TempDir::new().expect("dir");
    let key = dir.path().join("tester.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let offline = CliEnv(Vec::new());
    let out = run(
        &offline,
        &["keygen", "--name", "tester", "-o", key_arg],
        None,
    )
    .await;
    assert_exit(&out, 0);
    let verifier_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    NoteKey::parse(&verifier_key).expect("a verifier key on stdout");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret is the owner's alone");
    let again = run(
        &offline,
        &["keygen", "--name", "tester", "-o", key_arg],
        None,
    )
    .await;
    assert_ne!(again.status.code(), Some(0), "{}", explain(&again));
    assert!(
        explain(&again).contains("exists"),
        "a key file is never overwritten: {}",
        explain(&again)
    );

    let principal = veritrail_tests::TEST_PRINCIPAL;
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\nprincipals = [\"{principal}\"]\nappend = [\"*\"]\nread = true\nproofs = true\nadmin = true\n\
             [[signer]]\nprincipal = \"{principal}\"\nkeys = [\"{verifier_key}\"]\n"
        ),
    )
    .expect("policy");
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: format!("[auth]\npolicy_file = \"{}\"\n", policy.display()),
            ..ClusterOptions::default()
        },
    )
    .await;
    let env = cluster.cli_env();
    let flags = [
        "append",
        "--source",
        "tests",
        "--actor",
        "alice",
        "--action",
        "invoice.refund",
        "--resource",
        "invoice/1",
        "--outcome",
        "success",
    ];
    let unsigned = run(&env, &flags, None).await;
    assert_exit(&unsigned, 5);
    assert!(
        explain(&unsigned).contains("must sign"),
        "{}",
        explain(&unsigned)
    );
    let signing = ["--signing-key", key_arg, "--origin", ORIGIN];
    let one = run(&env, &[&flags[..], &signing[..]].concat(), None).await;
    assert_exit(&one, 0);
    let lines: String = (0..3)
        .map(|i| {
            format!(
                "{{\"source\":\"tests\",\"actor\":\"bob\",\"action\":\"login\",\"resource\":\"session/{i}\",\"outcome\":\"success\"}}\n"
            )
        })
        .collect();
    let many = run(
        &env,
        &[&["append", "--stdin"][..], &signing[..]].concat(),
        Some(lines),
    )
    .await;
    assert_exit(&many, 0);

    let status = wait_for(
        std::time::Duration::from_secs(30),
        "a checkpoint over the four entries",
        || async {
            let leader = cluster.leader().await;
            let s = cluster.status(leader).await?;
            (s.tree_size == 4 && s.checkpoint_size == Some(4)).then_some(s)
        },
    )
    .await;
    assert_eq!(status.tree_size, 4);
    let policy_arg = policy.to_str().expect("utf-8 path");
    let verify = run(
        &env,
        &["--output", "json", "verify", "--signers", policy_arg],
        None,
    )
    .await;
    assert_exit(&verify, 0);
    assert_eq!(lines_of(&verify)[0]["signed_entries"], 4);

    let bundle = dir.path().join("signed.vtb");
    let bundle_arg = bundle.to_str().expect("utf-8 path");
    assert_exit(&run(&env, &["export", "-o", bundle_arg], None).await, 0);
    let checked = run(
        &offline,
        &["verify-bundle", bundle_arg, "--signers", policy_arg],
        None,
    )
    .await;
    assert_exit(&checked, 0);
    assert!(
        explain(&checked).contains("4 entries carry their service's signature"),
        "{}",
        explain(&checked)
    );
    // An auditor whose list names another key for the principal refuses it.
    let other = NoteSigner::from_seed("tester", &[42; 32]).expect("key");
    let wrong_list = dir.path().join("signers.toml");
    std::fs::write(
        &wrong_list,
        format!(
            "[[signer]]\nprincipal = \"{principal}\"\nkeys = [\"{}\"]\n",
            other.public()
        ),
    )
    .expect("list");
    let refused = run(
        &offline,
        &[
            "--output",
            "json",
            "verify-bundle",
            bundle_arg,
            "--signers",
            wrong_list.to_str().expect("utf-8 path"),
        ],
        None,
    )
    .await;
    assert_exit(&refused, 1);
    assert!(
        explain(&refused).contains("does not register"),
        "{}",
        explain(&refused)
    );
}

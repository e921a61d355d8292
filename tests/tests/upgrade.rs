//! A data directory written by an earlier version keeps working (issue #16).
//!
//! `tests/testdata/datadir-v1/` is the data directory of a one-node cluster
//! of version 0.1.0 after 300 appended events, a snapshot point and a signed
//! checkpoint; `tests/testdata/datadir-v1.json` records what it held. It was
//! written once and is never edited: every later version must pass `fsck` on
//! a copy of it, start a node on it, serve what it held with the same root,
//! and append after it. A version that changes the layout of a data
//! directory adds a new fixture beside this one and keeps this test passing.
//!
//! The fixture is written when it is missing and the test runs with
//! `VERITRAIL_BLESS=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use veritrail_proto::v1::admin_client::AdminClient;
use veritrail_proto::v1::audit_log_client::AuditLogClient;
use veritrail_proto::v1::{
    AppendBatchRequest, AppendRequest, GetCheckpointRequest, GetEntryRequest, StatusRequest,
    VerifyRangeRequest, get_entry_request,
};
use veritrail_tests::{Cluster, ClusterOptions, ORIGIN, event, free_port, veritraild, wait_for};

/// What the fixture's node held when it was written.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Expected {
    written_by: String,
    tree_size: u64,
    root: String,
    chain_head: String,
    checkpoint_size: u64,
    snapshot_tree_size: u64,
}

const EVENTS: u64 = 300;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Copies a directory tree, leaving out RocksDB's own text logs (`LOG*`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("LOG") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Writes the fixture with a one-node cluster of this version.
async fn write_fixture(dir: &Path, expected_path: &Path) {
    let mut cluster = Cluster::start(
        1,
        ClusterOptions {
            insecure: true,
            raft_toml: "snapshot_after_events = 100\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let mut client = cluster.client(0).await;
    for b in 0..5 {
        let events = (0..50)
            .map(|i| {
                let mut e = event(["billing", "auth", "storage"][i % 3], &format!("b{b}-{i}"));
                e.attributes.insert("batch".into(), b.to_string());
                e.payload = vec![b as u8; i];
                e
            })
            .collect();
        client
            .append_batch(AppendBatchRequest { events })
            .await
            .expect("batch");
    }
    for i in 0..50 {
        client
            .append(AppendRequest {
                event: Some(event("billing", &format!("single-{i}"))),
            })
            .await
            .expect("append");
    }
    let status = wait_for(
        Duration::from_secs(30),
        "a checkpoint of every event and a snapshot",
        || async {
            let s = cluster.status(0).await?;
            (s.checkpoint_size == Some(EVENTS) && s.snapshot_tree_size.is_some()).then_some(s)
        },
    )
    .await;
    cluster.kill(0);
    copy_tree(&cluster.nodes[0].data_dir, dir);
    let expected = Expected {
        written_by: env!("CARGO_PKG_VERSION").into(),
        tree_size: status.tree_size,
        root: hex(&status.root_hash),
        chain_head: hex(&status.chain_head),
        checkpoint_size: EVENTS,
        snapshot_tree_size: status.snapshot_tree_size.unwrap_or(0),
    };
    std::fs::write(
        expected_path,
        serde_json::to_string_pretty(&expected).expect("json") + "\n",
    )
    .expect("write the expectations");
    eprintln!("wrote {} and {}", dir.display(), expected_path.display());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A node process, killed when dropped.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_data_directory_passes_fsck_serves_its_history_and_appends() {
    let fixture = testdata().join("datadir-v1");
    let expected_path = testdata().join("datadir-v1.json");
    if !fixture.exists() {
        assert!(
            std::env::var_os("VERITRAIL_BLESS").is_some(),
            "{} is missing; it is written once, with VERITRAIL_BLESS=1",
            fixture.display()
        );
        write_fixture(&fixture, &expected_path).await;
    }
    let expected: Expected = serde_json::from_str(
        &std::fs::read_to_string(&expected_path).expect("the fixture's expectations"),
    )
    .expect("expectations parse");

    // A copy: opening a data directory writes to it.
    let scratch = tempfile::TempDir::new().expect("temp dir");
    let data_dir = scratch.path().join("data");
    copy_tree(&fixture, &data_dir);

    let fsck = Command::new(veritraild())
        .args(["fsck", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run fsck");
    assert!(
        fsck.status.success(),
        "fsck refused the v1 data directory:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    // The node's membership names the address it had when the fixture was
    // written; alone as the only voter, it leads wherever it listens now.
    let addr = format!("127.0.0.1:{}", free_port());
    let config = scratch.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = 1\nlisten_addr = \"{addr}\"\ndata_dir = \"{}\"\norigin = \"{ORIGIN}\"\n\
             [tls]\ninsecure_dev = true\n",
            data_dir.display()
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(scratch.path().join("node.log")).expect("log file");
    let _node = Node(
        Command::new(veritraild())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start veritraild"),
    );
    let endpoint = format!("http://{addr}");
    let channel = wait_for(Duration::from_secs(30), "the node to listen", || async {
        tonic::transport::Endpoint::from_shared(endpoint.clone())
            .ok()?
            .connect()
            .await
            .ok()
    })
    .await;
    let admin = AdminClient::new(channel.clone());
    let mut client = AuditLogClient::new(channel);
    let status = wait_for(Duration::from_secs(30), "the node to lead", || {
        let mut admin = admin.clone();
        async move {
            let s = admin.status(StatusRequest {}).await.ok()?.into_inner();
            (s.role == "leader").then_some(s)
        }
    })
    .await;
    assert_eq!(status.tree_size, expected.tree_size);
    assert_eq!(hex(&status.root_hash), expected.root);
    assert_eq!(hex(&status.chain_head), expected.chain_head);
    assert_eq!(status.snapshot_tree_size, Some(expected.snapshot_tree_size));

    // Every entry replays into the same chain and root.
    let verified = client
        .verify_range(VerifyRangeRequest {
            from_seq: 0,
            to_seq: None,
        })
        .await
        .expect("verify range")
        .into_inner();
    assert!(verified.ok, "{}", verified.problem);
    assert_eq!(verified.entries_checked, expected.tree_size);
    let first = client
        .get_entry(GetEntryRequest {
            key: Some(get_entry_request::Key::Seq(0)),
            ..GetEntryRequest::default()
        })
        .await
        .expect("the first entry")
        .into_inner();
    assert!(first.entry.is_some());
    let checkpoint = client
        .get_checkpoint(GetCheckpointRequest {
            tree_size: Some(expected.checkpoint_size),
            ..Default::default()
        })
        .await
        .expect("the recorded checkpoint")
        .into_inner();
    assert!(!checkpoint.signed_note.is_empty());

    // And the log goes on.
    let receipt = client
        .append(AppendRequest {
            event: Some(event("billing", "after-the-upgrade")),
        })
        .await
        .expect("append after the upgrade")
        .into_inner()
        .receipt
        .expect("a receipt");
    assert_eq!(receipt.seq, expected.tree_size);
    drop(admin);
}

/// A peer message in a format newer than this node reads (3: a peer of a later
/// version that has not waited for the whole cluster to upgrade) is refused
/// with FAILED_PRECONDITION naming both formats, before its bytes are decoded,
/// and changes nothing. Untagged messages, as version 0.1.0 sent them, are
/// read as format 1: the other tests of the suite send them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_message_of_a_newer_format_is_refused_by_name() {
    use veritrail_proto::raft::raft_peer_client::RaftPeerClient;
    use veritrail_proto::raft::{ForwardAppendRequest, RaftPayload};

    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let pki = cluster.pki.as_ref().expect("TLS");
    let leader = cluster.leader().await;
    let member = (leader + 1) % cluster.nodes.len();
    let (cert, key) = pki.node(cluster.nodes[member].id, "127.0.0.1");
    let mut peer = RaftPeerClient::new(cluster.channel_as(leader, Some((&cert, &key))).await);
    let before = cluster.status(leader).await.expect("status");

    let event = veritrail_core::Event {
        source: "tests".into(),
        event_id: "from-the-future".into(),
        actor: "a".into(),
        action: "b".into(),
        resource: "c".into(),
        outcome: "d".into(),
        ..veritrail_core::Event::default()
    };
    let refused = [
        peer.vote(RaftPayload {
            postcard: vec![0xff; 8],
            to_node_id: cluster.nodes[leader].id,
            format: 3,
        })
        .await
        .map(|_| ())
        .expect_err("Vote"),
        peer.append_entries(RaftPayload {
            postcard: vec![0xff; 8],
            to_node_id: cluster.nodes[leader].id,
            format: 3,
        })
        .await
        .map(|_| ())
        .expect_err("AppendEntries"),
        peer.forward_append(ForwardAppendRequest {
            principal: "spiffe://veritrail.test/service/tests".into(),
            events: postcard::to_stdvec(&vec![event]).expect("encode"),
            format: 3,
        })
        .await
        .map(|_| ())
        .expect_err("ForwardAppend"),
    ];
    for status in refused {
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("format 3") && status.message().contains("up to 2"),
            "{status:?}"
        );
    }
    let after = cluster.status(leader).await.expect("status");
    assert_eq!(after.term, before.term, "the term moved");
    assert_eq!(after.tree_size, before.tree_size, "something was written");
    assert_eq!(after.role, "leader");
}

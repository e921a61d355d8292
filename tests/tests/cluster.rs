//! The cluster against real processes over real sockets: appends through any
//! node, leader failure, membership changes with snapshot catch-up, co-signed
//! checkpoints with proofs from another node, and bad input.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::merkle::{verify_consistency, verify_inclusion};
use veritrail_core::note::NoteKey;
use veritrail_core::{ChainVerifier, Hash};
use veritrail_proto::v1::get_entry_request::Key;
use veritrail_proto::v1::{
    AddLearnerRequest, AppendBatchRequest, AppendRequest, ChangeMembershipRequest,
    GetCheckpointRequest, GetConsistencyProofRequest, GetEntryRequest, GetInclusionProofRequest,
    Member, ReadConsistency, ScanRequest, VerifyRangeRequest,
};
use veritrail_tests::{Cluster, ClusterOptions, ORIGIN, event, metric_sample as sample, wait_for};

fn hash(bytes: &[u8]) -> Hash {
    Hash::from_slice(bytes).expect("32-byte hash")
}

async fn append(cluster: &Cluster, node: usize, id: &str) -> veritrail_proto::v1::Receipt {
    let mut client = cluster.client(node).await;
    let response = client
        .append(AppendRequest {
            event: Some(event("billing", id)),
        })
        .await
        .unwrap_or_else(|s| {
            panic!(
                "append {id} via node {node}: {s}\n{}",
                cluster.log_tail(node)
            )
        });
    response.into_inner().receipt.expect("receipt")
}

async fn entry_at(
    cluster: &Cluster,
    node: usize,
    seq: u64,
    consistency: ReadConsistency,
) -> veritrail_proto::v1::Entry {
    let mut client = cluster.client(node).await;
    client
        .get_entry(GetEntryRequest {
            key: Some(Key::Seq(seq)),
            consistency: consistency as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("get {seq} from node {node}: {s}"))
        .into_inner()
        .entry
        .expect("entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_leader_and_follower_are_readable_everywhere() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let r0 = append(&cluster, leader, "via-leader").await;
    let r1 = append(&cluster, follower, "via-follower").await;
    assert_eq!((r0.seq, r1.seq), (0, 1));
    // A retry of the same event returns the original receipt.
    let again = append(&cluster, follower, "via-leader").await;
    assert_eq!(
        (again.seq, again.entry_hash.clone(), again.duplicate),
        (0, r0.entry_hash.clone(), true)
    );
    // Linearizable reads see the appends on every node, followers included.
    for node in 0..3 {
        let e = entry_at(&cluster, node, 1, ReadConsistency::Linearizable).await;
        assert_eq!(e.entry_hash, r1.entry_hash);
        assert_eq!(e.principal, veritrail_tests::TEST_PRINCIPAL);
    }
    cluster.wait_for_size(2).await;
    for node in 0..3 {
        let e = entry_at(&cluster, node, 0, ReadConsistency::Local).await;
        assert_eq!(e.entry_hash, r0.entry_hash);
    }
    // A node's log written to a file is plain text: no terminal colour codes.
    for node in &cluster.nodes {
        let log = std::fs::read_to_string(&node.log_path).expect("node log");
        assert!(log.contains("veritraild starting"), "{log}");
        assert!(
            !log.contains('\u{1b}'),
            "node {}'s log file holds ANSI escape codes",
            node.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_nothing_and_the_node_catches_up() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push(append(&cluster, leader, &format!("before-{i}")).await);
    }
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    for i in 0..20 {
        acknowledged.push(append(&cluster, new_leader, &format!("after-{i}")).await);
    }
    cluster.restart(leader);
    cluster.wait_for_size(40).await;
    for r in &acknowledged {
        let e = entry_at(&cluster, leader, r.seq, ReadConsistency::Local).await;
        assert_eq!(
            e.entry_hash, r.entry_hash,
            "seq {} on the restarted node",
            r.seq
        );
    }
    // Every node holds the same chain.
    let mut roots = Vec::new();
    for node in 0..3 {
        roots.push(cluster.status(node).await.expect("status").root_hash);
    }
    assert!(
        roots.windows(2).all(|w| w[0] == w[1]),
        "roots differ: {roots:?}"
    );
}

/// The first initial member bootstraps the cluster, so a first member whose
/// data directory was lost must not bootstrap a second history when it comes
/// back with the same configuration: the other members say they belong to a
/// cluster, and it refuses, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_first_member_does_not_bootstrap_a_second_cluster() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    for i in 0..10 {
        append(&cluster, leader, &format!("before-{i}")).await;
    }
    cluster.wait_for_size(10).await;
    cluster.kill(0);
    std::fs::remove_dir_all(&cluster.nodes[0].data_dir).expect("wipe node 1");
    cluster.restart(0);
    let log = &cluster.nodes[0].log_path;
    wait_for(
        Duration::from_secs(20),
        "node 1 to refuse the bootstrap",
        || async {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.contains("already belongs to an initialized cluster")
                .then_some(())
        },
    )
    .await;
    // The cluster goes on with one history: appends succeed and the nodes
    // still running agree on it.
    let leader = cluster.leader().await;
    append(&cluster, leader, "after").await;
    // The log holds both runs of node 1: one initialization, the first.
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(
        text.matches("bootstrap: cluster initialized").count(),
        1,
        "node 1 initialized a second cluster:\n{}",
        cluster.log_tail(0)
    );
}

/// A proof at a tree size a node holds, or an entry it holds, is the same on
/// every node forever after (committed entries never change), so a
/// linearizable read of it needs no quorum round: a node cut off from the
/// others still answers it. What the node does not hold yet still needs the
/// quorum, and it is refused rather than answered stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_determined_by_held_entries_need_no_quorum() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    for i in 0..20 {
        append(&cluster, leader, &format!("q{i}")).await;
    }
    cluster.wait_for_size(20).await;
    let alone = (leader + 1) % cluster.nodes.len();
    let mut client = cluster.client(alone).await;
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|&i| i != alone).collect();
    for &i in &others {
        cluster.pause(i);
    }
    let linearizable = ReadConsistency::Linearizable as i32;
    let proof = client
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: 7,
            tree_size: 20,
            consistency: linearizable,
        })
        .await
        .expect("a proof at a held size needs no quorum")
        .into_inner();
    verify_inclusion(
        7,
        20,
        &hash(&proof.leaf_hash),
        &proof.proof.iter().map(|h| hash(h)).collect::<Vec<_>>(),
        &hash(&proof.root_hash),
    )
    .expect("verifies");
    client
        .get_consistency_proof(GetConsistencyProofRequest {
            from_size: 5,
            to_size: 20,
            consistency: linearizable,
        })
        .await
        .expect("a consistency proof between held sizes needs no quorum");
    let entry = client
        .get_entry(GetEntryRequest {
            key: Some(Key::Seq(19)),
            consistency: linearizable,
        })
        .await
        .expect("a held entry needs no quorum")
        .into_inner();
    assert_eq!(entry.entry.expect("entry").seq, 19);
    // Beyond what it holds, the node must ask the quorum, which is away: no
    // answer within two seconds (the client gives up; the node would answer
    // UNAVAILABLE at its own deadline).
    let unanswered = [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled];
    let mut request = tonic::Request::new(GetEntryRequest {
        key: Some(Key::Seq(20)),
        consistency: linearizable,
    });
    request.set_timeout(Duration::from_secs(2));
    let refused = client
        .get_entry(request)
        .await
        .expect_err("an entry past the node's log cannot be confirmed absent");
    assert!(unanswered.contains(&refused.code()), "{refused:?}");
    let mut request = tonic::Request::new(GetInclusionProofRequest {
        seq: 7,
        tree_size: 21,
        consistency: linearizable,
    });
    request.set_timeout(Duration::from_secs(2));
    let refused = client
        .get_inclusion_proof(request)
        .await
        .expect_err("a size past the node's log needs the quorum");
    assert!(unanswered.contains(&refused.code()), "{refused:?}");
    for &i in &others {
        cluster.resume(i);
    }
}

/// Options that take a snapshot every `events` events (never by Raft entry
/// count) and keep two Raft entries behind each.
fn snapshots_every(events: u64) -> ClusterOptions {
    ClusterOptions {
        raft_toml: format!(
            "snapshot_after_entries = 100000\nsnapshot_after_events = {events}\n\
             keep_after_snapshot_entries = 2\n"
        ),
        ..ClusterOptions::default()
    }
}

/// Appends batches `first .. first + count` of 100 events each.
async fn append_batches(
    client: &mut veritrail_proto::v1::audit_log_client::AuditLogClient<tonic::transport::Channel>,
    first: usize,
    count: usize,
) {
    for b in first..first + count {
        let events = (0..100)
            .map(|i| event("bulk", &format!("b{b}-{i}")))
            .collect();
        client
            .append_batch(AppendBatchRequest { events })
            .await
            .expect("batch");
    }
}

/// Under batching one Raft entry carries many events, so snapshots are also
/// taken by event count. Each one lets every node purge its Raft log, while
/// the audit log keeps every event, and a node killed after purging restarts
/// on its own data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_by_event_count_purge_the_raft_log_on_every_node() {
    let mut cluster = Cluster::start(3, snapshots_every(400)).await;
    let leader = cluster.leader().await;
    let mut client = cluster.client(leader).await;
    append_batches(&mut client, 0, 30).await;
    cluster.wait_for_size(3000).await;
    for i in 0..cluster.nodes.len() {
        let status = wait_for(
            Duration::from_secs(30),
            &format!("node {i} to snapshot and purge"),
            || async {
                let s = cluster.status(i).await?;
                (s.snapshot_tree_size? >= 2800 && s.purged_index? >= 20).then_some(s)
            },
        )
        .await;
        let held = status.last_log_index.expect("a log") - status.purged_index.expect("purged");
        assert!(
            held < 20,
            "node {i} still holds {held} Raft entries after purging: {status:?}"
        );
    }
    let roots = cluster.roots().await;
    assert_eq!(roots.len(), 1, "the nodes disagree: {roots:?}");

    // A follower restarts on its purged log: the audit log is whole.
    let follower = (leader + 1) % cluster.nodes.len();
    cluster.kill(follower);
    cluster.restart(follower);
    cluster.channel(follower).await;
    cluster.wait_for_size(3000).await;
    assert_eq!(cluster.roots().await, roots);
    let first = entry_at(&cluster, follower, 0, ReadConsistency::Local).await;
    assert_eq!(first.seq, 0);
}

/// While a member is behind the last snapshot (down, or being sent one), the
/// leader puts new snapshots off, so that Raft keeps the log that member needs
/// next instead of purging it under a snapshot in flight (openraft #1706);
/// past ten times its thresholds it takes one anyway. Once the member is back
/// and caught up, snapshots resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_wait_while_a_member_catches_up() {
    let mut cluster = Cluster::start(3, snapshots_every(200)).await;
    let leader = cluster.leader().await;
    let mut client = cluster.client(leader).await;
    append_batches(&mut client, 0, 4).await;
    let snapshot_size =
        |status: &veritrail_proto::v1::StatusResponse| status.snapshot_tree_size.unwrap_or(0);
    wait_for(Duration::from_secs(30), "a first snapshot", || async {
        (snapshot_size(&cluster.status(leader).await?) >= 200).then_some(())
    })
    .await;
    let down = (leader + 1) % cluster.nodes.len();
    cluster.kill(down);
    append_batches(&mut client, 4, 15).await;
    cluster.wait_for_size(1900).await;
    // 1,500 events past the last snapshot, 7.5 times the threshold: put off.
    let held = cluster.status(leader).await.expect("status");
    assert!(
        snapshot_size(&held) < 1000,
        "the leader took a snapshot while node {} was down: {held:?}",
        cluster.nodes[down].id
    );
    cluster.restart(down);
    cluster.channel(down).await;
    cluster.wait_for_size(1900).await;
    append_batches(&mut client, 19, 2).await;
    wait_for(Duration::from_secs(30), "snapshots to resume", || async {
        (snapshot_size(&cluster.status(leader).await?) >= 1900).then_some(())
    })
    .await;
    assert_eq!(cluster.roots().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_by_snapshot_is_promoted_and_another_removed() {
    // Snapshot often and keep no log behind it, so the learner must be sent a
    // snapshot rather than the log.
    let options = ClusterOptions {
        raft_toml: "snapshot_after_entries = 20\nkeep_after_snapshot_entries = 0\n".into(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(3, options).await;
    let leader = cluster.leader().await;
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.push(event("bulk", &format!("b{i}")));
    }
    let mut client = cluster.client(leader).await;
    for chunk in batch.chunks(10) {
        client
            .append_batch(AppendBatchRequest {
                events: chunk.to_vec(),
            })
            .await
            .expect("batch");
    }
    // The keys an auditor pinned before the membership changed.
    let pinned: Vec<NoteKey> = cluster
        .status(leader)
        .await
        .expect("status")
        .members
        .iter()
        .map(|m| NoteKey::parse(&m.public_key).expect("member key"))
        .collect();
    let learner = cluster.spawn_extra(4);
    cluster.channel(learner).await;
    let mut admin = cluster.admin(leader).await;
    admin
        .add_learner(AddLearnerRequest {
            member: Some(Member {
                node_id: 4,
                addr: cluster.nodes[learner].addr.clone(),
            }),
            wait: true,
        })
        .await
        .unwrap_or_else(|s| panic!("add learner: {s}\n{}", cluster.log_tail(learner)));
    cluster.wait_for_size(300).await;
    let log = std::fs::read_to_string(&cluster.nodes[learner].log_path).expect("learner log");
    assert!(
        log.contains("snapshot installed"),
        "the learner caught up without a snapshot:\n{}",
        cluster.log_tail(learner)
    );
    let removed = cluster
        .nodes
        .iter()
        .position(|n| n.id != cluster.nodes[leader].id && n.id != 4)
        .expect("a follower");
    let mut voters: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != cluster.nodes[removed].id)
        .collect();
    voters.sort_unstable();
    admin
        .change_membership(ChangeMembershipRequest {
            voters: voters.clone(),
            retain_removed: false,
        })
        .await
        .expect("change membership");
    let status = cluster.status(leader).await.expect("status");
    let mut now: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    now.sort_unstable();
    assert_eq!(now, voters);
    // The promoted node holds the same log.
    let promoted = cluster.status(learner).await.expect("status");
    assert_eq!(promoted.root_hash, status.root_hash);
    append(&cluster, learner, "after-membership-change").await;

    // A checkpoint the new voter co-signed still verifies with the keys pinned
    // before it joined: its signature is skipped, and the two remaining
    // original voters are a quorum of the pinned three (#23 item 2).
    let new_key = format!("{ORIGIN}/node-4");
    let reader = cluster.client(leader).await;
    let note = wait_for(
        Duration::from_secs(30),
        "a checkpoint co-signed by node 4 and both remaining original voters",
        || {
            let mut reader = reader.clone();
            let new_key = new_key.clone();
            async move {
                let note = reader
                    .get_checkpoint(GetCheckpointRequest {
                        tree_size: None,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .signed_note;
                let signers: Vec<String> = veritrail_core::note::SignedNote::parse(&note)
                    .ok()?
                    .signatures()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect();
                (signers.len() == 3 && signers.contains(&new_key)).then_some(note)
            }
        },
    )
    .await;
    let verified = CheckpointVerifier::majority(ORIGIN, pinned)
        .expect("trust")
        .verify(&note)
        .unwrap_or_else(|e| panic!("pinned keys refused a checkpoint node 4 co-signed: {e}"));
    assert_eq!(verified.signers.len(), 2, "{:?}", verified.signers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_verify_with_the_quorum_rule_and_proofs_from_another_node() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let mut receipts = Vec::new();
    for i in 0..25 {
        receipts.push(append(&cluster, leader, &format!("cp-{i}")).await);
    }
    let other = (leader + 1) % 3;
    let status = cluster.status(leader).await.expect("status");
    let keys: Vec<NoteKey> = status
        .members
        .iter()
        .map(|m| NoteKey::parse(&m.public_key).expect("member key"))
        .collect();
    let trust = CheckpointVerifier::majority(ORIGIN, keys).expect("trust");
    let mut client = cluster.client(other).await;
    let signed = wait_for(
        Duration::from_secs(20),
        "a co-signed checkpoint covering every append",
        || {
            let mut client = client.clone();
            async move {
                let r = client
                    .get_checkpoint(GetCheckpointRequest {
                        tree_size: None,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                (r.tree_size >= 25).then_some(r)
            }
        },
    )
    .await;
    let verified = trust
        .verify(&signed.signed_note)
        .expect("quorum-signed checkpoint");
    assert!(verified.signers.len() >= 2);
    let size = verified.checkpoint.size;
    let prover = (leader + 2) % 3;
    let mut proofs = cluster.client(prover).await;
    for r in receipts.iter().step_by(6) {
        let p = proofs
            .get_inclusion_proof(GetInclusionProofRequest {
                seq: r.seq,
                tree_size: size,
                consistency: 0,
            })
            .await
            .expect("inclusion proof")
            .into_inner();
        let path: Vec<Hash> = p.proof.iter().map(|h| hash(h)).collect();
        verify_inclusion(
            r.seq,
            size,
            &hash(&r.entry_hash),
            &path,
            &verified.checkpoint.root,
        )
        .expect("inclusion verifies");
    }
    let c = proofs
        .get_consistency_proof(GetConsistencyProofRequest {
            from_size: 10,
            to_size: size,
            consistency: 0,
        })
        .await
        .expect("consistency proof")
        .into_inner();
    let path: Vec<Hash> = c.proof.iter().map(|h| hash(h)).collect();
    verify_consistency(
        10,
        size,
        &hash(&c.from_root),
        &verified.checkpoint.root,
        &path,
    )
    .expect("consistency verifies");
    // The whole range, fetched and recomputed on the client, gives the signed root.
    let mut stream = client
        .scan(ScanRequest {
            from_seq: 0,
            to_seq: Some(size),
            ..ScanRequest::default()
        })
        .await
        .expect("scan")
        .into_inner();
    let mut chain = ChainVerifier::from_genesis(ORIGIN);
    while let Some(item) = stream.next().await {
        chain
            .push(&item.expect("entry").entry.expect("entry").canonical)
            .expect("chain");
    }
    assert_eq!(chain.root(), Some(verified.checkpoint.root));
    let report = client
        .verify_range(VerifyRangeRequest {
            from_seq: 0,
            to_seq: None,
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(report.ok, "{}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_documented_code_and_writes_nothing() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    append(&cluster, leader, "first").await;
    let mut client = cluster.client(follower).await;
    let code = |r: Result<tonic::Response<veritrail_proto::v1::AppendResponse>, tonic::Status>| {
        r.expect_err("must fail").code()
    };

    let mut e = event("billing", "empty-actor");
    e.actor.clear();
    assert_eq!(
        code(client.append(AppendRequest { event: Some(e) }).await),
        Code::InvalidArgument
    );
    let mut e = event("billing", "long-resource");
    e.resource = "r".repeat(1025);
    assert_eq!(
        code(client.append(AppendRequest { event: Some(e) }).await),
        Code::InvalidArgument
    );
    let mut e = event("billing", "big-payload");
    e.payload = vec![0; 64 * 1024 + 1];
    assert_eq!(
        code(client.append(AppendRequest { event: Some(e) }).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(client.append(AppendRequest { event: None }).await),
        Code::InvalidArgument
    );
    let too_many: Vec<_> = (0..4097)
        .map(|i| event("billing", &format!("many-{i}")))
        .collect();
    let status = client
        .append_batch(AppendBatchRequest { events: too_many })
        .await
        .expect_err("too many");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    let mut changed = event("billing", "first");
    changed.outcome = "denied".into();
    let status = client
        .append(AppendRequest {
            event: Some(changed),
        })
        .await
        .expect_err("conflict");
    assert_eq!(status.code(), Code::AlreadyExists, "{status}");
    // A batch with one bad event writes none of its events.
    let mut bad = event("billing", "batch-bad");
    bad.source = "has space".into();
    let status = client
        .append_batch(AppendBatchRequest {
            events: vec![event("billing", "batch-good"), bad],
        })
        .await
        .expect_err("invalid batch");
    assert_eq!(status.code(), Code::InvalidArgument);
    // Reads and proofs outside the log.
    let reversed = client
        .scan(ScanRequest {
            from_seq: 5,
            to_seq: Some(2),
            ..ScanRequest::default()
        })
        .await
        .expect_err("reversed");
    assert_eq!(reversed.code(), Code::InvalidArgument);
    let beyond = client
        .scan(ScanRequest {
            from_seq: 0,
            to_seq: Some(1000),
            ..ScanRequest::default()
        })
        .await
        .expect_err("beyond");
    assert_eq!(beyond.code(), Code::OutOfRange);
    let proof = client
        .get_inclusion_proof(GetInclusionProofRequest {
            seq: 0,
            tree_size: 1000,
            consistency: 0,
        })
        .await
        .expect_err("beyond the tree");
    assert_eq!(proof.code(), Code::OutOfRange);
    let proof = client
        .get_consistency_proof(GetConsistencyProofRequest {
            from_size: 2,
            to_size: 1,
            consistency: 0,
        })
        .await
        .expect_err("reversed sizes");
    assert_eq!(proof.code(), Code::InvalidArgument);
    let missing = client
        .get_entry(GetEntryRequest {
            key: Some(Key::Seq(99)),
            consistency: 0,
        })
        .await
        .expect_err("no such entry");
    assert_eq!(missing.code(), Code::NotFound);
    // Nothing above was written.
    let status = cluster.status(leader).await.expect("status");
    assert_eq!(status.tree_size, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pipeline_appends_and_tail_follows_the_log() {
    use veritrail_proto::v1::{AppendStreamRequest, TailRequest};
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    // A tail opened on a follower before anything is written.
    let mut tail = cluster
        .client(follower)
        .await
        .tail(TailRequest {
            from_seq: 0,
            ..TailRequest::default()
        })
        .await
        .expect("tail")
        .into_inner();
    // 100 requests of 5 events in flight on one stream, through a follower.
    let requests: Vec<AppendStreamRequest> = (0..100u64)
        .map(|r| AppendStreamRequest {
            request_id: r,
            events: (0..5)
                .map(|e| event("stream", &format!("r{r}-e{e}")))
                .collect(),
        })
        .collect();
    let mut responses = cluster
        .client(follower)
        .await
        .append_stream(tokio_stream::iter(requests))
        .await
        .expect("stream")
        .into_inner();
    let mut answered = std::collections::BTreeSet::new();
    let mut seqs = std::collections::BTreeSet::new();
    while let Some(response) = responses.next().await {
        let response = response.expect("response");
        assert!(response.error.is_none(), "{:?}", response.error);
        assert_eq!(response.receipts.len(), 5);
        answered.insert(response.request_id);
        seqs.extend(response.receipts.iter().map(|r| r.seq));
    }
    assert_eq!(answered.len(), 100, "every request answered once");
    assert_eq!(seqs, (0..500).collect(), "dense seqs, each event once");
    // The tail delivers all of them in order, then what comes later.
    for expected in 0..500u64 {
        let entry = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .expect("tail keeps up");
        assert_eq!(
            entry
                .expect("item")
                .expect("entry")
                .entry
                .expect("entry")
                .seq,
            expected
        );
    }
    let late = append(&cluster, leader, "late").await;
    let entry = tokio::time::timeout(Duration::from_secs(20), tail.next())
        .await
        .expect("tail follows");
    assert_eq!(
        entry
            .expect("item")
            .expect("entry")
            .entry
            .expect("entry")
            .seq,
        late.seq
    );
}

/// A Raft message meant for another node id is refused before it is read: a
/// replacement node reusing an address must not vote or acknowledge in the
/// name of the node it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_messages_for_another_node_id_are_refused() {
    use veritrail_proto::raft::RaftPayload;
    use veritrail_proto::raft::raft_peer_client::RaftPeerClient;
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    // Speaking as a member (node 2's certificate), as a replaced node would.
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(2, "127.0.0.1");
    let mut peer = RaftPeerClient::new(cluster.channel_as(0, Some((&cert, &key))).await);
    for to_node_id in [0, 2, 999] {
        let payload = RaftPayload {
            postcard: vec![1, 2, 3],
            to_node_id,
            ..Default::default()
        };
        let vote = peer
            .vote(payload.clone())
            .await
            .expect_err("misaddressed vote");
        assert_eq!(vote.code(), Code::FailedPrecondition, "{vote:?}");
        let append = peer
            .append_entries(payload)
            .await
            .expect_err("misaddressed append");
        assert_eq!(append.code(), Code::FailedPrecondition, "{append:?}");
    }
    // Addressed to node 1 itself, the same bytes get as far as decoding.
    let own = peer
        .vote(RaftPayload {
            postcard: vec![1, 2, 3],
            to_node_id: cluster.nodes[0].id,
            ..Default::default()
        })
        .await
        .expect_err("garbage");
    assert_eq!(own.code(), Code::InvalidArgument, "{own:?}");
}

/// A learner replays the log from its start, so for a while it holds the
/// first membership, {1, 2, 3}, which does not name its leader, node 4: the
/// voters of that membership vouch for the leader, and it catches up (issue
/// #17). This is the
/// lagging node that a "members only" rule for Raft messages must not lock
/// out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_whose_memberships_do_not_name_its_leader_still_catches_up() {
    // Two entries per message, so that the learner holds a membership after
    // the first one (which it takes holding none) and long before the last.
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            raft_toml: "append_entries_max_entries = 2\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = cluster.leader().await;
    append(&cluster, leader, "before-4").await;
    let four = cluster.spawn_extra(4);
    cluster.channel(four).await;
    let mut admin = cluster.admin(leader).await;
    admin
        .add_learner(AddLearnerRequest {
            member: Some(Member {
                node_id: 4,
                addr: cluster.nodes[four].addr.clone(),
            }),
            wait: true,
        })
        .await
        .expect("add node 4");
    // Node 4 the only voter, so that it leads; 1, 2 and 3 stay as learners
    // (and can vouch).
    admin
        .change_membership(ChangeMembershipRequest {
            voters: vec![4],
            retain_removed: true,
        })
        .await
        .expect("make node 4 the only voter");
    wait_for(Duration::from_secs(20), "node 4 to lead", || async {
        (cluster.status(four).await?.role == "leader").then_some(())
    })
    .await;
    append(&cluster, four, "before-5").await;

    let five = cluster.spawn_extra(5);
    cluster.channel(five).await;
    cluster
        .admin(four)
        .await
        .add_learner(AddLearnerRequest {
            member: Some(Member {
                node_id: 5,
                addr: cluster.nodes[five].addr.clone(),
            }),
            wait: true,
        })
        .await
        .unwrap_or_else(|s| panic!("add node 5: {s}\n{}", cluster.log_tail(five)));
    let size = append(&cluster, four, "after-5").await.seq + 1;
    wait_for(Duration::from_secs(30), "node 5 to catch up", || async {
        (cluster.status(five).await?.tree_size >= size).then_some(())
    })
    .await;
    assert_eq!(cluster.roots().await.len(), 1, "the nodes disagree");
    let log = std::fs::read_to_string(&cluster.nodes[five].log_path).expect("node 5's log");
    assert!(
        log.contains("vouches for a leader"),
        "node 5 never had to ask who node 4 is:\n{}",
        cluster.log_tail(five)
    );
}

/// A node removed from the cluster stops by itself, saying why, instead of
/// standing for election for ever with a rising term (#23 item 4); the
/// members that remain go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_stops_by_itself() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let (removed, _) = cluster.remove_a_follower().await;
    let removed_id = cluster.nodes[removed].id;
    assert!(
        cluster.wait_exited(removed, Duration::from_secs(60)).await,
        "node {removed_id} still runs a minute after its removal:\n{}",
        cluster.log_tail(removed)
    );
    let log = std::fs::read_to_string(&cluster.nodes[removed].log_path).expect("log");
    assert!(
        log.contains("this node was removed from the cluster"),
        "{}",
        cluster.log_tail(removed)
    );
    append(&cluster, cluster.leader().await, "after-removal").await;
}

/// What an operator reaches for (#23 item 8): the release, the process, the
/// data directory's size and free space, and, on the leader, how far each
/// member is behind. A follower that stops while appends go on shows in its
/// replication lag, which the documented `VeritrailNodeLagging` alert
/// watches (it used to watch tree sizes, and missed a stuck node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_an_operator_reaches_for_are_served() {
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            metrics: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = cluster.leader().await;
    let text = wait_for(
        Duration::from_secs(20),
        "the data directory measured",
        || async {
            let text = cluster.scrape(leader).await?;
            (sample(&text, "veritrail_data_dir_bytes", "")? > 0.0).then_some(text)
        },
    )
    .await;
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        sample(&text, "veritrail_build_info", &version),
        Some(1.0),
        "{text}"
    );
    for name in [
        "veritrail_process_resident_memory_bytes",
        "veritrail_process_open_fds",
        "veritrail_process_max_fds",
        "veritrail_process_threads",
        "veritrail_process_cpu_seconds_total",
        "veritrail_process_start_time_seconds",
        "veritrail_data_dir_free_bytes",
        // Every commit waits for synced writes: the node has made some by now.
        "veritrail_store_sync_seconds_count",
        "veritrail_store_sync_seconds_sum",
    ] {
        let value = sample(&text, name, "").unwrap_or_else(|| panic!("no {name}:\n{text}"));
        assert!(value > 0.0, "{name} is {value}");
    }

    let follower = (leader + 1) % 3;
    let member = format!("member=\"{}\"", cluster.nodes[follower].id);
    cluster.kill(follower);
    for i in 0..20 {
        append(&cluster, leader, &format!("while-{i}-is-down")).await;
    }
    wait_for(
        Duration::from_secs(20),
        "the stopped member's lag",
        || async {
            let text = cluster.scrape(leader).await?;
            (sample(&text, "veritrail_replication_lag_entries", &member)? >= 20.0).then_some(())
        },
    )
    .await;
}

/// `veritraild fsck` on the data directory of a running node says so (#23,
/// item 6): it reads files the node is writing and cannot vouch for them.
/// Once the node is stopped, the same check is definitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_warns_when_the_node_is_running() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    append(&cluster, leader, "before-fsck").await;
    cluster.wait_for_size(1).await;
    let fsck = |dir: std::path::PathBuf| async move {
        tokio::process::Command::new(veritrail_tests::veritraild())
            .arg("fsck")
            .arg("--data-dir")
            .arg(dir)
            .output()
            .await
            .expect("veritraild fsck")
    };
    let dir = cluster.nodes[0].data_dir.clone();
    let out = fsck(dir.clone()).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("a node is running on"), "{stderr}");
    assert!(stdout.contains("the node was running"), "{stdout}");

    cluster.kill(0);
    let out = fsck(dir).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("running"), "{stderr}");
    assert!(stdout.contains("ok: no inconsistency found\n"), "{stdout}");
}

/// A leader whose disk fills refuses new appends before the disk is full,
/// with `RESOURCE_EXHAUSTED` naming the disk and nothing written, says so in
/// its status, and takes appends again by itself once space is freed (#18,
/// item 3). Each node's data directory is a small tmpfs of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_short_of_disk_refuses_appends_until_space_is_freed() {
    use veritrail_client::RetryPolicy;
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            disk_mib: Some(128),
            extra_toml: format!("[disk]\nreserve_bytes = {}\n", 32u64 << 20),
            ..ClusterOptions::default()
        },
    )
    .await;
    if !cluster.has_small_disks() {
        eprintln!("SKIPPED: a tmpfs per node needs root (mount)");
        return;
    }
    let leader = cluster.leader().await;
    append(&cluster, leader, "with-room").await;
    let size = cluster.status(leader).await.expect("status").tree_size;

    // Fill the leader's disk to 16 MiB short of its 32 MiB reserve.
    let dir = cluster.nodes[leader].data_dir.clone();
    let stats = rustix::fs::statvfs(&dir).expect("statvfs");
    let free = stats.f_bavail * stats.f_frsize;
    let filler = dir.join("filler");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0xa5u8; 1 << 20];
        for _ in 0..(free.saturating_sub(16 << 20) >> 20) {
            file.write_all(&chunk).expect("fill");
        }
        file.sync_all().expect("sync");
    }
    let status = wait_for(
        Duration::from_secs(20),
        "the leader to report its disk short",
        || async {
            let s = cluster.status(leader).await?;
            (!s.disk.is_empty()).then_some(s)
        },
    )
    .await;
    assert!(status.disk.contains("reserve"), "{}", status.disk);

    // Straight to the leader, and through a follower: refused, naming the disk.
    let mut config = cluster.client_config([cluster.nodes[leader].addr.clone()]);
    config.retry = RetryPolicy::none();
    let direct = veritrail_client::Client::with_config(config).expect("client");
    let follower = (leader + 1) % 3;
    let mut config = cluster.client_config([cluster.nodes[follower].addr.clone()]);
    config.retry = RetryPolicy::none();
    let forwarded = veritrail_client::Client::with_config(config).expect("client");
    for (how, client) in [("direct", &direct), ("forwarded", &forwarded)] {
        let refused = client
            .append(veritrail_tests::sdk_event(
                "tests",
                &format!("no-room-{how}"),
            ))
            .await
            .expect_err("no room on the leader's disk");
        assert_eq!(
            refused.code(),
            Some(Code::ResourceExhausted),
            "{how}: {refused}"
        );
        assert!(refused.to_string().contains("disk"), "{how}: {refused}");
    }
    assert_eq!(
        cluster.status(leader).await.expect("status").tree_size,
        size,
        "nothing was written"
    );

    // Space freed: appends are taken again, with no restart.
    std::fs::remove_file(&filler).expect("free the space");
    wait_for(
        Duration::from_secs(20),
        "the leader to take appends again",
        || async {
            direct
                .append(veritrail_tests::sdk_event("tests", "room-again"))
                .await
                .ok()
        },
    )
    .await;
    cluster.wait_for_size(size + 1).await;
}

/// The leader's wall clock jumps an hour back, then an hour forward, then
/// back to the true time (#18, item 5): entry timestamps never go backwards,
/// checkpoints keep coming, and no election is held. Timers and leases run on
/// the monotonic clock; an entry's time is the later of the leader's clock
/// and its predecessor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_clock_jumps_keeps_time_monotonic_and_its_lead() {
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            fake_clocks: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    if !cluster.has_fake_clocks() {
        eprintln!("SKIPPED: libfaketime is not installed (Debian package faketime)");
        return;
    }
    let client = cluster.sdk();
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.expect("status").term;
    let hour: u64 = 3600 * 1_000_000_000;
    let mut appended = 0u64;
    let mut last = 0u64;
    for (offset, phase) in [
        ("+0", "true"),
        ("-1h", "behind"),
        ("+1h", "ahead"),
        ("+0", "back"),
    ] {
        cluster.set_clock(leader, offset);
        // libfaketime reads the file at most a second late: the first receipts
        // of a phase may still carry the clock before. Ahead, the phase lasts
        // until an entry shows it.
        let mut receipts = Vec::new();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = receipts.len();
            let receipt = client
                .append(veritrail_tests::sdk_event("clock", &format!("{phase}-{n}")))
                .await
                .unwrap_or_else(|e| panic!("append with the clock {phase}: {e}"));
            let shows_it = phase != "ahead" || receipt.timestamp_ns > now() + hour / 2;
            receipts.push(receipt);
            if n >= 20 && shows_it {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no entry stamped an hour ahead within 20 s of the leader's clock jumping"
            );
        }
        appended += receipts.len() as u64;
        let stamps: Vec<u64> = receipts.iter().map(|r| r.timestamp_ns).collect();
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]) && stamps[0] >= last,
            "timestamps went backwards with the clock {phase}: {last} then {stamps:?}"
        );
        last = *stamps.last().expect("stamps");
        wait_for(
            Duration::from_secs(20),
            &format!("a checkpoint covering the appends with the clock {phase}"),
            || async { (client.checkpoint(None).await.ok()?.tree_size == appended).then_some(()) },
        )
        .await;
    }
    let status = cluster.status(leader).await.expect("status");
    assert_eq!(status.term, term, "an election was held");
    assert_eq!(status.leader_id, Some(cluster.nodes[leader].id));
    // Every node holds the same log, and its timestamps never decrease.
    cluster.wait_for_size(appended).await;
    assert_eq!(cluster.roots().await.len(), 1);
    let entries: Vec<_> = client
        .scan(veritrail_core::ScanQuery::default())
        .collect::<Vec<_>>()
        .await;
    let stamps: Vec<u64> = entries
        .into_iter()
        .map(|e| e.expect("entry").entry.timestamp_ns)
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
}

//! The SDK against a real three-node cluster: leader discovery, safe retries
//! through a leader failure, the batching producer, resumable reads, and the
//! verifier moving along co-signed checkpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tonic::Code;
use veritrail_client::{Advance, Client, Producer, ProducerConfig, ScanQuery, TailQuery, Verifier};
use veritrail_core::note::NoteKey;
use veritrail_tests::sdk_event as event;
use veritrail_tests::{Cluster, ClusterOptions, ORIGIN, wait_for};

/// Every entry of the log, as (source, event id) -> seqs holding it.
async fn index(client: &Client) -> BTreeMap<(String, String), Vec<u64>> {
    let mut index: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let mut entries = client.scan(ScanQuery::default());
    let mut next = 0;
    while let Some(entry) = entries.next().await {
        let entry = entry.expect("entry");
        assert_eq!(entry.seq(), next, "seqs are dense");
        next += 1;
        let e = entry.entry.event;
        index
            .entry((e.source, e.event_id))
            .or_default()
            .push(entry.entry.seq);
    }
    index
}

async fn voter_keys(client: &Client) -> Vec<NoteKey> {
    let status = client.status().await.expect("status");
    status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| NoteKey::parse(&m.public_key).expect("key"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_idempotent_and_get_generated_uuid_v7_ids() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    // Only a follower is known: the SDK still reaches the leader.
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let client = Client::with_config(cluster.client_config([cluster.nodes[follower].addr.clone()]))
        .expect("client");

    let first = client
        .append(event("billing", "inv-1"))
        .await
        .expect("append");
    let again = client
        .append(event("billing", "inv-1"))
        .await
        .expect("append again");
    assert!(!first.duplicate);
    assert!(again.duplicate, "the same event again is a duplicate");
    assert_eq!((again.seq, again.entry_hash), (first.seq, first.entry_hash));

    let mut changed = event("billing", "inv-1");
    changed.outcome = "failure".into();
    let err = client.append(changed).await.expect_err("reused id");
    assert_eq!(err.code(), Some(Code::AlreadyExists), "{err}");

    let generated = client.append(event("billing", "")).await.expect("append");
    let id = uuid::Uuid::parse_str(&generated.event_id).expect("a UUID");
    assert_eq!(id.get_version_num(), 7);
    let stored = client
        .get_by_event_id("billing", &generated.event_id)
        .await
        .expect("get");
    assert_eq!(stored.hash, generated.entry_hash);

    let batch = client
        .append_batch(vec![event("billing", "b-1"), event("billing", "b-2")])
        .await
        .expect("batch");
    assert_eq!(batch.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);

    // Bad input fails before the network, naming the field.
    let mut bad = event("billing", "bad");
    bad.actor = String::new();
    let err = client.append(bad).await.expect_err("empty actor");
    assert!(err.to_string().contains("actor"), "{err}");
    assert_eq!(cluster.status(leader).await.expect("status").tree_size, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_retrying_through_a_leader_kill_write_each_event_exactly_once() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                for n in 0..60 {
                    let id = format!("w{w}-{n}");
                    client
                        .append(event("retry", &id))
                        .await
                        .unwrap_or_else(|e| panic!("append {id}: {e}"));
                }
            })
        })
        .collect();
    // Kill the leader while the writers run.
    wait_for(Duration::from_secs(20), "some appends", || async {
        (cluster.status(0).await?.tree_size >= 50).then_some(())
    })
    .await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    for w in writers {
        w.await.expect("writer");
    }
    let index = index(&client).await;
    assert_eq!(index.len(), 480, "every acknowledged event is in the log");
    for ((_, id), seqs) in &index {
        assert_eq!(seqs.len(), 1, "event {id} appears once, at {seqs:?}");
    }
    cluster.restart(leader);
    cluster.wait_for_size(480).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_survives_a_leader_kill_and_restart_and_isolates_bad_events() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    client.append(event("prod", "taken")).await.expect("seed");
    let producer = Arc::new(
        Producer::new(
            &client,
            ProducerConfig {
                linger_ms: 2,
                batch_max_events: 64,
                in_flight_max_batches: 4,
                queue_max_events: 256,
                ..ProducerConfig::default()
            },
        )
        .expect("producer"),
    );
    let mut pending = Vec::new();
    for n in 0..2_000 {
        pending.push(
            producer
                .send(event("prod", &format!("p{n}")))
                .await
                .expect("send"),
        );
        if n == 700 {
            let leader = cluster.leader().await;
            cluster.kill(leader);
        }
    }
    // An id already used for another event fails alone; its batch mates land.
    let mut clash = event("prod", "taken");
    clash.outcome = "failure".into();
    let clash = producer.send(clash).await.expect("send");
    let after = producer
        .send(event("prod", "after-clash"))
        .await
        .expect("send");
    producer.flush().await.expect("flush");
    let mut seqs = std::collections::BTreeSet::new();
    for p in pending {
        let id = p.event_id().to_owned();
        let receipt = p.await.unwrap_or_else(|e| panic!("receipt of {id}: {e}"));
        assert!(seqs.insert(receipt.seq), "seq {} given twice", receipt.seq);
    }
    assert_eq!(
        clash.await.expect_err("clash").code(),
        Some(Code::AlreadyExists)
    );
    after.await.expect("batch mate of the clash");
    let index = index(&client).await;
    assert_eq!(index.len(), 2_002);
    assert!(index.values().all(|s| s.len() == 1), "no event twice");
    // The restarted node caught up to the same log.
    cluster.wait_for_size(2_002).await;
    Arc::try_unwrap(producer)
        .expect("sole owner")
        .close()
        .await
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stream_resume_after_their_node_dies() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    let receipts = client
        .append_batch((0..300).map(|n| event("read", &format!("r{n}"))).collect())
        .await
        .expect("batch");
    assert_eq!(receipts.len(), 300);

    // Scan with filters and a limit.
    let scanned: Vec<_> = client
        .scan(ScanQuery {
            from_seq: 10,
            to_seq: Some(200),
            limit: 25,
            ..ScanQuery::default()
        })
        .map(|e| e.expect("entry").seq())
        .collect()
        .await;
    assert_eq!(scanned, (10..35).collect::<Vec<_>>());
    let none: Vec<_> = client
        .scan(ScanQuery {
            actor: Some("nobody".into()),
            ..ScanQuery::default()
        })
        .collect()
        .await;
    assert!(none.is_empty());

    // A tail keeps going when the node it reads from is killed. The SDK starts
    // at the first endpoint given: node 1.
    let tailer = Client::with_config(cluster.client_config(cluster.endpoints())).expect("client");
    let mut tail = tailer.tail(TailQuery {
        from_seq: 290,
        ..TailQuery::default()
    });
    for expected in 290..300 {
        let entry = tokio::time::timeout(Duration::from_secs(20), tail.next())
            .await
            .expect("tail keeps up")
            .expect("item")
            .expect("entry");
        assert_eq!(entry.seq(), expected);
    }
    cluster.kill(0);
    let late = client
        .append(event("read", "late"))
        .await
        .expect("append after kill");
    let entry = tokio::time::timeout(Duration::from_secs(30), tail.next())
        .await
        .expect("tail resumes")
        .expect("item")
        .expect("entry");
    assert_eq!(entry.seq(), late.seq);
    assert_eq!(entry.seq(), 300, "nothing skipped or repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_follows_checkpoints_and_checks_receipts() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    let keys = voter_keys(&client).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("trusted.json");
    let mut verifier = Verifier::majority(ORIGIN, keys).expect("verifier");
    verifier.persist_to(&path).expect("persist");

    let first = client.append(event("audit", "a-1")).await.expect("append");
    // A receipt is covered once a checkpoint of its size exists; the fixture's
    // cluster cuts one every 200 ms.
    wait_for(
        Duration::from_secs(20),
        "a checkpoint covering the receipt",
        || async {
            let mut v = verifier.clone();
            v.verify_receipt(&client, &first).await.ok()
        },
    )
    .await;
    let advance = verifier.update(&client).await.expect("update");
    assert!(matches!(advance, Advance::First { .. }), "{advance:?}");
    let size = verifier.trusted().expect("trusted").checkpoint.size;

    client
        .append_batch((0..50).map(|n| event("audit", &format!("b{n}"))).collect())
        .await
        .expect("batch");
    let advanced = wait_for(Duration::from_secs(20), "a larger checkpoint", || async {
        let mut v = Verifier::load(&path).expect("load");
        match v.update(&client).await {
            Ok(Advance::Advanced { from_size, to_size }) => Some((from_size, to_size)),
            _ => None,
        }
    })
    .await;
    assert_eq!(advanced.0, size);
    assert!(advanced.1 >= size + 50);
    let reloaded = Verifier::load(&path).expect("load");
    assert_eq!(
        reloaded.trusted().map(|t| t.checkpoint.size),
        Some(advanced.1)
    );

    // A forged receipt fails.
    let mut forged = first.clone();
    forged.entry_hash = veritrail_client::Hash([7; 32]);
    let mut v = Verifier::load(&path).expect("load");
    assert!(v.verify_receipt(&client, &forged).await.is_err());
}

/// A leader with a small queue refuses what does not fit (`RESOURCE_EXHAUSTED`)
/// instead of queueing past the request timeout; the producer backs off and
/// resends only the refused requests, and every event still lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_leader_pushes_back_and_the_producer_still_delivers() {
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: "[batch]\nqueue_max_events = 128\n[grpc]\nrequest_max_events = 64\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let leader = cluster.leader().await;
    // Raw requests, all at once: some must be refused, with the documented code.
    // The connections (TLS handshakes) are made first, so that the requests
    // really arrive together.
    let mut clients = Vec::new();
    for _ in 0..32 {
        clients.push(cluster.client(leader).await);
    }
    let mut raw = Vec::new();
    for (r, mut client) in clients.into_iter().enumerate() {
        raw.push(tokio::spawn(async move {
            let events = (0..64)
                .map(|e| veritrail_tests::event("raw", &format!("r{r}-{e}")))
                .collect();
            client
                .append_batch(veritrail_proto::v1::AppendBatchRequest { events })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        }));
    }
    let mut refused = 0;
    for r in raw {
        match r.await.expect("task") {
            Ok(()) => {}
            Err(Code::ResourceExhausted) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused > 0, "32 x 64 events at once fit a queue of 128");

    let client = cluster.sdk();
    let producer = Producer::new(
        &client,
        ProducerConfig {
            batch_max_events: 64,
            in_flight_max_batches: 8,
            ..ProducerConfig::default()
        },
    )
    .expect("producer");
    let mut pending = Vec::new();
    for n in 0..3_000 {
        pending.push(
            producer
                .send(event("busy", &format!("b{n}")))
                .await
                .expect("send"),
        );
    }
    for p in pending {
        let id = p.event_id().to_owned();
        p.await.unwrap_or_else(|e| panic!("receipt of {id}: {e}"));
    }
    producer.close().await.expect("close");
    let index = index(&client).await;
    let busy = index.keys().filter(|(source, _)| source == "busy").count();
    assert_eq!(busy, 3_000);
    assert!(index.values().all(|s| s.len() == 1), "no event twice");
}

/// A frozen node (SIGSTOP: the kernel still accepts its connections, nobody
/// answers) costs a call at most its connect and request timeouts, then the
/// SDK asks another node. Before, the TLS handshake with it waited with no
/// timeout covering it, and `veritrail cluster status` hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_costs_a_call_its_timeouts_not_more() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let frozen = (leader + 1) % 3;
    cluster.pause(frozen);
    // The frozen node first: every call starts there.
    let mut endpoints = cluster.endpoints();
    endpoints.rotate_left(frozen);
    let mut config = cluster.client_config(endpoints);
    config.connect_timeout_ms = 500;
    config.request_timeout_ms = 2_000;
    let client = Client::with_config(config).expect("client");
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), client.status())
        .await
        .expect("status answers within 30 s with a member frozen")
        .expect("status");
    assert_eq!(status.leader_id, Some(cluster.nodes[leader].id));
    let receipt =
        tokio::time::timeout(Duration::from_secs(30), client.append(event("frozen", "a")))
            .await
            .expect("an append answers within 30 s with a member frozen")
            .expect("append");
    assert_eq!(receipt.seq, 0);
    eprintln!(
        "status and an append with the first endpoint frozen: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cluster.resume(frozen);
}

//! Apply semantics: dense sequence numbers, timestamps that never go backwards,
//! deduplication by (source, event_id), all-or-nothing requests, and the reads
//! and proofs over what was applied.

mod common;

use common::{Harness, event};
use veritrail_core::merkle::{MemoryTree, verify_consistency, verify_inclusion};
use veritrail_core::{ChainVerifier, Event};
use veritrail_store::{AppendRequest, RejectionKind, RequestOutcome, ScanQuery, StoreError};

fn accepted(outcome: RequestOutcome) -> Vec<veritrail_store::AppendReceipt> {
    match outcome {
        RequestOutcome::Accepted(receipts) => receipts,
        RequestOutcome::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

fn rejected(outcome: RequestOutcome) -> veritrail_store::Rejection {
    match outcome {
        RequestOutcome::Rejected(r) => r,
        RequestOutcome::Accepted(r) => panic!("accepted: {r:?}"),
    }
}

#[tokio::test]
async fn appends_get_dense_seqs_and_a_valid_chain() {
    let mut h = Harness::new();
    let receipts = accepted(
        h.append(
            "svc",
            (0..10).map(|i| event("svc", &format!("e{i}"))).collect(),
        )
        .await,
    );
    assert_eq!(
        receipts.iter().map(|r| r.receipt.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert!(receipts.iter().all(|r| !r.duplicate));
    h.fill("other", 25, 7).await;
    let reader = &h.store().reader;
    let tail = reader.tail();
    assert_eq!(tail.size, 35);
    let mut chain = ChainVerifier::from_genesis(common::ORIGIN);
    for seq in 0..35 {
        let stored = reader.entry(seq).expect("read").expect("present");
        chain.push(&stored.canonical).expect("chain holds");
    }
    assert_eq!(chain.root(), Some(tail.root()));
    assert_eq!(chain.head(), Some(tail.head));
    assert_eq!(
        receipts[3].receipt.entry_hash,
        reader.entry(3).expect("read").expect("present").hash
    );
    assert!(reader.entry(35).expect("read").is_none());
}

#[tokio::test]
async fn timestamps_never_go_backwards() {
    let mut h = Harness::new();
    h.clock_ns = 5_000;
    let first = accepted(h.append("s", vec![event("s", "a")]).await)[0].receipt;
    // A new leader whose clock is behind: its proposals keep the last timestamp.
    h.clock_ns = 1_000;
    let second = accepted(h.append("s", vec![event("s", "b"), event("s", "c")]).await);
    assert_eq!(first.timestamp_ns, 5_000);
    assert!(second.iter().all(|r| r.receipt.timestamp_ns == 5_000));
    h.clock_ns = 9_000;
    let third = accepted(h.append("s", vec![event("s", "d")]).await)[0].receipt;
    assert_eq!(third.timestamp_ns, 9_000);
}

#[tokio::test]
async fn a_retried_event_returns_its_original_receipt_and_writes_nothing() {
    let mut h = Harness::new();
    let original = accepted(
        h.append("svc", vec![event("svc", "x"), event("svc", "y")])
            .await,
    );
    let size = h.store().reader.tail().size;
    let again = accepted(
        h.append("svc", vec![event("svc", "y"), event("svc", "z")])
            .await,
    );
    assert!(again[0].duplicate);
    assert_eq!(again[0].receipt, original[1].receipt);
    assert!(!again[1].duplicate);
    assert_eq!(h.store().reader.tail().size, size + 1);
    // The same event twice in one request: one entry, the second a duplicate.
    let twice = accepted(
        h.append("svc", vec![event("svc", "w"), event("svc", "w")])
            .await,
    );
    assert_eq!(twice[0].receipt, twice[1].receipt);
    assert!(!twice[0].duplicate && twice[1].duplicate);
    assert_eq!(h.store().reader.tail().size, size + 2);
}

#[tokio::test]
async fn a_conflicting_event_id_rejects_the_whole_request() {
    let mut h = Harness::new();
    accepted(h.append("svc", vec![event("svc", "x")]).await);
    let size = h.store().reader.tail().size;
    let mut changed = event("svc", "x");
    changed.outcome = "failure".into();
    let r = rejected(h.append("svc", vec![event("svc", "fresh"), changed]).await);
    assert_eq!(r.kind, RejectionKind::Conflict);
    assert_eq!(r.event_index, 1);
    assert!(
        r.message.contains("already names a different event"),
        "{}",
        r.message
    );
    assert_eq!(
        h.store().reader.tail().size,
        size,
        "nothing of the request was written"
    );
    assert!(
        h.store()
            .reader
            .seq_of("svc", "fresh")
            .expect("read")
            .is_none()
    );
    // Another principal sending the same event id is a conflict too.
    let r = rejected(h.append("intruder", vec![event("svc", "x")]).await);
    assert_eq!(r.kind, RejectionKind::Conflict);
    // Two different events under one id in one request.
    let mut other = event("svc", "dup");
    other.actor = "bob".into();
    let r = rejected(h.append("svc", vec![event("svc", "dup"), other]).await);
    assert_eq!((r.kind, r.event_index), (RejectionKind::Conflict, 1));
    assert_eq!(h.store().reader.tail().size, size);
}

#[tokio::test]
async fn invalid_events_are_refused_alone_and_other_requests_proceed() {
    let mut h = Harness::new();
    let bad = Event {
        actor: String::new(),
        ..event("svc", "bad")
    };
    let outcomes = h
        .propose(vec![
            AppendRequest {
                principal: "svc".into(),
                events: vec![event("svc", "ok1"), bad],
            },
            AppendRequest {
                principal: "svc".into(),
                events: vec![event("svc", "ok2")],
            },
            AppendRequest {
                principal: "svc".into(),
                events: vec![],
            },
            AppendRequest {
                principal: "bad\nprincipal".into(),
                events: vec![event("svc", "ok3")],
            },
        ])
        .await;
    let r = rejected(outcomes[0].clone());
    assert_eq!((r.kind, r.event_index), (RejectionKind::Invalid, 1));
    assert!(
        r.message.contains("`actor` must not be empty"),
        "{}",
        r.message
    );
    assert_eq!(accepted(outcomes[1].clone())[0].receipt.seq, 0);
    assert_eq!(rejected(outcomes[2].clone()).kind, RejectionKind::Invalid);
    assert_eq!(rejected(outcomes[3].clone()).kind, RejectionKind::Invalid);
    assert_eq!(h.store().reader.tail().size, 1);
}

#[tokio::test]
async fn state_survives_a_reopen_and_the_chain_continues() {
    let mut h = Harness::new();
    h.fill("svc", 40, 9).await;
    let before = h.store().reader.tail();
    h.reopen();
    assert_eq!(h.store().reader.tail(), before);
    // Deduplication still sees the old events.
    let again = accepted(h.append("svc", vec![event("svc", "e7")]).await);
    assert!(again[0].duplicate);
    h.fill("more", 5, 5).await;
    let mut chain = ChainVerifier::from_genesis(common::ORIGIN);
    for seq in 0..45 {
        chain
            .push(
                &h.store()
                    .reader
                    .entry(seq)
                    .expect("read")
                    .expect("present")
                    .canonical,
            )
            .expect("chain");
    }
    h.close();
    let report = veritrail_store::fsck(h.dir.path()).expect("fsck runs");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.entries, 45);
}

#[tokio::test]
async fn proofs_from_the_store_verify() {
    let mut h = Harness::new();
    h.fill("svc", 77, 10).await;
    let reader = h.store().reader.clone();
    let leaves: Vec<_> = (0..77)
        .map(|s| reader.entry(s).expect("read").expect("present").hash)
        .collect();
    for size in [0u64, 1, 2, 3, 31, 32, 33, 64, 77] {
        let expected = MemoryTree::from_leaves(leaves[..size as usize].iter().copied()).root();
        assert_eq!(reader.root_at(size).expect("root"), expected, "size {size}");
    }
    let root = reader.root_at(77).expect("root");
    for seq in [0u64, 1, 40, 63, 64, 76] {
        let proof = reader.inclusion_proof(seq, 77).expect("proof");
        verify_inclusion(seq, 77, &leaves[seq as usize], &proof, &root).expect("verifies");
    }
    for from in [0u64, 1, 7, 32, 50, 77] {
        let proof = reader.consistency_proof(from, 77).expect("proof");
        verify_consistency(
            from,
            77,
            &reader.root_at(from).expect("root"),
            &root,
            &proof,
        )
        .expect("verifies");
    }
    // As served: the leaf, the path and the root from one read, at every size
    // shape (one leaf, perfect, one past perfect, ragged).
    for (seq, size) in [
        (0u64, 1u64),
        (0, 2),
        (1, 2),
        (5, 32),
        (31, 33),
        (32, 33),
        (40, 77),
        (76, 77),
    ] {
        let served = reader.inclusion_proof_with_root(seq, size).expect("proof");
        assert_eq!(served.leaf, leaves[seq as usize], "leaf of {seq} at {size}");
        assert_eq!(
            served.root,
            reader.root_at(size).expect("root"),
            "root at {size}"
        );
        assert_eq!(
            served.proof,
            reader.inclusion_proof(seq, size).expect("proof"),
            "path of {seq} at {size}"
        );
    }
    assert!(matches!(
        reader.inclusion_proof_with_root(77, 77),
        Err(StoreError::OutOfRange(_))
    ));
    assert!(matches!(
        reader.inclusion_proof_with_root(3, 78),
        Err(StoreError::OutOfRange(_))
    ));
    let checkpoint = reader.checkpoint_at(77).expect("checkpoint");
    assert_eq!((checkpoint.root, checkpoint.head), (root, leaves[76]));
    assert!(matches!(reader.root_at(78), Err(StoreError::OutOfRange(_))));
    assert!(matches!(
        reader.inclusion_proof(77, 77),
        Err(StoreError::OutOfRange(_))
    ));
    assert!(matches!(
        reader.consistency_proof(5, 4),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn lookups_and_filtered_scans() {
    let mut h = Harness::new();
    let actors = ["alice", "bob", "carol"];
    let actions = ["read", "write"];
    for i in 0..120u64 {
        let mut e = event(["a", "b", "c", "d"][(i % 4) as usize], &format!("id{i}"));
        e.actor = actors[(i % 3) as usize].into();
        e.action = actions[((i / 5) % 2) as usize].into();
        e.resource = format!("doc/{}", i % 7);
        e.outcome = if i % 10 == 3 { "denied" } else { "success" }.into();
        let principal = if i % 6 == 0 { "q" } else { "p" };
        accepted(h.append(principal, vec![e]).await);
    }
    let reader = h.store().reader.clone();
    let found = reader
        .entry_by_event_id("c", "id6")
        .expect("read")
        .expect("present");
    assert_eq!(found.entry.seq, 6);
    assert!(
        reader
            .entry_by_event_id("c", "id7")
            .expect("read")
            .is_none()
    );
    let all: Vec<_> = (0..120)
        .map(|s| reader.entry(s).expect("read").expect("present"))
        .collect();

    let queries = [
        ScanQuery {
            source: Some("b".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            actor: Some("bob".into()),
            action: Some("write".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            source: Some("a".into()),
            actor: Some("carol".into()),
            action: Some("read".into()),
            from_seq: 10,
            to_seq: Some(100),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            since_ns: Some(all[30].entry.timestamp_ns),
            until_ns: Some(all[50].entry.timestamp_ns),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            actor: Some("nobody".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            from_seq: 115,
            limit: 1000,
            ..ScanQuery::default()
        },
        // Fields without an index, alone and with indexed ones.
        ScanQuery {
            outcome: Some("denied".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            resource: Some("doc/3".into()),
            actor: Some("alice".into()),
            from_seq: 5,
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            principal: Some("q".into()),
            action: Some("read".into()),
            outcome: Some("success".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
        ScanQuery {
            resource: Some("doc/99".into()),
            limit: 1000,
            ..ScanQuery::default()
        },
    ];
    for q in &queries {
        let page = reader.scan(q).expect("scan");
        let naive: Vec<u64> = all
            .iter()
            .filter(|s| {
                let e = &s.entry;
                e.seq >= q.from_seq
                    && q.to_seq.is_none_or(|t| e.seq < t)
                    && q.source.as_ref().is_none_or(|v| &e.event.source == v)
                    && q.actor.as_ref().is_none_or(|v| &e.event.actor == v)
                    && q.action.as_ref().is_none_or(|v| &e.event.action == v)
                    && q.resource.as_ref().is_none_or(|v| &e.event.resource == v)
                    && q.outcome.as_ref().is_none_or(|v| &e.event.outcome == v)
                    && q.principal.as_ref().is_none_or(|v| &e.principal == v)
                    && q.since_ns.is_none_or(|t| e.timestamp_ns >= t)
                    && q.until_ns.is_none_or(|t| e.timestamp_ns < t)
            })
            .map(|s| s.entry.seq)
            .collect();
        assert_eq!(
            page.entries.iter().map(|s| s.entry.seq).collect::<Vec<_>>(),
            naive,
            "{q:?}"
        );
        assert_eq!(page.next_seq, None);
    }
    // Paging: a limit cuts the page and names where to go on.
    let q = ScanQuery {
        source: Some("d".into()),
        limit: 4,
        ..ScanQuery::default()
    };
    let page = reader.scan(&q).expect("scan");
    assert_eq!(
        page.entries.iter().map(|s| s.entry.seq).collect::<Vec<_>>(),
        vec![3, 7, 11, 15]
    );
    assert_eq!(page.next_seq, Some(19));
    // The same with a field that has no index.
    let page = reader
        .scan(&ScanQuery {
            outcome: Some("denied".into()),
            limit: 3,
            ..ScanQuery::default()
        })
        .expect("scan");
    assert_eq!(
        page.entries.iter().map(|s| s.entry.seq).collect::<Vec<_>>(),
        vec![3, 13, 23]
    );
    assert_eq!(page.next_seq, Some(33));
    // Bad requests.
    assert!(matches!(
        reader.scan(&ScanQuery {
            limit: 0,
            ..ScanQuery::default()
        }),
        Err(StoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        reader.scan(&ScanQuery {
            from_seq: 9,
            to_seq: Some(3),
            limit: 5,
            ..ScanQuery::default()
        }),
        Err(StoreError::InvalidArgument(_))
    ));
}

/// Hash tiles (C2SP tlog-tiles, height 8) are the stored perfect nodes, and
/// only the ones whose leaves the log holds: a full tile at level 0 is 256
/// leaf hashes, a partial one stops at the log's end, and level 1 holds the
/// roots of each 256 leaves.
#[tokio::test]
async fn tiles_are_the_stored_perfect_nodes_the_log_holds() {
    let mut h = Harness::new();
    h.fill("svc", 600, 100).await;
    let reader = &h.store().reader;
    let leaves: Vec<_> = (0..600)
        .map(|seq| reader.entry(seq).expect("read").expect("present").hash)
        .collect();
    assert_eq!(reader.tile_hashes(0, 0, 256).expect("full"), leaves[..256]);
    assert_eq!(
        reader.tile_hashes(0, 2, 88).expect("partial"),
        leaves[512..]
    );
    let roots = reader.tile_hashes(1, 0, 2).expect("level 1");
    for (i, root) in roots.iter().enumerate() {
        let tree = MemoryTree::from_leaves(leaves[i * 256..(i + 1) * 256].iter().copied());
        assert_eq!(*root, tree.root(), "level-1 hash {i}");
    }
    for (level, index, width) in [
        (0, 2, 89),
        (0, 2, 256),
        (0, 3, 1),
        (1, 0, 3),
        (8, 0, 1),
        (0, 0, 0),
    ] {
        assert!(
            matches!(
                reader.tile_hashes(level, index, width),
                Err(StoreError::OutOfRange(_))
            ),
            "tile {level}/{index}.p/{width} of a log of 600"
        );
    }
    // Entry bundles: the entries whose leaf hashes the level-0 tiles hold.
    let bundle_hashes = |index: u64, width: u16| -> Vec<_> {
        reader
            .entry_bundle(index, width)
            .expect("bundle")
            .iter()
            .map(|e| veritrail_core::entry_hash(&e.canonical))
            .collect()
    };
    assert_eq!(bundle_hashes(0, 256), leaves[..256]);
    assert_eq!(bundle_hashes(2, 88), leaves[512..]);
    for (index, width) in [(2, 89), (2, 256), (3, 1), (0, 0), (0, 257)] {
        assert!(
            matches!(
                reader.entry_bundle(index, width),
                Err(StoreError::OutOfRange(_))
            ),
            "entry bundle {index}.p/{width} of a log of 600"
        );
    }
}

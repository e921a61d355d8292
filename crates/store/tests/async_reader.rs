//! The async reader answers exactly what the blocking reader answers, errors
//! included, and never reads on the caller's thread.

mod common;

use common::{Harness, event};
use veritrail_store::{AsyncReader, AuditReader, ScanQuery, StoreError};

/// A log of 40 entries from two sources, with a recorded checkpoint.
async fn filled() -> Harness {
    let mut h = Harness::new();
    h.fill("billing", 25, 4).await;
    h.fill("auth", 15, 5).await;
    h
}

/// What an error says and which kind it is: `StoreError` has no equality.
fn error_of<T: std::fmt::Debug>(result: veritrail_store::Result<T>) -> (String, bool, String) {
    let error = result.expect_err("an error");
    let kind = format!("{error:?}");
    let kind = kind.split(['(', ' ', '{']).next().unwrap_or("").to_owned();
    (kind, error.is_fatal(), error.to_string())
}

#[tokio::test]
async fn every_read_answers_as_the_blocking_reader_does() {
    let h = filled().await;
    let blocking: AuditReader = h.store().reader.clone();
    let reader = AsyncReader::new(blocking.clone());

    assert_eq!(reader.origin(), blocking.origin());
    assert_eq!(reader.tail(), blocking.tail());
    assert_eq!(reader.snapshot_size(), blocking.snapshot_size());
    assert_eq!(*reader.watch_size().borrow(), 40);

    for seq in [0, 17, 39, 40, 1000] {
        assert_eq!(
            reader.entry(seq).await.expect("entry"),
            blocking.entry(seq).expect("entry")
        );
    }
    for (source, id) in [("billing", "e3"), ("auth", "e14"), ("auth", "missing")] {
        assert_eq!(
            reader.seq_of(source, id).await.expect("seq"),
            blocking.seq_of(source, id).expect("seq")
        );
        assert_eq!(
            reader
                .entry_by_event_id(source, id)
                .await
                .expect("by event id"),
            blocking.entry_by_event_id(source, id).expect("by event id")
        );
    }
    let query = ScanQuery {
        from_seq: 3,
        source: Some("auth".into()),
        limit: 4,
        ..ScanQuery::default()
    };
    let page = reader.scan(&query).await.expect("scan");
    assert_eq!(page, blocking.scan(&query).expect("scan"));
    assert_eq!(page.entries.len(), 4);
    assert_eq!(
        reader.verify_range(5, Some(30)).await.expect("verify"),
        blocking.verify_range(5, Some(30)).expect("verify")
    );
    for size in [0, 1, 33, 40] {
        assert_eq!(
            reader.root_at(size).await.expect("root"),
            blocking.root_at(size).expect("root")
        );
        assert_eq!(
            reader.frontier_at(size).await.expect("frontier"),
            blocking.frontier_at(size).expect("frontier")
        );
        assert_eq!(
            reader.checkpoint_at(size).await.expect("checkpoint"),
            blocking.checkpoint_at(size).expect("checkpoint")
        );
        assert_eq!(
            reader
                .consistency_proof(size / 2, size)
                .await
                .expect("proof"),
            blocking.consistency_proof(size / 2, size).expect("proof")
        );
    }
    for (seq, size) in [(0, 1), (7, 33), (39, 40)] {
        assert_eq!(
            reader.inclusion_proof(seq, size).await.expect("proof"),
            blocking.inclusion_proof(seq, size).expect("proof")
        );
        assert_eq!(
            reader
                .inclusion_proof_with_root(seq, size)
                .await
                .expect("proof"),
            blocking
                .inclusion_proof_with_root(seq, size)
                .expect("proof")
        );
    }
    assert_eq!(
        reader.signed_checkpoint(40).await.expect("checkpoint"),
        blocking.signed_checkpoint(40).expect("checkpoint")
    );
    assert_eq!(
        reader
            .latest_signed_checkpoint()
            .await
            .expect("latest checkpoint"),
        blocking
            .latest_signed_checkpoint()
            .expect("latest checkpoint")
    );
}

#[tokio::test]
async fn errors_are_the_blocking_reader_errors() {
    let h = filled().await;
    let blocking = h.store().reader.clone();
    let reader = AsyncReader::from(blocking.clone());

    let reversed = ScanQuery {
        from_seq: 9,
        to_seq: Some(2),
        limit: 1,
        ..ScanQuery::default()
    };
    let unlimited = ScanQuery::default();
    assert_eq!(
        error_of(reader.scan(&reversed).await),
        error_of(blocking.scan(&reversed))
    );
    assert_eq!(
        error_of(reader.scan(&unlimited).await),
        error_of(blocking.scan(&unlimited))
    );
    assert_eq!(
        error_of(reader.verify_range(0, Some(41)).await),
        error_of(blocking.verify_range(0, Some(41)))
    );
    assert_eq!(
        error_of(reader.root_at(41).await),
        error_of(blocking.root_at(41))
    );
    assert_eq!(
        error_of(reader.frontier_at(41).await),
        error_of(blocking.frontier_at(41))
    );
    assert_eq!(
        error_of(reader.inclusion_proof(40, 40).await),
        error_of(blocking.inclusion_proof(40, 40))
    );
    assert_eq!(
        error_of(reader.inclusion_proof_with_root(3, 41).await),
        error_of(blocking.inclusion_proof_with_root(3, 41))
    );
    assert_eq!(
        error_of(reader.consistency_proof(5, 4).await),
        error_of(blocking.consistency_proof(5, 4))
    );
    assert_eq!(
        error_of(reader.checkpoint_at(41).await),
        error_of(blocking.checkpoint_at(41))
    );
    let (kind, fatal, _) = error_of(reader.consistency_proof(5, 4).await);
    assert_eq!((kind.as_str(), fatal), ("InvalidArgument", false));
    let (kind, fatal, _) = error_of(reader.root_at(41).await);
    assert_eq!((kind.as_str(), fatal), ("OutOfRange", false));
}

/// The invariant the facade keeps: RocksDB is read on tokio's blocking pool,
/// never on the thread that awaits.
#[tokio::test]
async fn reads_run_on_the_blocking_pool() {
    let h = filled().await;
    let reader = AsyncReader::new(h.store().reader.clone());
    let caller = std::thread::current().id();
    let (thread, size) = reader
        .read(|r| Ok((std::thread::current().id(), r.tail().size)))
        .await
        .expect("read");
    assert_ne!(thread, caller, "the read ran on the caller's thread");
    assert_eq!(size, 40);
}

#[tokio::test]
async fn a_panicking_read_is_a_task_error() {
    let h = filled().await;
    let reader = AsyncReader::new(h.store().reader.clone());
    let failed = reader
        .read(|_| -> veritrail_store::Result<()> { panic!("a read that panics") })
        .await;
    assert!(matches!(failed, Err(StoreError::Task(_))), "{failed:?}");
    // The reader still serves after it.
    assert!(reader.entry(0).await.expect("entry").is_some());
}

#[tokio::test]
async fn a_backup_matches_the_log() {
    let mut h = filled().await;
    h.append("billing", vec![event("billing", "last")]).await;
    let reader = AsyncReader::new(h.store().reader.clone());
    let backup = reader.backup().await.expect("backup");
    assert_eq!(backup.tree_size, 41);
    assert_eq!(backup.root, reader.root_at(41).await.expect("root"));
    assert!(backup.bytes > 0);
}

//! Tampering with one node's files: fsck names each kind by sequence number, and
//! the store refuses to open where the cheap open-time check can see it.
//!
//! Each test builds a log with a quorum-signed checkpoint, closes the store, edits
//! the RocksDB files directly with the rocksdb crate (as an attacker with write
//! access to the disk would), and runs fsck.

mod common;

use common::{Harness, signers};
use rocksdb::{DB, Options};
use veritrail_core::merkle::{Frontier, MemoryTree, NodeSource};
use veritrail_core::{Entry, entry_hash};
use veritrail_store::{
    CheckpointRecord, Command, CommandResponse, FsckReport, ProblemKind, Store, StoreConfig,
    StoreError, fsck,
};

const SIZE: u64 = 40;
const CHECKPOINT: u64 = 32;

async fn log_with_checkpoint() -> Harness {
    let mut h = Harness::new();
    h.install_membership_with_keys().await;
    h.fill("svc", CHECKPOINT, 8).await;
    let mut note = h
        .store()
        .reader
        .checkpoint_at(CHECKPOINT)
        .expect("checkpoint")
        .to_note()
        .expect("note");
    for s in &signers()[..2] {
        note.sign(s).expect("sign");
    }
    let response = h
        .apply(Command::Checkpoint(CheckpointRecord {
            signed_note: note.to_string(),
        }))
        .await;
    assert_eq!(
        response,
        CommandResponse::CheckpointRecorded { size: CHECKPOINT }
    );
    h.fill("more", SIZE - CHECKPOINT, 4).await;
    h.close();
    assert!(
        fsck(h.dir.path()).expect("fsck").is_clean(),
        "clean before tampering"
    );
    h
}

fn raw(h: &Harness) -> DB {
    DB::open_cf(
        &Options::default(),
        h.dir.path().join("db"),
        common::COLUMN_FAMILIES,
    )
    .expect("raw open")
}

fn entry_bytes(db: &DB, seq: u64) -> Vec<u8> {
    db.get_cf(db.cf_handle("entries").expect("cf"), seq.to_be_bytes())
        .expect("get")
        .expect("present")
}

fn put_entry(db: &DB, seq: u64, bytes: &[u8]) {
    db.put_cf(
        db.cf_handle("entries").expect("cf"),
        seq.to_be_bytes(),
        bytes,
    )
    .expect("put");
}

fn first(report: &FsckReport) -> (Option<u64>, ProblemKind) {
    let p = report
        .first_problem()
        .unwrap_or_else(|| panic!("tampering went unnoticed"));
    (p.seq, p.kind)
}

#[tokio::test]
async fn a_flipped_byte_in_an_entry_is_named() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        // Change one letter of the resource: the entry still decodes.
        let mut bytes = entry_bytes(&db, 17);
        let at = bytes
            .windows(7)
            .position(|w| w == b"doc/e17")
            .expect("resource")
            + 4;
        bytes[at] ^= 0x20;
        put_entry(&db, 17, &bytes);
    }
    let report = fsck(h.dir.path()).expect("fsck");
    assert_eq!(
        first(&report),
        (Some(17), ProblemKind::MerkleNodeMismatch),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.seq == Some(18) && p.kind == ProblemKind::ChainBroken)
    );
}

#[tokio::test]
async fn a_deleted_entry_is_named() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        db.delete_cf(db.cf_handle("entries").expect("cf"), 9u64.to_be_bytes())
            .expect("delete");
    }
    let report = fsck(h.dir.path()).expect("fsck");
    assert_eq!(
        first(&report),
        (Some(9), ProblemKind::EntryMissing),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn swapped_entries_are_named() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        let (a, b) = (entry_bytes(&db, 5), entry_bytes(&db, 11));
        put_entry(&db, 5, &b);
        put_entry(&db, 11, &a);
    }
    let report = fsck(h.dir.path()).expect("fsck");
    assert_eq!(
        first(&report),
        (Some(5), ProblemKind::SeqMismatch),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_truncated_tail_is_named_and_refused_on_open() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        let cf = db.cf_handle("entries").expect("cf");
        for seq in 35..SIZE {
            db.delete_cf(cf, seq.to_be_bytes()).expect("delete");
        }
    }
    let report = fsck(h.dir.path()).expect("fsck");
    assert_eq!(
        first(&report),
        (Some(35), ProblemKind::TailMismatch),
        "{:?}",
        report.problems
    );
    let error =
        Store::open(h.dir.path(), &StoreConfig::new(common::ORIGIN)).expect_err("must refuse");
    assert!(
        matches!(error, StoreError::Integrity { seq: Some(39), .. }),
        "{error}"
    );
}

/// An attacker rewrites entries 20.. and recomputes everything derivable: the
/// chain, every Merkle node, the indexes and the tail. Only the quorum-signed
/// checkpoint at size 32 gives it away, and fsck says which range was altered.
#[tokio::test]
async fn a_consistently_recomputed_suffix_is_caught_by_the_checkpoint() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        let mut leaves = Vec::new();
        let mut prev = None;
        for seq in 0..SIZE {
            let mut bytes = entry_bytes(&db, seq);
            if seq >= 20 {
                let mut entry = Entry::decode(&bytes).expect("entry");
                entry.event.outcome = "forged".into();
                entry.prev_hash = prev.expect("previous hash");
                bytes = entry.encode();
                put_entry(&db, seq, &bytes);
            }
            let hash = entry_hash(&bytes);
            prev = Some(hash);
            leaves.push(hash);
        }
        let tree = MemoryTree::from_leaves(leaves.iter().copied());
        let merkle = db.cf_handle("merkle_nodes").expect("cf");
        for level in 0..8u8 {
            for index in 0..(SIZE >> level) {
                let node = tree
                    .nodes(&[veritrail_core::merkle::NodeId::new(level, index)])
                    .expect("node")[0];
                // Per db.rs: the node's last leaf, then its level.
                let last = ((index + 1) << level) - 1;
                let mut key = last.to_be_bytes().to_vec();
                key.push(level);
                db.put_cf(merkle, key, node.as_bytes()).expect("put");
            }
        }
        // The tail record, per the layout documented in db.rs.
        let frontier = tree.nodes(&Frontier::node_ids(SIZE)).expect("frontier");
        let last = Entry::decode(&entry_bytes(&db, SIZE - 1)).expect("entry");
        let mut tail = SIZE.to_be_bytes().to_vec();
        tail.extend_from_slice(leaves[(SIZE - 1) as usize].as_bytes());
        tail.extend_from_slice(&last.timestamp_ns.to_be_bytes());
        tail.push(frontier.len() as u8);
        for node in &frontier {
            tail.extend_from_slice(node.as_bytes());
        }
        db.put_cf(db.cf_handle("sm_meta").expect("cf"), b"tail", tail)
            .expect("put");
    }
    // The open-time check cannot see it: everything local agrees.
    drop(Store::open(h.dir.path(), &StoreConfig::new(common::ORIGIN)).expect("opens"));
    let report = fsck(h.dir.path()).expect("fsck");
    let problem = report.first_problem().expect("caught");
    assert_eq!(
        problem.kind,
        ProblemKind::CheckpointMismatch,
        "{:?}",
        report.problems
    );
    assert_eq!(
        problem.seq,
        Some(0),
        "no earlier checkpoint bounds the range: {problem:?}"
    );
    assert!(
        problem.detail.contains("from seq 0 to 31"),
        "{}",
        problem.detail
    );
}

/// The Raft log is read too: a node refuses to start on an entry that does not
/// decode, so `fsck` must not pass it (the chaos suite found `fsck` passing a
/// node whose damaged table held Raft log records).
#[tokio::test]
async fn a_raft_log_entry_that_does_not_decode_is_named() {
    let h = log_with_checkpoint().await;
    {
        let db = raw(&h);
        db.put_cf(
            db.cf_handle("raft_log").expect("cf"),
            7u64.to_be_bytes(),
            b"\xff\xff not a raft entry",
        )
        .expect("put");
    }
    let report = fsck(h.dir.path()).expect("fsck");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::RaftLogCorrupt && p.detail.contains("raft_log/7")),
        "{:?}",
        report.problems
    );
}

//! Co-signed checkpoints recorded through the Raft log.

mod common;

use common::{Harness, signers};
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::note::SignedNote;
use veritrail_store::{CheckpointRecord, Command, CommandResponse};

fn signed(h: &Harness, size: u64, who: &[usize]) -> String {
    let checkpoint = h.store().reader.checkpoint_at(size).expect("checkpoint");
    let mut note = checkpoint.to_note().expect("note");
    let signers = signers();
    for &i in who {
        note.sign(&signers[i]).expect("sign");
    }
    note.to_string()
}

#[tokio::test]
async fn quorum_signed_checkpoints_are_recorded_and_merged() {
    let mut h = Harness::new();
    h.install_membership_with_keys().await;
    h.fill("svc", 20, 5).await;
    let note = signed(&h, 20, &[0, 2]);
    let response = h
        .apply(Command::Checkpoint(CheckpointRecord { signed_note: note }))
        .await;
    assert_eq!(response, CommandResponse::CheckpointRecorded { size: 20 });
    // A later record with the third signature adds to the first.
    let third = signed(&h, 20, &[1, 2]);
    h.apply(Command::Checkpoint(CheckpointRecord { signed_note: third }))
        .await;
    let stored = h
        .store()
        .reader
        .signed_checkpoint(20)
        .expect("read")
        .expect("recorded");
    let keys = signers().iter().map(|s| s.public().clone()).collect();
    let verified = CheckpointVerifier::new(common::ORIGIN, keys, 3)
        .expect("trust")
        .verify(&stored)
        .expect("3 sigs");
    assert_eq!(verified.signers.len(), 3);
    assert_eq!(
        h.store()
            .reader
            .latest_signed_checkpoint()
            .expect("read")
            .map(|c| c.0),
        Some(20)
    );
}

#[tokio::test]
async fn checkpoints_without_a_quorum_are_refused_without_writing() {
    let mut h = Harness::new();
    h.install_membership_with_keys().await;
    h.fill("svc", 8, 8).await;
    let one = signed(&h, 8, &[1]);
    let response = h
        .apply(Command::Checkpoint(CheckpointRecord { signed_note: one }))
        .await;
    assert!(
        matches!(response, CommandResponse::CheckpointRejected { ref reason } if reason.contains("quorum")),
        "{response:?}"
    );
    let garbage = h
        .apply(Command::Checkpoint(CheckpointRecord {
            signed_note: "nonsense".into(),
        }))
        .await;
    assert!(matches!(
        garbage,
        CommandResponse::CheckpointRejected { .. }
    ));
    assert!(
        h.store()
            .reader
            .signed_checkpoint(8)
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_quorum_signed_checkpoint_this_node_disagrees_with_stops_it() {
    let mut h = Harness::new();
    h.install_membership_with_keys().await;
    h.fill("svc", 8, 8).await;
    let mut checkpoint = h.store().reader.checkpoint_at(8).expect("checkpoint");
    checkpoint.root.0[0] ^= 1;
    let mut note = SignedNote::new(&checkpoint.body()).expect("note");
    for s in &signers()[..2] {
        note.sign(s).expect("sign");
    }
    let entries = vec![openraft::Entry {
        log_id: common::log_id(h.next_index),
        payload: openraft::EntryPayload::Normal(Command::Checkpoint(CheckpointRecord {
            signed_note: note.to_string(),
        })),
    }];
    let mut sm = h.store().state_machine.clone();
    let result = openraft::storage::RaftStateMachine::apply(&mut sm, entries).await;
    let error = result.expect_err("a diverged node must not go on");
    assert!(
        error.to_string().contains("differs from the quorum"),
        "{error}"
    );
    assert!(
        h.store()
            .reader
            .signed_checkpoint(8)
            .expect("read")
            .is_none()
    );
}

//! Golden bytes of every postcard format that reaches a disk or another node
//! (issue #16), in the manner of Databend's meta-service compatibility tests:
//! each fixture in `testdata/formats/` holds the bytes of one value, written
//! once by the version that introduced the format and never edited. Every
//! test checks both ways: the value encodes to exactly the fixture's bytes,
//! and the fixture's bytes decode to exactly the value.
//!
//! A change that alters any of these bytes fails here. That is the point: the
//! Raft log, the vote and the state machine's records are read back after an
//! upgrade, and peers of two versions exchange these messages during a rolling
//! upgrade. A deliberate change gets a new format version, decoding of the
//! old fixtures kept, and new fixtures beside them.
//!
//! A fixture that does not exist yet is written when the test runs with
//! `VERITRAIL_BLESS=1` (never overwritten): that is how a new one is made.
//!
//! This module holds the checks and the fixtures of the public types; the
//! store's private records (the tail, the snapshot point, the snapshot file's
//! header) are pinned beside their code with the same [`golden`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StoredMembership, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;
use veritrail_core::{Event, Hash, Receipt, SubmittedEvent};

use crate::{
    AppendReceipt, AppendRequest, CheckpointRecord, Command, NodeInfo, Proposal, Rejection,
    RejectionKind, RequestOutcome, SignedProposal, SignedRequest, TypeConfig,
};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/formats")
        .join(format!("{name}.hex"))
}

/// Hex, 64 digits a line, so that a diff of two versions reads.
fn to_fixture(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(64)
        .map(|line| String::from_utf8_lossy(line).into_owned() + "\n")
        .collect()
}

/// Checks `value` against the fixture `name` both ways, in postcard.
pub(crate) fn golden<T>(name: &str, value: &T)
where
    T: Serialize + DeserializeOwned + std::fmt::Debug,
{
    let encoded = postcard::to_stdvec(value).expect("encodes");
    let Some(pinned) = pinned(name, &encoded) else {
        return;
    };
    let decoded: T = postcard::from_bytes(&pinned)
        .unwrap_or_else(|e| panic!("{name}: the fixture no longer decodes: {e}"));
    // Compared through Debug: several openraft types do not implement
    // PartialEq, and their Debug shows every field.
    assert_eq!(
        format!("{decoded:?}"),
        format!("{value:?}"),
        "{name}: the fixture decodes to another value"
    );
}

/// The fixture `name`'s bytes, checked equal to `encoded` (`None` when it was
/// just written).
pub(crate) fn pinned(name: &str, encoded: &[u8]) -> Option<Vec<u8>> {
    let path = fixture_path(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) if std::env::var_os("VERITRAIL_BLESS").is_some() => {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, to_fixture(encoded)).expect("write fixture");
            eprintln!("wrote {}", path.display());
            return None;
        }
        Err(e) => panic!(
            "fixture {} is missing ({e}); a new format writes its fixture once with \
             VERITRAIL_BLESS=1",
            path.display()
        ),
    };
    let pinned: String = text.split_whitespace().collect();
    let pinned = hex::decode(&pinned).expect("fixture is hex");
    assert_eq!(
        hex::encode(encoded),
        hex::encode(&pinned),
        "{name}: the encoding changed. Stored data and peers of the previous version \
         hold the old bytes: give the format a new version instead of changing this one"
    );
    Some(pinned)
}

pub(crate) fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

/// An event with every field set, attributes and a binary payload included.
fn full_event() -> Event {
    Event {
        source: "billing".into(),
        event_id: "01J9Z3K4QX7T8".into(),
        actor: "alice@example.com".into(),
        action: "invoice.refund".into(),
        resource: "invoice/8842".into(),
        outcome: "success".into(),
        event_time_ns: Some(1_767_225_600_123_456_789),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        attributes: BTreeMap::from([
            ("amount".into(), "42.00".into()),
            ("currency".into(), "EUR".into()),
        ]),
        payload: vec![0x00, 0x01, 0x7f, 0x80, 0xff],
    }
}

/// An event with only the required fields.
fn bare_event() -> Event {
    Event {
        source: "auth".into(),
        event_id: "e-1".into(),
        actor: "bob".into(),
        action: "login".into(),
        resource: "session/1".into(),
        outcome: "failure".into(),
        ..Event::default()
    }
}

fn members() -> BTreeMap<u64, NodeInfo> {
    (1..=3)
        .map(|id| {
            (
                id,
                NodeInfo {
                    addr: format!("10.0.0.{id}:7001"),
                    public_key: format!("golden.example/log/node-{id}+0000000{id}+AQ"),
                },
            )
        })
        .collect()
}

pub(crate) fn membership() -> Membership<u64, NodeInfo> {
    Membership::new(vec![BTreeSet::from([1, 2, 3])], members())
}

fn append_entry() -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(4, 2, 17),
        payload: EntryPayload::Normal(Command::Append(Proposal {
            proposed_at_ns: 1_767_225_600_000_000_000,
            requests: vec![
                AppendRequest {
                    principal: "spiffe://golden.example/service/billing".into(),
                    events: vec![full_event(), bare_event()],
                },
                AppendRequest {
                    principal: "anonymous".into(),
                    events: vec![bare_event()],
                },
            ],
        })),
    }
}

/// A signed event, by a deterministic key (seed 0x07...07) for the origin
/// `golden.example/log`.
fn signed_event() -> SubmittedEvent {
    let signer = veritrail_core::note::NoteSigner::from_seed("billing", &[7; 32]).expect("key");
    SubmittedEvent::signed(&signer, "golden.example/log", full_event())
}

/// Format 2: a batch with a signed event beside an unsigned one.
fn append_signed_entry() -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(4, 2, 19),
        payload: EntryPayload::Normal(Command::AppendSigned(SignedProposal {
            proposed_at_ns: 1_767_225_600_000_000_009,
            requests: vec![SignedRequest {
                principal: "spiffe://golden.example/service/billing".into(),
                events: vec![signed_event(), SubmittedEvent::unsigned(bare_event())],
            }],
        })),
    }
}

fn checkpoint_entry() -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(4, 2, 18),
        payload: EntryPayload::Normal(Command::Checkpoint(CheckpointRecord {
            signed_note: "golden.example/log\n3\nAAAA\n\n\u{2014} node-1 AAAA\n".into(),
        })),
    }
}

/// A command's variant is its format tag: the bytes of a command a later
/// release adds fail to decode here, and are never read as a command this
/// release knows.
#[test]
fn a_command_of_a_later_release_is_not_misread() {
    let known = postcard::to_stdvec(&Command::Checkpoint(CheckpointRecord {
        signed_note: "n".into(),
    }))
    .expect("encodes");
    // Postcard writes the variant index first, as a varint.
    assert_eq!(known[0], 1, "Checkpoint is the second command");
    let mut later = known.clone();
    later[0] = 3;
    postcard::from_bytes::<Command>(&later).expect_err("an unknown command");
}

/// The Raft log's entries (`raft_log` column family): client batches,
/// checkpoints, membership changes and a new leader's blank entry.
#[test]
fn raft_log_entries() {
    golden("raft-entry-append.v1", &append_entry());
    golden("raft-entry-checkpoint.v1", &checkpoint_entry());
    golden("raft-entry-append-signed.v2", &append_signed_entry());
    golden(
        "raft-entry-membership.v1",
        &Entry::<TypeConfig> {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Membership(membership()),
        },
    );
    golden(
        "raft-entry-blank.v1",
        &Entry::<TypeConfig> {
            log_id: log_id(5, 3, 19),
            payload: EntryPayload::Blank,
        },
    );
}

/// `raft_meta`: the vote, the committed hint and the purge marker; and
/// `sm_meta`: the last applied log id and the membership.
#[test]
fn raft_and_state_machine_metadata() {
    let mut vote = Vote::new(7, 2);
    golden("vote-uncommitted.v1", &vote);
    vote.commit();
    golden("vote-committed.v1", &vote);
    golden("log-id-option.v1", &Some(log_id(7, 2, 1234)));
    golden("log-id-none.v1", &Option::<LogId<u64>>::None);
    golden("log-id.v1", &log_id(7, 2, 99));
    golden(
        "stored-membership.v1",
        &StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
    );
}

/// What peers exchange: openraft's messages inside `RaftPayload`, and the
/// `ForwardAppend` request and answer.
#[test]
fn peer_messages() {
    golden(
        "append-entries-request.v1",
        &AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(4, 2),
            prev_log_id: Some(log_id(4, 2, 16)),
            leader_commit: Some(log_id(4, 2, 15)),
            entries: vec![append_entry(), checkpoint_entry()],
        },
    );
    golden(
        "append-entries-response-success.v1",
        &Ok::<AppendEntriesResponse<u64>, openraft::error::RaftError<u64>>(
            AppendEntriesResponse::Success,
        ),
    );
    golden(
        "append-entries-response-higher-vote.v1",
        &Ok::<AppendEntriesResponse<u64>, openraft::error::RaftError<u64>>(
            AppendEntriesResponse::HigherVote(Vote::new(9, 3)),
        ),
    );
    golden(
        "vote-request.v1",
        &VoteRequest::<u64> {
            vote: Vote::new(5, 3),
            last_log_id: Some(log_id(4, 2, 18)),
        },
    );
    golden(
        "vote-response.v1",
        &Ok::<VoteResponse<u64>, openraft::error::RaftError<u64>>(VoteResponse {
            vote: Vote::new(5, 3),
            vote_granted: true,
            last_log_id: Some(log_id(4, 2, 18)),
        }),
    );
    golden(
        "forward-append-events.v1",
        &vec![full_event(), bare_event()],
    );
    golden(
        "forward-append-events.v2",
        &vec![signed_event(), SubmittedEvent::unsigned(bare_event())],
    );
    golden(
        "forward-append-outcome-accepted.v1",
        &RequestOutcome::Accepted(vec![AppendReceipt {
            receipt: Receipt {
                seq: 41,
                entry_hash: Hash([0xab; 32]),
                timestamp_ns: 1_767_225_600_000_000_007,
            },
            duplicate: true,
        }]),
    );
    golden(
        "forward-append-outcome-rejected.v1",
        &RequestOutcome::Rejected(Rejection {
            event_index: 3,
            kind: RejectionKind::Conflict,
            message: "billing/01J9Z3K4QX7T8 is already in the log as another event".into(),
        }),
    );
}

fn snapshot_meta() -> openraft::SnapshotMeta<u64, NodeInfo> {
    openraft::SnapshotMeta {
        last_log_id: Some(log_id(4, 2, 18)),
        last_membership: StoredMembership::new(Some(log_id(1, 1, 1)), membership()),
        snapshot_id: "4-2-18-77".into(),
    }
}

/// `sm_meta/tail`: the state machine's position, in its own big-endian
/// layout (size, head, last timestamp, frontier).
#[test]
fn tail_record() {
    let tail = crate::tail::Tail {
        size: 5,
        head: Hash([0x11; 32]),
        last_timestamp_ns: 1_767_225_600_000_000_042,
        frontier: veritrail_core::merkle::Frontier::from_parts(
            5,
            vec![Hash([0x22; 32]), Hash([0x33; 32])],
        )
        .expect("a frontier of size 5 has two nodes"),
    };
    let encoded = tail.encode();
    if let Some(pinned) = pinned("tail.v1", &encoded) {
        let decoded = crate::tail::Tail::decode(&pinned).expect("the fixture decodes");
        assert_eq!(decoded.encode(), encoded, "tail.v1 decodes to another tail");
        assert_eq!(decoded.size, tail.size);
        assert_eq!(decoded.root(), tail.root());
    }
}

/// `sm_meta/snapshot_point`: the snapshot's Raft point and tree size.
#[test]
fn snapshot_point_record() {
    golden(
        "snapshot-point.v1",
        &crate::snapshot::SnapshotRecord {
            meta: snapshot_meta(),
            size: 1234,
        },
    );
}

/// The snapshot file's header, sent to followers and written by backups.
#[test]
fn snapshot_file_header() {
    golden(
        "snapshot-header.v1",
        &crate::snapshot::golden_header(snapshot_meta()),
    );
}

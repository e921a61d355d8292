//! Evidence bundles: a valid bundle verifies, and every kind of tampering fails
//! with a reason and, where one exists, the first bad sequence number.

use veritrail_core::bundle::{
    BUNDLE_FORMAT, BundleHeader, BundleReport, entry_line, verify_bundle,
};
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::merkle::{Frontier, MemoryTree, NodeSource, consistency_proof, root_at};
use veritrail_core::note::{NoteKey, NoteSigner, SignedNote};
use veritrail_core::{Checkpoint, Entry, Event, genesis_hash};

const ORIGIN: &str = "audit.example.com/test";

struct Log {
    entries: Vec<Vec<u8>>,
    tree: MemoryTree,
    signers: Vec<NoteSigner>,
}

impl Log {
    fn new(n: u64) -> Self {
        let mut prev = genesis_hash(ORIGIN);
        let mut entries = Vec::new();
        for seq in 0..n {
            let entry = Entry {
                seq,
                timestamp_ns: 1_000_000 + seq * 10,
                prev_hash: prev,
                principal: "svc-a".into(),
                event: Event {
                    source: "svc-a".into(),
                    event_id: format!("id-{seq}"),
                    actor: "alice".into(),
                    action: "read".into(),
                    resource: format!("doc/{seq}"),
                    outcome: "success".into(),
                    payload: vec![seq as u8; (seq % 7) as usize],
                    ..Event::default()
                },
                signature: None,
            };
            prev = entry.hash();
            entries.push(entry.encode());
        }
        let tree = MemoryTree::from_leaves(entries.iter().map(|b| veritrail_core::entry_hash(b)));
        let signers = (1u8..=3)
            .map(|i| {
                NoteSigner::from_seed(&format!("{ORIGIN}/node-{i}"), &[i; 32]).expect("signer")
            })
            .collect();
        Log {
            entries,
            tree,
            signers,
        }
    }

    fn keys(&self) -> Vec<NoteKey> {
        self.signers.iter().map(|s| s.public().clone()).collect()
    }

    fn trust(&self) -> CheckpointVerifier {
        CheckpointVerifier::majority(ORIGIN, self.keys()).expect("trust")
    }

    fn checkpoint(&self, size: u64, signers: &[usize]) -> String {
        let last = size
            .checked_sub(1)
            .map(|i| Entry::decode(&self.entries[i as usize]).expect("entry"));
        let checkpoint = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: root_at(&self.tree, size).expect("root"),
            head: last.as_ref().map_or(genesis_hash(ORIGIN), Entry::hash),
            timestamp_ns: last.as_ref().map_or(0, |e| e.timestamp_ns),
        };
        let mut note = checkpoint.to_note().expect("note");
        for &i in signers {
            note.sign(&self.signers[i]).expect("sign");
        }
        note.to_string()
    }

    fn header(&self, start: u64, end: u64, checkpoint: String, size: u64) -> BundleHeader {
        BundleHeader {
            format: BUNDLE_FORMAT.into(),
            origin: ORIGIN.into(),
            start,
            count: end - start,
            checkpoint,
            keys: self.keys().iter().map(ToString::to_string).collect(),
            quorum: 2,
            left_frontier: self
                .tree
                .nodes(&Frontier::node_ids(start))
                .expect("frontier"),
            consistency_proof: consistency_proof(&self.tree, end, size).expect("proof"),
        }
    }

    fn bundle_with(&self, header: &BundleHeader, lines: &[String]) -> String {
        let mut text = header.to_line();
        for line in lines {
            text.push_str(line);
        }
        text
    }

    fn lines(&self, start: u64, end: u64) -> Vec<String> {
        self.entries[start as usize..end as usize]
            .iter()
            .map(|b| entry_line(b))
            .collect()
    }

    fn bundle(&self, start: u64, end: u64, size: u64) -> String {
        let header = self.header(start, end, self.checkpoint(size, &[0, 1, 2]), size);
        self.bundle_with(&header, &self.lines(start, end))
    }
}

fn failed(report: &BundleReport) -> (Option<u64>, String) {
    assert!(!report.ok, "expected failure, got {report:?}");
    let failure = report.failure.clone().expect("failure present");
    (failure.seq, failure.reason)
}

#[test]
fn valid_bundles_of_every_shape_verify() {
    let log = Log::new(23);
    let trust = log.trust();
    for (start, end, size) in [
        (0, 23, 23),
        (0, 10, 23),
        (5, 17, 23),
        (16, 23, 23),
        (7, 7, 23),
        (0, 0, 0),
        (22, 23, 23),
        (1, 2, 2),
    ] {
        let report = verify_bundle(&log.bundle(start, end, size), Some(&trust));
        assert!(report.ok, "[{start}, {end}) @ {size}: {report:?}");
        assert_eq!(report.tree_size, Some(size));
        assert!(!report.keys_from_bundle);
        assert_eq!(report.signers.len(), 3);
    }
    // Without trusted keys the bundle's own are used, and the report says so.
    let report = verify_bundle(&log.bundle(3, 9, 23), None);
    assert!(report.ok && report.keys_from_bundle);
}

#[test]
fn a_flipped_byte_in_any_entry_fails_and_names_the_entry() {
    let log = Log::new(12);
    let trust = log.trust();
    let (start, end, size) = (2u64, 11u64, 12u64);
    let header = log.header(start, end, log.checkpoint(size, &[0, 1]), size);
    for victim in start..end {
        let raw = &log.entries[victim as usize];
        for at in [0, raw.len() / 2, raw.len() - 1] {
            let mut lines = log.lines(start, end);
            let mut bytes = raw.clone();
            bytes[at] ^= 0x01;
            lines[(victim - start) as usize] = entry_line(&bytes);
            let report = verify_bundle(&log.bundle_with(&header, &lines), Some(&trust));
            let (seq, reason) = failed(&report);
            // The altered entry either fails to decode / carries a wrong seq (found
            // at itself), breaks the link to its successor (found one later), or,
            // as the last entry, fails the root.
            match seq {
                Some(s) => assert!(
                    s == victim || s == victim + 1,
                    "victim {victim}, reported {s}: {reason}"
                ),
                None => assert!(victim == end - 1, "victim {victim}: {reason}"),
            }
        }
    }
}

#[test]
fn dropped_swapped_and_extra_entries_fail() {
    let log = Log::new(10);
    let trust = log.trust();
    let header = log.header(0, 10, log.checkpoint(10, &[0, 1, 2]), 10);
    let lines = log.lines(0, 10);

    let mut dropped = lines.clone();
    dropped.remove(4);
    let (seq, reason) = failed(&verify_bundle(
        &log.bundle_with(&header, &dropped),
        Some(&trust),
    ));
    assert_eq!(seq, Some(4), "{reason}");

    let mut swapped = lines.clone();
    swapped.swap(3, 6);
    let (seq, _) = failed(&verify_bundle(
        &log.bundle_with(&header, &swapped),
        Some(&trust),
    ));
    assert_eq!(seq, Some(3));

    let mut extra = lines.clone();
    extra.push(lines[9].clone());
    let (seq, reason) = failed(&verify_bundle(
        &log.bundle_with(&header, &extra),
        Some(&trust),
    ));
    assert_eq!(seq, Some(10));
    assert!(reason.contains("more entry lines"), "{reason}");

    let mut bad_base64 = lines.clone();
    bad_base64[2] = "not base64!\n".into();
    let (seq, _) = failed(&verify_bundle(
        &log.bundle_with(&header, &bad_base64),
        Some(&trust),
    ));
    assert_eq!(seq, Some(2));
}

#[test]
fn a_recomputed_suffix_fails_against_the_signed_root() {
    // Rewrite entries 6.. with consistently recomputed hashes: the chain holds, the
    // Merkle root does not match the signed checkpoint.
    let log = Log::new(10);
    let trust = log.trust();
    let header = log.header(0, 10, log.checkpoint(10, &[0, 1, 2]), 10);
    let mut lines = log.lines(0, 6);
    let mut prev = Entry::decode(&log.entries[5]).expect("entry").hash();
    for seq in 6..10 {
        let mut entry = Entry::decode(&log.entries[seq]).expect("entry");
        entry.event.outcome = "forged".into();
        entry.prev_hash = prev;
        prev = entry.hash();
        lines.push(entry_line(&entry.encode()));
    }
    let (seq, reason) = failed(&verify_bundle(
        &log.bundle_with(&header, &lines),
        Some(&trust),
    ));
    assert_eq!(seq, None);
    assert!(reason.contains("checkpoint's root"), "{reason}");
}

#[test]
fn checkpoint_tampering_fails() {
    let log = Log::new(8);
    let trust = log.trust();
    let lines = log.lines(0, 8);

    // An altered body.
    let note = log.checkpoint(8, &[0, 1, 2]).replacen("\n8\n", "\n9\n", 1);
    let (_, reason) = failed(&verify_bundle(
        &log.bundle_with(&log.header(0, 8, note, 8), &lines),
        Some(&trust),
    ));
    assert!(reason.contains("does not verify"), "{reason}");

    // A signature by a key the auditor does not know is skipped: a quorum of
    // the trusted keys signed, so the bundle verifies; alone beside too few
    // trusted signatures it makes up nothing.
    let stranger = NoteSigner::from_seed(&format!("{ORIGIN}/node-9"), &[9; 32]).expect("signer");
    let mut note = SignedNote::parse(&log.checkpoint(8, &[0, 1])).expect("note");
    note.sign(&stranger).expect("sign");
    let report = verify_bundle(
        &log.bundle_with(&log.header(0, 8, note.to_string(), 8), &lines),
        Some(&trust),
    );
    assert!(
        report.ok,
        "a stranger's signature beside a quorum of trusted ones: {report:?}"
    );
    let mut note = SignedNote::parse(&log.checkpoint(8, &[0])).expect("note");
    note.sign(&stranger).expect("sign");
    let (_, reason) = failed(&verify_bundle(
        &log.bundle_with(&log.header(0, 8, note.to_string(), 8), &lines),
        Some(&trust),
    ));
    assert!(reason.contains("quorum is 2"), "{reason}");

    // Fewer signatures than the quorum.
    let note = log.checkpoint(8, &[2]);
    let (_, reason) = failed(&verify_bundle(
        &log.bundle_with(&log.header(0, 8, note, 8), &lines),
        Some(&trust),
    ));
    assert!(reason.contains("quorum is 2"), "{reason}");

    // A checkpoint quorum-signed by keys the auditor does not trust, which the
    // bundle's own key list names: only the auditor's keys count.
    let mut forged = SignedNote::parse(&log.checkpoint(8, &[0])).expect("note");
    let other = NoteSigner::from_seed(&format!("{ORIGIN}/node-8"), &[8; 32]).expect("signer");
    forged.sign(&other).expect("sign");
    let mut header = log.header(0, 8, forged.to_string(), 8);
    header.keys.push(other.public().to_string());
    let (_, reason) = failed(&verify_bundle(
        &log.bundle_with(&header, &lines),
        Some(&trust),
    ));
    assert!(reason.contains("quorum is 2"), "{reason}");
}

#[test]
fn malformed_files_fail_with_a_reason() {
    let log = Log::new(4);
    let trust = log.trust();
    let good = log.bundle(0, 4, 4);
    let cases = [
        String::new(),
        good.trim_end().to_owned(),
        good.replacen(BUNDLE_FORMAT, "veritrail-evidence-bundle/9", 1),
        good.replacen("\"start\":0", "\"start\":1", 1),
        good.replacen("\"count\":4", "\"count\":5", 1),
        format!("{{}}\n{}", good.split_once('\n').expect("lines").1),
        good.replacen("\"quorum\":2", "\"quorum\":2,\"extra\":1", 1),
    ];
    for text in cases {
        let report = verify_bundle(&text, Some(&trust));
        let (_, reason) = failed(&report);
        assert!(!reason.is_empty());
    }
}

#[test]
fn range_past_the_checkpoint_fails() {
    let log = Log::new(8);
    let trust = log.trust();
    // Entries [0, 8) against a checkpoint of size 6.
    let mut header = log.header(0, 6, log.checkpoint(6, &[0, 1]), 6);
    header.count = 8;
    let (_, reason) = failed(&verify_bundle(
        &log.bundle_with(&header, &log.lines(0, 8)),
        Some(&trust),
    ));
    assert!(reason.contains("past the checkpoint"), "{reason}");
}

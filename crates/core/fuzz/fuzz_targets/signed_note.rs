//! C2SP signed notes, key strings and checkpoint bodies from arbitrary text.
//!
//! Parsing and verification against the three fixed vector keys must never
//! panic. What parses must print back to the same text (signature base64 and
//! checkpoint bodies are canonical), and a parsed note text re-signed by the
//! fixed keys must verify.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use veritrail_core::Checkpoint;
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::note::{NoteKey, NoteSigner, SignedNote};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text: &str = &text;
    let keys = common::keys();

    // Key strings.
    if let Ok(key) = NoteKey::parse(text) {
        assert_eq!(NoteKey::parse(&key.to_string()).as_ref(), Ok(&key));
    }
    if let Ok(signer) = NoteSigner::parse(text) {
        let again = NoteSigner::parse(&signer.to_signer_string()).expect("own signer string");
        assert_eq!(again.public(), signer.public());
    }

    // Signed notes.
    if let Ok(note) = SignedNote::parse(text) {
        assert_eq!(note.to_string(), text, "signed note does not print back");
        // Quorums outside 1..=keys are refused before any signature is checked.
        assert!(note.verify(&keys, 0).is_err());
        assert!(note.verify(&keys, keys.len() + 1).is_err());
        assert!(note.verify(&[], 1).is_err());
        if let Ok(signers) = note.verify(&keys, 1) {
            assert!(!signers.is_empty() && signers.len() <= keys.len());
            assert_eq!(
                note.verify(&keys, signers.len()).as_ref(),
                Ok(&signers),
                "quorum met by these signers refused"
            );
        }
        // Two trusted keys with the same name and id are refused, not trusted twice.
        let twice = [keys[0].clone(), keys[0].clone()];
        assert!(note.verify(&twice, 1).is_err());

        let mut fresh = SignedNote::new(note.text()).expect("a parsed note text is valid");
        for signer in common::signers() {
            fresh.sign(signer).expect("sign a valid text");
        }
        assert_eq!(
            fresh.verify(&keys, keys.len()).map(|s| s.len()),
            Ok(keys.len()),
            "a text signed by every key does not verify"
        );
        let reparsed = SignedNote::parse(&fresh.to_string()).expect("own note parses");
        assert_eq!(reparsed, fresh);

        let _ = Checkpoint::parse(note.text());
    }

    // Checkpoint bodies.
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(checkpoint.body(), text, "checkpoint body is not canonical");
        let note = checkpoint
            .sign(&common::signers()[0])
            .expect("a parsed checkpoint can be signed");
        let verifier =
            CheckpointVerifier::new(&checkpoint.origin, keys[..1].to_vec(), 1).expect("verifier");
        let verified = verifier
            .verify(&note.to_string())
            .expect("own signature verifies");
        assert_eq!(verified.checkpoint, checkpoint);
    }

    // Signed checkpoints against the fixed trust.
    let verifier = CheckpointVerifier::majority(common::ORIGIN, keys).expect("verifier");
    if let Ok(verified) = verifier.verify(text) {
        assert!(verified.signers.len() >= verifier.quorum());
        assert_eq!(verified.checkpoint.origin, common::ORIGIN);
        assert_eq!(verified.note.to_string(), text);
    }
});

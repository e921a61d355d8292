//! Fixed keys shared by the targets: the three test keys of
//! `crates/core/testdata/vectors.json` (seeds `0x01…01`, `0x02…02`, `0x03…03`),
//! so that the signed notes and bundles of the seed corpus verify against them.

#![allow(dead_code)]

use std::sync::OnceLock;

use veritrail_core::note::{NoteKey, NoteSigner};

/// The origin of the golden vectors.
pub const ORIGIN: &str = "vectors.veritrail.example/log";

/// The three vector signers, `<ORIGIN>/node-1` to `<ORIGIN>/node-3`.
pub fn signers() -> &'static [NoteSigner] {
    static SIGNERS: OnceLock<Vec<NoteSigner>> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        (1u8..=3)
            .map(|i| {
                NoteSigner::from_seed(&format!("{ORIGIN}/node-{i}"), &[i; 32])
                    .expect("fixed test signer")
            })
            .collect()
    })
}

/// The verifier keys of [`signers`].
pub fn keys() -> Vec<NoteKey> {
    signers().iter().map(|s| s.public().clone()).collect()
}

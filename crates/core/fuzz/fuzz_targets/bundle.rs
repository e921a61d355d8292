//! Evidence bundles from arbitrary bytes, read line by line as
//! `veritrail verify-bundle` reads a file (crates/cli/src/verify.rs): a header line
//! of at most `BUNDLE_HEADER_MAX_BYTES`, then entry lines of at most the base64 of
//! the largest entry, each ending in a newline and valid UTF-8.
//!
//! Each input is checked three ways, none of which may panic:
//! 1. against the fixed vector keys (quorum 2), streamed; the in-memory
//!    `verify_bundle` must reach the same verdict;
//! 2. against the bundle's own keys and quorum, streamed; again compared with
//!    `verify_bundle(text, None)`;
//! 3. with the header's checkpoint text re-signed by two of the fixed keys, so that
//!    mutated checkpoint bodies get past the signature check and reach the range,
//!    frontier, chain and consistency checks.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use veritrail_core::FORMAT_ENTRY_MAX_BYTES;
use veritrail_core::bundle::{
    BUNDLE_HEADER_MAX_BYTES, BundleHeader, BundleVerifier, verify_bundle,
};
use veritrail_core::checkpoint::{CheckpointVerifier, validate_origin};
use veritrail_core::note::SignedNote;

/// Longest entry line, newline included, as the CLI reader bounds it.
const ENTRY_LINE_MAX_BYTES: usize = FORMAT_ENTRY_MAX_BYTES.div_ceil(3) * 4 + 1;

/// The next line of at most `max` bytes, newline included, as the CLI's
/// `read_line` returns it: `None` at the end, an error for an overlong line, a
/// last line without its newline, or a line that is not UTF-8.
fn next_line<'a>(rest: &mut &'a [u8], max: usize) -> Option<Result<&'a str, String>> {
    if rest.is_empty() {
        return None;
    }
    let window = &rest[..rest.len().min(max + 1)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        *rest = &[];
        return Some(Err(if window.len() > max {
            "line too long".into()
        } else {
            "line does not end in a newline".into()
        }));
    };
    if newline + 1 > max {
        *rest = &[];
        return Some(Err("line too long".into()));
    }
    let line = &rest[..=newline];
    *rest = &rest[newline + 1..];
    Some(std::str::from_utf8(line).map_err(|_| "line is not UTF-8".to_owned()))
}

/// Streams a bundle through `BundleVerifier`. Without `trust`, the bundle's own
/// origin, keys and quorum are used, as the CLI does when given no keys.
/// `resign` replaces the header's checkpoint before verification.
fn stream(data: &[u8], trust: Option<&CheckpointVerifier>, resign: bool) -> Result<usize, String> {
    let mut rest = data;
    let header_line = next_line(&mut rest, BUNDLE_HEADER_MAX_BYTES).ok_or("empty bundle")??;
    let mut header = BundleHeader::parse(header_line).map_err(|e| e.to_string())?;
    let own;
    let trust = match (trust, resign) {
        (Some(trust), false) => trust,
        (None, false) => {
            let keys = header.parse_keys().map_err(|e| e.to_string())?;
            own = CheckpointVerifier::new(&header.origin, keys, header.quorum)
                .map_err(|e| e.to_string())?;
            &own
        }
        (_, true) => {
            validate_origin(&header.origin).map_err(|e| e.to_string())?;
            let text = match SignedNote::parse(&header.checkpoint) {
                Ok(note) => note.text().to_owned(),
                Err(_) => header.checkpoint.clone(),
            };
            let mut note = SignedNote::new(&text).map_err(|e| e.to_string())?;
            for signer in &common::signers()[..2] {
                note.sign(signer).map_err(|e| e.to_string())?;
            }
            header.checkpoint = note.to_string();
            own = CheckpointVerifier::new(&header.origin, common::keys(), 2)
                .map_err(|e| e.to_string())?;
            &own
        }
    };
    let mut verifier = BundleVerifier::start(header, trust).map_err(|f| f.reason)?;
    let mut lines = 0;
    while let Some(line) = next_line(&mut rest, ENTRY_LINE_MAX_BYTES) {
        verifier.push_line(line?).map_err(|f| f.reason)?;
        lines += 1;
    }
    verifier.finish().map_err(|f| f.reason)?;
    Ok(lines)
}

fuzz_target!(|data: &[u8]| {
    let trust = CheckpointVerifier::new(common::ORIGIN, common::keys(), 2).expect("trust");
    let text = std::str::from_utf8(data).ok();

    let trusted = stream(data, Some(&trust), false);
    if let Some(text) = text {
        let report = verify_bundle(text, Some(&trust));
        assert_eq!(
            report.ok,
            trusted.is_ok(),
            "streamed and in-memory verification disagree: {trusted:?} vs {:?}",
            report.failure
        );
        if let Ok(lines) = trusted {
            assert_eq!(report.count, Some(lines as u64));
        }
    }

    let own = stream(data, None, false);
    if let Some(text) = text {
        let report = verify_bundle(text, None);
        assert_eq!(
            report.ok,
            own.is_ok(),
            "streamed and in-memory verification disagree: {own:?} vs {:?}",
            report.failure
        );
    }

    let _ = stream(data, None, true);
});

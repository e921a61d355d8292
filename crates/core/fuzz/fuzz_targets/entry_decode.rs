//! Canonical entry decoding from arbitrary bytes.
//!
//! Decoding must never panic, and whatever decodes must re-encode to exactly the
//! input (docs/FORMAT.md 2.2: one entry, one encoding). The decoded entry is then
//! validated and pushed through the chain checker positioned at its own seq, with
//! and without a Merkle frontier, which must accept it unless it carries an
//! event signature that does not verify (nearly every signed input here).

#![no_main]

use libfuzzer_sys::fuzz_target;
use veritrail_core::merkle::Frontier;
use veritrail_core::{
    ChainVerifier, Entry, Error, Hash, Limits, entry_hash, genesis_hash, validate_principal,
};

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = Entry::decode(data) else {
        return;
    };

    // Canonical: the one encoding of the decoded entry is the input.
    assert_eq!(
        entry.encode(),
        data,
        "decoded entry re-encodes to other bytes"
    );
    let mut buf = vec![0xa5];
    entry.encode_into(&mut buf);
    assert_eq!(&buf[1..], data, "encode_into differs from encode");
    assert_eq!(entry.hash(), entry_hash(data));
    assert_eq!(entry.receipt().seq, entry.seq);

    // Validation of decoded content never panics, whatever the policy.
    let _ = entry.event.validate(&Limits::format_maximum());
    let _ = entry.event.validate(&Limits::default());
    let _ = validate_principal(&entry.principal, &Limits::format_maximum());

    const ORIGIN: &str = "fuzz.example/log";
    let signed_badly = entry.verify_signature(ORIGIN).is_err();

    // The chain checker, positioned where this entry belongs, accepts it.
    let mut chain = ChainVerifier::resume(
        ORIGIN,
        entry.seq,
        Some(entry.prev_hash),
        Some(entry.timestamp_ns),
        None,
    )
    .expect("resume without a frontier");
    // Seq u64::MAX is no leaf index (a tree holds at most u64::MAX leaves): the
    // one entry that is refused, with an error, at its own position.
    let last_seq = entry.seq == u64::MAX;
    let refused: Result<(), Error> = Err(Error::IndexOutOfRange {
        index: u64::MAX,
        size: u64::MAX,
    });
    match chain.push(data) {
        Err(Error::ChainBroken { fault: veritrail_core::chain::ChainFault::BadEventSignature { .. }, .. }) => {
            assert!(signed_badly, "a signature that verifies was refused");
        }
        Ok(pushed) => {
            assert!(!last_seq, "entry at seq u64::MAX accepted");
            assert!(!signed_badly, "a signature that does not verify was accepted");
            assert_eq!(pushed, entry);
            assert_eq!(chain.head(), Some(entry_hash(data)));
            assert_eq!(chain.last_timestamp_ns(), Some(entry.timestamp_ns));
            assert_eq!(chain.next_seq(), entry.seq + 1);
        }
        Err(e) => {
            assert!(last_seq, "entry refused at its own position: {e}");
            assert_eq!(Err::<(), Error>(e), refused);
        }
    }

    // Same with a Merkle frontier of the right shape for its seq.
    let nodes = vec![Hash([0x11; 32]); entry.seq.count_ones() as usize];
    let frontier = Frontier::from_parts(entry.seq, nodes).expect("frontier of the right shape");
    let mut chain = ChainVerifier::resume(ORIGIN, entry.seq, None, None, Some(frontier))
        .expect("resume with a matching frontier");
    match chain.push(data) {
        Err(Error::ChainBroken { .. }) if signed_badly && !last_seq => {}
        Ok(_) => assert!(!last_seq, "entry at seq u64::MAX accepted"),
        Err(e) => {
            assert!(last_seq, "entry refused after a frontier of its size: {e}");
            assert_eq!(Err::<(), Error>(e), refused);
        }
    }

    // From genesis: accepted exactly when it is the first entry of that log.
    let mut chain = ChainVerifier::from_genesis(ORIGIN);
    let first = entry.seq == 0 && entry.prev_hash == genesis_hash(ORIGIN) && !signed_badly;
    assert_eq!(chain.push(data).is_ok(), first);
});

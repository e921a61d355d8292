//! `veritrail-core`: the verifiable core of the Veritrail audit log.
//!
//! Everything an auditor's trust rests on lives here, and nothing else does: how an
//! audit event becomes canonical bytes ([`Entry`]), how entries chain by hash, the
//! RFC 6962 Merkle tree and its proofs ([`merkle`]), checkpoints co-signed by the
//! cluster's nodes as C2SP signed notes ([`checkpoint`], [`note`]), and evidence
//! bundles an auditor verifies offline ([`bundle`]).
//!
//! **Architecture invariant:** this crate is pure. It does no I/O, spawns nothing,
//! reads no clock and draws no randomness; every function is deterministic. It never
//! panics on untrusted bytes: malformed input is an [`Error`].
//!
//! The byte-level formats are specified in `docs/FORMAT.md`; golden vectors in
//! `crates/core/testdata/vectors.json` pin them.

pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod cosignature;
mod encoding;
mod entry;
mod error;
mod event;
mod hash;
pub mod key_set;
mod limits;
pub mod merkle;
pub mod note;
pub mod policy;
mod query;
mod served;
pub mod signature;
pub mod signers;

pub use chain::ChainVerifier;
pub use checkpoint::Checkpoint;
pub use entry::{Entry, Receipt, entry_hash};
pub use error::Error;
pub use event::{Event, is_display_hazard, validate_principal};
pub use hash::{HASH_LEN_BYTES, Hash, genesis_hash};
pub use key_set::KeySet;
pub use limits::{
    FORMAT_ATTRIBUTES_MAX_COUNT, FORMAT_ENTRY_MAX_BYTES, FORMAT_FIELD_MAX_BYTES,
    FORMAT_PAYLOAD_MAX_BYTES, Limits,
};
pub use query::{ScanQuery, TailQuery};
pub use served::{ConsistencyProof, InclusionProof, LogEntry, RangeReport, SignedCheckpoint};
pub use signature::{EventSignature, SubmittedEvent, event_statement};
pub use signers::{SignerEntry, SignerList};

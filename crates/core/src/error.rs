//! The one error type of `veritrail-core`.
//!
//! Every variant says what was wrong in words a person can act on, and carries the
//! numbers involved. Callers that need to branch (the gRPC layer mapping to status
//! codes, the CLI choosing an exit code) match on the variant, never on the text.

/// Everything that can go wrong in the verifiable core.
///
/// The core never fails on untrusted bytes except by returning one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- event and entry validation -------------------------------------------------
    /// A required field was empty.
    #[error("field `{field}` must not be empty")]
    EmptyField { field: &'static str },

    /// A field was longer than the configured limit.
    #[error("field `{field}` is {len_bytes} bytes long; the limit is {max_bytes} bytes")]
    FieldTooLong {
        field: &'static str,
        len_bytes: usize,
        max_bytes: usize,
    },

    /// A field held a character its kind does not allow.
    #[error("field `{field}` has a forbidden character {found:?} at byte {offset_bytes}: {rule}")]
    ForbiddenCharacter {
        field: &'static str,
        found: char,
        offset_bytes: usize,
        rule: &'static str,
    },

    /// The opaque payload was larger than the configured limit.
    #[error("payload is {len_bytes} bytes; the limit is {max_bytes} bytes")]
    PayloadTooLarge { len_bytes: usize, max_bytes: usize },

    /// The event carried more attributes than the configured limit.
    #[error("event has {count} attributes; the limit is {max}")]
    TooManyAttributes { count: usize, max: usize },

    /// A configured limit exceeds what the entry format can carry.
    #[error("limit `{limit}` is {value}, above the format's hard maximum of {max}")]
    LimitAboveFormatMaximum {
        limit: &'static str,
        value: usize,
        max: usize,
    },

    // ---- canonical decoding ---------------------------------------------------------
    /// The bytes are not a canonical entry encoding.
    #[error("malformed entry at byte {offset_bytes}: {reason}")]
    Decode {
        offset_bytes: usize,
        reason: &'static str,
    },

    /// The bytes start with a format version this code does not know.
    #[error(
        "unsupported entry format version {version} (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion { version: u8, supported: u8 },

    // ---- Merkle tree ----------------------------------------------------------------
    /// A leaf index is not inside the tree it was asked about.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },

    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("cannot prove consistency from tree size {from_size} to the smaller size {to_size}")]
    SizesReversed { from_size: u64, to_size: u64 },

    /// A proof failed to verify.
    #[error("proof does not verify: {0}")]
    ProofInvalid(&'static str),

    /// An event signature (entry format version 2) that does not verify.
    #[error("event signature: {0}")]
    EventSignature(String),

    /// A frontier did not have the shape its size requires.
    #[error("frontier for size {size} must hold {expected} hashes, found {found}")]
    FrontierShape {
        size: u64,
        expected: usize,
        found: usize,
    },

    // ---- hashes, keys, notes and checkpoints -----------------------------------------
    /// A hash was not 32 bytes of valid hex or base64.
    #[error("malformed hash: {0}")]
    MalformedHash(String),

    /// A key string or key material was malformed.
    #[error("malformed key: {0}")]
    MalformedKey(String),

    /// A signed note did not follow the C2SP signed-note format.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),

    /// A checkpoint body did not follow the C2SP tlog-checkpoint format or our extension.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),

    /// A key-set body did not follow its format (docs/FORMAT.md section 6.1).
    #[error("malformed key set: {0}")]
    MalformedKeySet(String),

    /// A checkpoint names a different log than the one expected.
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },

    /// A note carries two signatures by the same key.
    #[error("key {name}+{key_id:08x} signed the note more than once")]
    DuplicateSignature { name: String, key_id: u32 },

    /// A signature by a known key does not verify over the note text.
    #[error("signature by {name}+{key_id:08x} does not verify")]
    BadSignature { name: String, key_id: u32 },

    /// A quorum that can never be met, or that any single key meets by itself.
    #[error("quorum {quorum} is invalid for {keys} known keys: it must be between 1 and {keys}")]
    InvalidQuorum { quorum: usize, keys: usize },

    /// Fewer distinct known keys signed than the quorum requires.
    #[error("{valid} valid signatures from known keys; the quorum is {quorum}")]
    QuorumNotMet { valid: usize, quorum: usize },

    /// A sequence of entries is not one unbroken chain.
    #[error("chain broken at seq {seq}: {fault}")]
    ChainBroken {
        seq: u64,
        fault: crate::chain::ChainFault,
    },

    // ---- trust policies ------------------------------------------------------------
    /// A trust policy file did not follow its format (docs/FORMAT.md section 13).
    #[error("malformed trust policy: {0}")]
    MalformedPolicy(String),

    /// The witnesses whose cosignatures verified do not meet the policy's quorum.
    #[error("the witness quorum {quorum:?} is not met: cosigned by {cosigned:?}")]
    WitnessQuorumNotMet {
        quorum: String,
        cosigned: Vec<String>,
    },

    // ---- evidence bundles -----------------------------------------------------------
    /// An evidence bundle could not be parsed.
    #[error("malformed evidence bundle: {0}")]
    MalformedBundle(String),
}

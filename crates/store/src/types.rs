//! What Raft log entries carry, what applying them answers, and how a member
//! is reached: plain data, shared by every layer above.
//!
//! A Raft entry is a [`Command`]. The common one, [`Command::Append`], is a
//! *proposal*: the leader's batch of client requests, stamped with the leader's
//! clock. Every node applies it the same way (see `apply`), which is what
//! makes every replica hold byte-identical entries.

use serde::{Deserialize, Serialize};
use veritrail_core::{Event, Receipt, SubmittedEvent};

/// How a cluster member is reached and how it signs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The gRPC address other nodes and clients use, `host:port`.
    pub addr: String,
    /// The node's checkpoint-signing key as a verifier-key string
    /// (`name+id+base64`), empty until the node has reported it.
    pub public_key: String,
}

/// What one Raft log entry carries.
///
/// The variant is the entry's format tag (postcard writes its index first).
/// Variants are only ever added at the end, and a variant's shape never
/// changes: a command that needs another shape becomes a new variant beside
/// the old one, which stays readable, and the leader proposes it only once
/// every member's release reads it (peers name their format, see the server's
/// `PEER_FORMAT`; a data directory names its own, [`crate::DATA_FORMAT_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Append events: one entry carries many client requests (group commit).
    Append(Proposal),
    /// Record a co-signed checkpoint so that every node serves it.
    Checkpoint(CheckpointRecord),
    /// Append events some of which their services signed (peer format 2).
    /// The leader proposes [`Command::Append`] when no event of a batch is
    /// signed, so that a cluster whose services do not sign never sends a
    /// release before this one a command it cannot read.
    AppendSigned(SignedProposal),
}

/// A batch of client requests proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's clock when it proposed, unix nanoseconds. Entries get
    /// `max(proposed_at_ns, previous entry's timestamp)`, so a leader with a clock
    /// behind its predecessor's never makes time go backwards.
    pub proposed_at_ns: u64,
    pub requests: Vec<AppendRequest>,
}

/// One client request: events appended all together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// The identity the receiving node authenticated for this request.
    pub principal: String,
    pub events: Vec<Event>,
}

/// A batch of client requests, some carrying signed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    /// As [`Proposal::proposed_at_ns`].
    pub proposed_at_ns: u64,
    pub requests: Vec<SignedRequest>,
}

/// One client request whose events may carry their services' signatures.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The identity the receiving node authenticated for this request.
    pub principal: String,
    pub events: Vec<SubmittedEvent>,
}

impl SignedRequest {
    /// Whether any event of the request is signed.
    pub fn is_signed(&self) -> bool {
        self.events.iter().any(|e| e.signature.is_some())
    }
}

impl From<SignedRequest> for AppendRequest {
    /// The request as format 1 carries it: signatures are dropped, so callers
    /// convert only requests that carry none ([`SignedRequest::is_signed`]).
    fn from(request: SignedRequest) -> Self {
        AppendRequest {
            principal: request.principal,
            events: request.events.into_iter().map(|e| e.event).collect(),
        }
    }
}

/// A checkpoint note with the signatures gathered so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The signed note: a checkpoint body and one or more signature lines.
    pub signed_note: String,
}

/// What applying one Raft entry answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries answer nothing.
    #[default]
    None,
    /// One outcome per request of the proposal, in order.
    Appended(Vec<RequestOutcome>),
    /// The checkpoint was recorded; its size.
    CheckpointRecorded { size: u64 },
    /// The checkpoint was not recorded: its signatures do not meet the quorum of
    /// the current voters, or it is malformed. Nothing was written.
    CheckpointRejected { reason: String },
}

/// The outcome of one all-or-nothing request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOutcome {
    /// Every event is in the log: one receipt per event, in request order.
    Accepted(Vec<AppendReceipt>),
    /// Nothing of the request was written.
    Rejected(Rejection),
}

/// Where one event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendReceipt {
    pub receipt: Receipt,
    /// True when the event was already in the log under the same
    /// `(source, event_id)`: the receipt is the original one and nothing new
    /// was written.
    pub duplicate: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Index of the offending event within the request.
    pub event_index: u32,
    pub kind: RejectionKind,
    /// A sentence for the person who sent it.
    pub message: String,
}

/// The kinds of refusal, each mapping to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionKind {
    /// The event breaks a field rule or limit (`InvalidArgument`).
    Invalid,
    /// Another event already holds this `(source, event_id)` (`AlreadyExists`).
    Conflict,
}

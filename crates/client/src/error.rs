//! The SDK's errors: what went wrong, and whether trying again can help.

use tonic::Code;

/// `" (addr: reason; ...)"`, or nothing when no node was tried.
fn nodes_tried(tried: &[String]) -> String {
    if tried.is_empty() {
        String::new()
    } else {
        format!(" ({})", tried.join("; "))
    }
}

/// Result of every SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the SDK can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster answered with a status the SDK does not retry (bad input, an
    /// event id reused for a different event, an entry that does not exist), or a
    /// retryable one that persisted through every attempt.
    #[error("{code:?}: {message}")]
    Status { code: Code, message: String },

    /// The request is malformed before it reaches the network (an event breaking
    /// a field rule, an endpoint that is not an address).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// Retries ran out: the last attempt's failure, how many were made, and
    /// what each node tried last said (`addr: reason`), so that a wrong
    /// endpoint or a stopped cluster reads as such.
    #[error(
        "gave up after {attempts} attempts over {elapsed_ms} ms{}; last error: {last}",
        nodes_tried(tried)
    )]
    RetriesExhausted {
        attempts: u32,
        elapsed_ms: u64,
        last: Box<Error>,
        tried: Vec<String>,
    },

    /// No endpoint's name resolves: retrying will not make it resolve, so the
    /// SDK stops at once (`addr: reason` for each).
    #[error(
        "no endpoint's name resolves ({}): check the endpoints given (--endpoints, VERITRAIL_ENDPOINTS)",
        tried.join("; ")
    )]
    Unresolvable { tried: Vec<String> },

    /// A node's answer is inconsistent with itself or with the format (an entry
    /// whose bytes do not hash to the hash it came with, a wrong-length hash).
    /// Another node may answer correctly; this one should be investigated.
    #[error("the node's answer is malformed: {0}")]
    Protocol(String),

    /// A proof or signature check failed: what the cluster claims does not hold.
    #[error("verification failed: {0}")]
    Verification(String),

    /// Two checkpoints, each signed by a quorum of the trusted keys, describe
    /// histories that cannot both be true. The evidence is the two signed notes.
    #[error("fork detected: {}", .0.reason)]
    Fork(Box<ForkEvidence>),

    /// The producer was closed, or its worker stopped.
    #[error("the producer is closed")]
    ProducerClosed,

    /// Reading or writing a local file (the trusted state).
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Two quorum-signed checkpoints that contradict each other: proof that a quorum
/// of the keys signed conflicting histories, to hand to whoever investigates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForkEvidence {
    /// The checkpoint the verifier trusted, as signed-note text.
    pub trusted: String,
    /// The conflicting checkpoint, as signed-note text.
    pub offered: String,
    pub reason: String,
}

impl Error {
    /// The gRPC code, when the failure came from the cluster.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }

    /// True when the request may or may not have taken effect: the cluster may
    /// still commit an append that timed out. Retrying with the same event ids is
    /// safe either way.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self.code(),
            Some(Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown)
        )
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

impl From<veritrail_core::Error> for Error {
    fn from(error: veritrail_core::Error) -> Self {
        Error::Verification(error.to_string())
    }
}

impl From<veritrail_proto::WireError> for Error {
    fn from(error: veritrail_proto::WireError) -> Self {
        Error::Protocol(error.to_string())
    }
}

//! The server's error type and its one mapping to gRPC status codes.
//!
//! Codes are chosen so that a client can act on them without reading the text:
//! `UNAVAILABLE` means retry (at the leader named in the `x-veritrail-leader`
//! metadata when there is one); `INVALID_ARGUMENT`, `ALREADY_EXISTS`,
//! `OUT_OF_RANGE`, `NOT_FOUND` and `FAILED_PRECONDITION` mean do not retry the same
//! request; `UNAUTHENTICATED` and `PERMISSION_DENIED` mean fix the credentials or
//! the policy; `RESOURCE_EXHAUSTED` means slow down; `INTERNAL` means this node is
//! broken. The table is in docs/ERRORS.md.

use tonic::{Code, Status};
use veritrail_store::StoreError;

/// Metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_ADDR_METADATA: &str = "x-veritrail-leader";
/// Metadata key carrying the leader's node id on `UNAVAILABLE`.
pub const LEADER_ID_METADATA: &str = "x-veritrail-leader-id";

/// Where the leader is, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    pub id: u64,
    pub addr: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// No valid certificate or token.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Retry, at the leader if one is named.
    #[error("{message}")]
    Unavailable {
        message: String,
        leader: Option<LeaderHint>,
    },
    /// This node cannot serve: its storage failed, or Raft stopped.
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    pub fn unavailable(message: impl Into<String>, leader: Option<LeaderHint>) -> Self {
        NodeError::Unavailable {
            message: message.into(),
            leader,
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::OutOfRange(_) => Code::OutOfRange,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::ResourceExhausted(_) => Code::ResourceExhausted,
            NodeError::Unauthenticated(_) => Code::Unauthenticated,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            NodeError::Unavailable { .. } => Code::Unavailable,
            NodeError::Internal(_) => Code::Internal,
        }
    }
}

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Status {
        let mut status = Status::new(error.code(), error.to_string());
        if let NodeError::Unavailable {
            leader: Some(leader),
            ..
        } = &error
        {
            if let Ok(addr) = leader.addr.parse() {
                status.metadata_mut().insert(LEADER_ADDR_METADATA, addr);
            }
            if let Ok(id) = leader.id.to_string().parse() {
                status.metadata_mut().insert(LEADER_ID_METADATA, id);
            }
        }
        status
    }
}

/// Storage failures answered to a caller (`INTERNAL`, "storage: ..."): a
/// read the disk failed, a damaged record. The node answers the error and
/// never a guess in its place (metric `veritrail_storage_errors_total`).
pub static STORAGE_ERRORS: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

impl From<StoreError> for NodeError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::OutOfRange(m) => NodeError::OutOfRange(m),
            StoreError::InvalidArgument(m) => NodeError::InvalidArgument(m),
            other => {
                STORAGE_ERRORS.inc();
                tracing::error!(error = %other, "storage error");
                NodeError::Internal(format!("storage: {other}"))
            }
        }
    }
}

impl From<veritrail_core::Error> for NodeError {
    fn from(error: veritrail_core::Error) -> Self {
        NodeError::InvalidArgument(error.to_string())
    }
}

impl From<veritrail_proto::WireError> for NodeError {
    fn from(error: veritrail_proto::WireError) -> Self {
        NodeError::InvalidArgument(error.to_string())
    }
}

pub type NodeResult<T> = Result<T, NodeError>;

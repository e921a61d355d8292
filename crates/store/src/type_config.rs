//! Veritrail's openraft type configuration.
//!
//! It names the snapshot data type, so it sits above the snapshot layer; the
//! commands it carries are plain data further down (`types`), which is what
//! lets apply and snapshots be written without it.

use crate::snapshot::SnapshotFile;
use crate::types::{Command, CommandResponse, NodeInfo};

openraft::declare_raft_types!(
    /// Veritrail's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
);

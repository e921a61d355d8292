//! The audit state machine: openraft's [`RaftStateMachine`] over the audit
//! column families. The work itself is in `apply` and `snapshot`; this module
//! adapts it to openraft and moves it onto blocking threads.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StorageError,
    StoredMembership,
};

use crate::apply::apply_entries;
use crate::shared::{Shared, blocking};
use crate::snapshot::{SnapshotBuilder, SnapshotFile, begin_receiving, install};
use crate::types::{CommandResponse, NodeInfo, TypeConfig};

/// The state machine. Cheap to clone; clones share the database.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, NodeInfo>), StorageError<u64>> {
        let state = self.shared.state();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let first = entries.first().map(|e| e.log_id);
        blocking(&self.shared, move |shared| apply_entries(shared, entries))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "apply failed: this node stops");
                e.into_raft(
                    first.map_or(ErrorSubject::StateMachine, ErrorSubject::Apply),
                    ErrorVerb::Write,
                )
            })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        begin_receiving(&self.shared)
            .await
            .map(|file| Box::new(SnapshotFile::from(file)))
            .map_err(|e| e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        let file = snapshot.into_std().await.map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        let owned_meta = meta.clone();
        blocking(&self.shared, move |shared| {
            let installed = install(shared, &owned_meta, file);
            // The received file is no longer needed either way: the entries it
            // carried are in the database now, or it was refused.
            crate::snapshot::remove_received_files(&shared.snapshot_dir());
            installed
        })
        .await
        .map_err(|e| {
            tracing::error!(snapshot = %meta.snapshot_id, error = %e, "snapshot install failed");
            e.into_raft(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            )
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let record = self.shared.state().snapshot.clone();
        Ok(record.map(|record| SnapshotFile::snapshot(&self.shared, record)))
    }
}

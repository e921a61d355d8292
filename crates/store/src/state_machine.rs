//! The audit state machine: openraft's [`RaftStateMachine`] over the audit
//! column families, and its [`SnapshotBuilder`]. The work itself is in `apply`
//! and `snapshot`; this module adapts it to openraft (the only one of them that
//! knows the type configuration) and moves it onto blocking threads.

use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, SnapshotMeta, StorageError,
    StoredMembership,
};

use crate::apply::Batch;
use crate::error::Result;
use crate::shared::{Shared, blocking};
use crate::snapshot::{
    SnapshotFile, SnapshotRecord, Snapshots, begin_receiving, build, install, remove_received_files,
};
use crate::type_config::TypeConfig;
use crate::types::{Command, CommandResponse, NodeInfo};

/// The state machine. Cheap to clone; clones share the database.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) snapshots: Arc<Snapshots>,
}

/// Applies committed Raft entries: one atomic write for the whole call (see
/// [`Batch::commit`] for why it need not be synced).
fn apply_entries(shared: &Shared, entries: Vec<Entry<TypeConfig>>) -> Result<Vec<CommandResponse>> {
    let _apply = shared.lock_apply();
    let (mut last_applied, mut membership, tail) = {
        let state = shared.state();
        (
            state.last_applied,
            state.membership.clone(),
            state.tail.clone(),
        )
    };
    let mut batch = Batch::new(&shared.db, &shared.origin, tail);
    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        let response = match entry.payload {
            EntryPayload::Blank => CommandResponse::None,
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m);
                CommandResponse::None
            }
            EntryPayload::Normal(Command::Append(proposal)) => {
                CommandResponse::Appended(batch.apply_proposal(&proposal)?)
            }
            EntryPayload::Normal(Command::AppendSigned(proposal)) => {
                CommandResponse::Appended(batch.apply_signed_proposal(&proposal)?)
            }
            EntryPayload::Normal(Command::Checkpoint(record)) => {
                batch.apply_checkpoint(&record, &membership)?
            }
        };
        last_applied = Some(entry.log_id);
        responses.push(response);
    }
    let tail = batch.commit(last_applied, &membership)?;
    let mut state = shared.state();
    state.last_applied = last_applied;
    state.membership = membership;
    state.tail = tail;
    shared.size_tx.send_replace(state.tail.size);
    Ok(responses)
}

/// openraft's view of the snapshot `record`: its metadata, and its file,
/// written when first read.
fn raft_snapshot(snapshots: &Arc<Snapshots>, record: SnapshotRecord) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: record.meta.clone(),
        snapshot: Box::new(SnapshotFile::unwritten(snapshots, record)),
    }
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
            snapshots: Arc::clone(&self.snapshots),
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
        let snapshots = Arc::clone(&self.snapshots);
        blocking(&self.shared, move |shared| {
            let installed = install(&snapshots, &owned_meta, file);
            // The received file is no longer needed either way: the entries it
            // carried are in the database now, or it was refused.
            remove_received_files(&shared.snapshot_dir());
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
        let record = self.snapshots.current();
        Ok(record.map(|record| raft_snapshot(&self.snapshots, record)))
    }
}

/// Builds snapshots: records the applied point of the log.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pub(crate) snapshots: Arc<Snapshots>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let snapshots = Arc::clone(&self.snapshots);
        let record = blocking(&self.snapshots.shared, move |_| build(&snapshots))
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(raft_snapshot(&self.snapshots, record))
    }
}

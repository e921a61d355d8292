//! The Raft log: openraft's [`RaftLogStorage`] on the `raft_log` and `raft_meta`
//! column families.
//!
//! Durability: `append` reports the entries flushed, and `save_vote`, `truncate`
//! and `purge` return, only after a synced RocksDB write (WAL fsync). Only the
//! committed index is written without sync: it is a hint that lets a restarted
//! node re-apply sooner, and losing it is harmless.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError, Vote,
};
use rocksdb::WriteBatch;

use crate::db::{
    CF_RAFT_LOG, CF_RAFT_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, read_u64_key, to_postcard,
    u64_key,
};
use crate::error::{Result, StoreError};
use crate::log_ledger::LogLedger;
use crate::shared::{Shared, blocking};
use crate::type_config::TypeConfig;
use crate::vote_file;

/// The Raft log store. Cheap to clone; clones share the database.
#[derive(Debug, Clone)]
pub struct LogStore {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry<TypeConfig>> {
    let index = read_u64_key(key, CF_RAFT_LOG)?;
    let entry: Entry<TypeConfig> = postcard::from_bytes(value)
        .map_err(|e| StoreError::corrupt(format!("raft_log/{index}"), e))?;
    if entry.log_id.index != index {
        return Err(StoreError::corrupt(
            format!("raft_log/{index}"),
            format!("entry carries index {}", entry.log_id.index),
        ));
    }
    Ok(entry)
}

impl LogStore {
    /// The entries from `start` up to `end` (exclusive; `None`: the last),
    /// stopping after the first entry that brings their stored size to
    /// `max_bytes` or more.
    fn read_range(
        shared: &Shared,
        start: u64,
        end: Option<u64>,
        max_bytes: u64,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let db = shared.db.raw();
        let mut it = db.raw_iterator_cf(shared.db.cf(CF_RAFT_LOG));
        it.seek(u64_key(start));
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            let entry = decode_entry(key, value)?;
            if end.is_some_and(|end| entry.log_id.index >= end) {
                break;
            }
            entries.push(entry);
            bytes += value.len() as u64;
            if bytes >= max_bytes {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(entries)
    }

    /// Size and arrival time of every entry this node holds: how far behind
    /// a member is, in bytes and time (see [`LogLedger`]).
    pub fn ledger(&self) -> Arc<LogLedger> {
        Arc::clone(&self.shared.ledger)
    }

    /// The vote this node last saved, if any.
    pub(crate) fn stored_vote(shared: &Shared) -> Result<Option<Vote<u64>>> {
        shared.db.get_postcard(CF_RAFT_META, KEY_VOTE)
    }

    /// Saves the vote. This is the only place that writes it, so that the
    /// rule below holds for every caller, restore included.
    pub(crate) fn write_vote(shared: &Shared, vote: &Vote<u64>) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(shared.db.cf(CF_RAFT_META), KEY_VOTE, to_postcard(vote));
        // The vote is one value under one key, synced before we answer: a
        // node that forgets its vote could vote twice in one term. Its copy
        // outside the database outlives a database set aside (`vote_file`).
        shared.db.write_synced(batch)?;
        vote_file::write(&shared.dir, vote)
    }

    /// Brings the database's vote and its copy (`vote_file`) to the later of
    /// the two, on open: an emptied database (a repair) takes the vote the
    /// node had; a copy that is missing (a directory of an earlier release),
    /// damaged, or behind (a stop between the two writes) is written again.
    pub(crate) fn reconcile_vote(shared: &Shared) -> Result<()> {
        let stored = Self::stored_vote(shared)?;
        let copy = vote_file::read(&shared.dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the vote's copy is written again from the database");
            None
        });
        match (copy, stored) {
            (Some(copy), stored) if vote_file::later(&copy, stored.as_ref()) => {
                tracing::info!(vote = %copy, "the database takes the vote of its copy");
                Self::write_vote(shared, &copy)
            }
            (copy, Some(stored)) if copy != Some(stored) => vote_file::write(&shared.dir, &stored),
            _ => Ok(()),
        }
    }

    fn log_state(shared: &Shared) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<u64>> =
            shared.db.get_postcard(CF_RAFT_META, KEY_LAST_PURGED)?;
        let db = shared.db.raw();
        let mut it = db.raw_iterator_cf(shared.db.cf(CF_RAFT_LOG));
        it.seek_to_last();
        let last = match (it.key(), it.value()) {
            (Some(k), Some(v)) => Some(decode_entry(k, v)?.log_id),
            _ => {
                it.status()?;
                None
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>>
    where
        RB: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        blocking(&self.shared, move |shared| {
            LogStore::read_range(shared, start, end, u64::MAX)
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Logs, ErrorVerb::Read))
    }

    /// What replication sends in one `AppendEntries`: at most
    /// `append_entries_max_bytes` of stored entries (at least one entry).
    /// openraft asks again from where this stopped.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        blocking(&self.shared, move |shared| {
            LogStore::read_range(shared, start, Some(end), shared.append_entries_max_bytes)
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        blocking(&self.shared, LogStore::log_state)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        blocking(&self.shared, move |shared| {
            LogStore::write_vote(shared, &vote)
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        blocking(&self.shared, LogStore::stored_vote)
            .await
            .map_err(|e| e.into_raft(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let value = to_postcard(&committed);
        blocking(&self.shared, move |shared| {
            let mut batch = WriteBatch::default();
            batch.put_cf(shared.db.cf(CF_RAFT_META), KEY_COMMITTED, value);
            shared.db.write_unsynced(batch)
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        blocking(&self.shared, |shared| {
            Ok(shared
                .db
                .get_postcard(CF_RAFT_META, KEY_COMMITTED)?
                .flatten())
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, to_postcard(&e)))
            .collect();
        let result = blocking(&self.shared, move |shared| {
            let cf = shared.db.cf(CF_RAFT_LOG);
            let mut batch = WriteBatch::default();
            for (index, value) in &encoded {
                batch.put_cf(cf, u64_key(*index), value);
            }
            // Synced: openraft counts these entries toward a commit quorum as soon
            // as the callback below fires.
            shared.db.write_synced(batch)?;
            shared.ledger.appended(
                encoded.iter().map(|(i, v)| (*i, v.len() as u64)),
                Instant::now(),
            );
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.into_raft(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        blocking(&self.shared, move |shared| {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                shared.db.cf(CF_RAFT_LOG),
                u64_key(log_id.index),
                u64_key(u64::MAX),
            );
            batch.delete_cf(shared.db.cf(CF_RAFT_LOG), u64_key(u64::MAX));
            shared.db.write_synced(batch)?;
            shared.ledger.truncated(log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        blocking(&self.shared, move |shared| {
            // The marker and the deletion in one batch: a crash leaves either the
            // old log or the purged one, never a hole below a stale marker.
            let mut batch = WriteBatch::default();
            batch.put_cf(
                shared.db.cf(CF_RAFT_META),
                KEY_LAST_PURGED,
                to_postcard(&log_id),
            );
            batch.delete_range_cf(
                shared.db.cf(CF_RAFT_LOG),
                u64_key(0),
                u64_key(log_id.index.saturating_add(1)),
            );
            shared.db.write_synced(batch)?;
            shared.ledger.purged(log_id.index);
            Ok(())
        })
        .await
        .map_err(|e| e.into_raft(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}

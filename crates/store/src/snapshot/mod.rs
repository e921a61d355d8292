//! Snapshots of an append-only log.
//!
//! A committed entry never changes, so the state machine as of a Raft index is
//! simply its first `size` entries. Building a snapshot therefore copies
//! nothing: it records that point ([`SnapshotRecord`]) in one small synced
//! write, whatever the log's size, and openraft can purge its log up to it.
//! The bytes a lagging follower needs are written to a file only when the
//! leader first reads them ([`SnapshotFile`]), streamed so that memory stays
//! bounded, and kept for the next follower until a newer snapshot is recorded.
//!
//! The folder reads bottom-up like the crate: `point` (the current point and
//! how it moves), `format` (the file's bytes), then what uses both: `file`
//! (openraft's snapshot data), `install` and `backup`. Nothing here knows
//! openraft's type configuration; the state machine adapts it.

mod backup;
mod file;
mod format;
mod install;
mod point;

pub use backup::Backup;
pub(crate) use backup::backup;
pub use file::SnapshotFile;
pub(crate) use file::{begin_receiving, remove_received_files};
#[cfg(test)]
pub(crate) use format::golden_header;
pub(crate) use format::{read_meta, verify_digest};
pub(crate) use install::install;
pub(crate) use point::{SnapshotRecord, Snapshots, build};

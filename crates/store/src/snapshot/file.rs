//! The snapshot as openraft moves it: [`SnapshotFile`], the file a follower is
//! sent (written from the live database when first read) or the file an
//! incoming snapshot is received into.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use super::format::{io, write_file};
use super::point::{SnapshotRecord, Snapshots};
use crate::error::{Result, StoreError};
use crate::shared::Shared;

/// The file of `record`, written now unless an earlier reader already did.
fn file_of(snapshots: &Snapshots, record: &SnapshotRecord) -> Result<File> {
    let shared = &snapshots.shared;
    let _files = snapshots.lock_files();
    let path = shared.snapshot_dir().join(record.file_name());
    match File::open(&path) {
        Ok(file) => return Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(format!("opening {}", path.display()), e)),
    }
    let started = std::time::Instant::now();
    // The handle is kept from the write: a newer snapshot recorded meanwhile
    // removes the name (`record_current` runs under the apply lock only, never
    // waiting for a file write), and an open file outlives its name.
    let (tmp, mut file, _) = write_file(shared, record)?;
    file.seek(SeekFrom::Start(0))
        .map_err(io("rewinding", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    let dir = shared.snapshot_dir();
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", &dir))?;
    let still_current = snapshots
        .current()
        .is_some_and(|current| current.meta.snapshot_id == record.meta.snapshot_id);
    if !still_current {
        // A newer snapshot was recorded meanwhile: this one's file is only for
        // the reader that asked for it.
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StoreError::io(format!("removing {}", path.display()), e));
        }
    }
    tracing::info!(
        snapshot = %record.meta.snapshot_id,
        entries = record.size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "snapshot file written"
    );
    Ok(file)
}

/// Snapshot data as openraft moves it: a file, written when first read.
///
/// A snapshot openraft receives is a fresh file from the start. A snapshot
/// this node built or holds only names a point of the log; openraft asks for
/// it when it starts (for its metadata alone) and when a follower lags behind
/// the purged log. Only the second reads the data, so only then is the file
/// written, on a blocking thread, while the first poll waits for it.
#[derive(Debug)]
pub struct SnapshotFile {
    state: FileState,
    /// A seek asked for before the file existed, made once it does.
    pending_seek: Option<SeekFrom>,
}

#[derive(Debug)]
enum FileState {
    Unwritten(Arc<Snapshots>, SnapshotRecord),
    Writing(tokio::task::JoinHandle<Result<File>>),
    Ready(tokio::fs::File),
    /// Writing the file failed; every later poll says so again.
    Failed(String),
}

impl SnapshotFile {
    /// The data of the snapshot `record`, its file written when first read.
    pub(crate) fn unwritten(snapshots: &Arc<Snapshots>, record: SnapshotRecord) -> SnapshotFile {
        SnapshotFile {
            state: FileState::Unwritten(Arc::clone(snapshots), record),
            pending_seek: None,
        }
    }

    /// Writes the file now if it is not written yet, and hands it over.
    pub async fn into_std(mut self) -> std::io::Result<File> {
        std::future::poll_fn(|cx| self.poll_file(cx)).await?;
        match self.state {
            FileState::Ready(file) => Ok(file.into_std().await),
            _ => Err(not_ready()),
        }
    }

    /// Polls until the file exists, and starts any seek asked for before.
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            let next = match &mut self.state {
                FileState::Unwritten(snapshots, record) => {
                    let (snapshots, record) = (Arc::clone(snapshots), record.clone());
                    FileState::Writing(tokio::task::spawn_blocking(move || {
                        file_of(&snapshots, &record)
                    }))
                }
                FileState::Writing(task) => match ready!(Pin::new(task).poll(cx)) {
                    Ok(Ok(file)) => FileState::Ready(tokio::fs::File::from_std(file)),
                    Ok(Err(e)) => FileState::Failed(e.to_string()),
                    Err(e) => FileState::Failed(format!("writing the snapshot file: {e}")),
                },
                FileState::Failed(reason) => {
                    return Poll::Ready(Err(std::io::Error::other(reason.clone())));
                }
                FileState::Ready(file) => {
                    if let Some(position) = self.pending_seek.take() {
                        Pin::new(file).start_seek(position)?;
                    }
                    return Poll::Ready(Ok(()));
                }
            };
            self.state = next;
        }
    }

    /// The file, once [`Self::poll_file`] returned ready.
    fn ready_file(&mut self) -> std::io::Result<Pin<&mut tokio::fs::File>> {
        match &mut self.state {
            FileState::Ready(file) => Ok(Pin::new(file)),
            _ => Err(not_ready()),
        }
    }
}

fn not_ready() -> std::io::Error {
    std::io::Error::other("the snapshot file is not written yet")
}

impl From<tokio::fs::File> for SnapshotFile {
    fn from(file: tokio::fs::File) -> Self {
        SnapshotFile {
            state: FileState::Ready(file),
            pending_seek: None,
        }
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let seeking = this.pending_seek.is_some();
        ready!(this.poll_file(cx))?;
        if seeking {
            ready!(this.ready_file()?.poll_complete(cx))?;
        }
        this.ready_file()?.poll_read(cx, buf)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        match &mut this.state {
            FileState::Ready(file) => Pin::new(file).start_seek(position),
            _ => {
                this.pending_seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        let this = self.get_mut();
        ready!(this.poll_file(cx))?;
        this.ready_file()?.poll_complete(cx)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_write(cx, buf),
            _ => Poll::Ready(Err(read_only())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().state {
            FileState::Ready(file) => Pin::new(file).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

fn read_only() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "a snapshot this node recorded is read-only",
    )
}

/// Removes received files (`incoming-*.part`), which openraft hands to install
/// and never deletes. openraft receives one snapshot at a time and restarts an
/// interrupted transfer, so none is needed once an install has returned. (When
/// the store opens, every file but the current snapshot is removed anyway.)
pub(crate) fn remove_received_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let received = name.starts_with("incoming-") && name.ends_with(".part");
        if received && let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a snapshot leftover");
        }
    }
}

/// A fresh file for openraft to write an incoming snapshot into.
pub(crate) async fn begin_receiving(shared: &Shared) -> Result<tokio::fs::File> {
    let unique = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = shared
        .snapshot_dir()
        .join(format!("incoming-{unique:x}.part"));
    tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))
}

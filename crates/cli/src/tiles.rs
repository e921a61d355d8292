//! `veritrail export-tiles DIR`: the log as a C2SP tlog-tiles tree in a
//! directory (docs/FORMAT.md section 10), which any static web server or
//! object store can then serve to tlog-tiles clients.
//!
//! The export is checked as it is written and is incremental:
//!
//! - the latest checkpoint must verify against the trusted keys, and the
//!   root recomputed from the entries must be the one it signs;
//! - a directory already holding an export must hold a checkpoint that
//!   verifies too, and the new one must extend it (a consistency proof): a
//!   directory of another history is refused, not overwritten;
//! - only what the new checkpoint adds is read and written: entries from the
//!   last full bundle on, and the tiles they change. Full tiles and bundles
//!   never change; one already present must be byte for byte what this
//!   export would write;
//! - the checkpoint is written last, after every tile is on disk (`syncfs`),
//!   so that a reader never finds a checkpoint whose tiles are missing.
//!
//! Level-0 tiles and bundles are written as the entries stream in, before
//! the root is known to match: entries that do not fold to the signed root
//! leave the checkpoint alone but those files behind, and the error says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use veritrail_client::{Client, ScanQuery};
use veritrail_core::Hash;
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::merkle::{
    Frontier, leaf_hash, tile_index_path as index_path, verify_consistency,
};

use crate::output::{self, CmdResult, Failure, Format};
use crate::{KeyArgs, trust};

/// Hashes per full tile, and entries per full bundle.
const WIDTH: u64 = 256;
/// The longest entry a bundle's 16-bit length prefix can carry.
const BUNDLE_ENTRY_MAX_BYTES: usize = u16::MAX as usize;

#[derive(Debug, Args)]
pub struct ExportTilesArgs {
    /// The directory to write to: created if missing, brought up to date if
    /// it holds an earlier export of this log.
    pub dir: PathBuf,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// The path of tile `index` of `level` (`None`: the entry bundle), `width`
/// wide, under `dir`.
fn tile_path(dir: &Path, level: Option<u8>, index: u64, width: u64) -> PathBuf {
    let level = level.map_or_else(|| "entries".to_owned(), |l| l.to_string());
    let mut path = format!("tile/{level}/{}", index_path(index));
    if width < WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    dir.join(path)
}

/// Writes `bytes` at `path` through a temporary file and a rename. A file
/// already there is left alone when it holds the same bytes; different bytes
/// mean the directory holds another log, which is an error.
fn write_once(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    if let Ok(present) = std::fs::read(path) {
        if present == bytes {
            return Ok(false);
        }
        anyhow::bail!(
            "{} already holds other bytes than this log's: the directory holds another \
             history; export into an empty directory",
            path.display()
        );
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(true)
}

/// The export's state: the directory, the new and old sizes, and what it
/// has written.
struct Export<'a> {
    dir: &'a Path,
    /// Size of the export already in the directory (0 for none).
    old_size: u64,
    size: u64,
    files_written: u64,
    /// Bundles not written: (index, the entry too long for a bundle, its length).
    bundles_skipped: Vec<(u64, u64, usize)>,
}

impl Export<'_> {
    /// Writes tile `index` of `level` for the tree of `self.size` leaves, if
    /// it is the one the old export left partial or a newer one: the hashes
    /// before `new_from` (the first this run computed) come from the old
    /// export's partial tile.
    fn write_tile(
        &mut self,
        level: u8,
        index: u64,
        new: &BTreeMap<u64, Hash>,
        new_from: u64,
    ) -> anyhow::Result<()> {
        let count = hashes_at(self.size, level);
        let width = (count - index * WIDTH).min(WIDTH);
        let mut bytes = Vec::with_capacity(width as usize * 32);
        let first = index * WIDTH;
        if first < new_from {
            let old_width = new_from - first;
            let old = tile_path(self.dir, Some(level), index, old_width);
            let held = std::fs::read(&old).with_context(|| {
                format!(
                    "the earlier export's tile {} is missing; export into an empty directory",
                    old.display()
                )
            })?;
            anyhow::ensure!(
                held.len() as u64 == old_width * 32,
                "{} is not {old_width} hashes long",
                old.display()
            );
            bytes.extend_from_slice(&held);
        }
        for i in first.max(new_from)..first + width {
            let hash = new
                .get(&i)
                .with_context(|| format!("hash {i} of level {level} was not computed"))?;
            bytes.extend_from_slice(hash.as_bytes());
        }
        if write_once(&tile_path(self.dir, Some(level), index, width), &bytes)? {
            self.files_written += 1;
        }
        Ok(())
    }

    fn write_bundle(&mut self, index: u64, entries: &[(u64, Vec<u8>)]) -> anyhow::Result<()> {
        if let Some((seq, canonical)) = entries
            .iter()
            .find(|(_, c)| c.len() > BUNDLE_ENTRY_MAX_BYTES)
        {
            self.bundles_skipped.push((index, *seq, canonical.len()));
            return Ok(());
        }
        let mut bytes = Vec::new();
        for (_, canonical) in entries {
            let length = u16::try_from(canonical.len()).unwrap_or(u16::MAX);
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(canonical);
        }
        let path = tile_path(self.dir, None, index, entries.len() as u64);
        if write_once(&path, &bytes)? {
            self.files_written += 1;
        }
        Ok(())
    }
}

/// How many hashes of tile level `level` (perfect nodes of height
/// `8 * level`) a tree of `size` leaves has.
fn hashes_at(size: u64, level: u8) -> u64 {
    size.checked_shr(8 * u32::from(level)).unwrap_or(0)
}

/// The checkpoint of the export already in `dir`, verified; `None` when
/// the directory holds none.
fn earlier_export(dir: &Path, trust: &CheckpointVerifier) -> Result<Option<(u64, Hash)>, Failure> {
    let path = dir.join("checkpoint");
    let note = match std::fs::read_to_string(&path) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("reading {}", path.display()))
                .into());
        }
    };
    let verified = trust.verify(&note).map_err(|e| Failure::Verification {
        reason: format!(
            "{} does not verify against the trusted keys: {e}; export into an empty directory",
            path.display()
        ),
        first_bad_seq: None,
        details: None,
    })?;
    Ok(Some((verified.checkpoint.size, verified.checkpoint.root)))
}

pub async fn export_tiles(client: &Client, format: Format, args: &ExportTilesArgs) -> CmdResult {
    let trust = trust::from_cluster(client, format, &args.keys).await?;
    let (note, verified) = trust::latest_checkpoint(client, &trust).await?;
    let (size, root) = (verified.checkpoint.size, verified.checkpoint.root);
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let (old_size, old_root) = earlier_export(&args.dir, &trust)?.unwrap_or((0, Hash::default()));
    if old_size > size {
        return Err(anyhow::anyhow!(
            "{} holds an export of {old_size} entries, more than the cluster's latest \
             checkpoint ({size}); is this another log's directory?",
            args.dir.display()
        )
        .into());
    }
    if old_size > 0 {
        let proof = client.consistency_proof(old_size, size).await?.proof;
        verify_consistency(old_size, size, &old_root, &root, &proof).map_err(|e| {
            Failure::Verification {
                reason: format!(
                    "the cluster's checkpoint of {size} entries does not extend the export of \
                     {old_size} in {}: {e}",
                    args.dir.display()
                ),
                first_bad_seq: None,
                details: None,
            }
        })?;
    }

    // From the first entry of the old export's last, partial bundle: its
    // entries and leaves are read again, to fill that bundle and tile.
    let start = old_size - old_size % WIDTH;
    let mut frontier = if start == 0 {
        Frontier::new()
    } else {
        Frontier::from_parts(start, client.frontier(start).await?)
            .context("the frontier the cluster sent")?
    };
    let mut export = Export {
        dir: &args.dir,
        old_size,
        size,
        files_written: 0,
        bundles_skipped: Vec::new(),
    };
    // Hashes of the levels above 0 that this run computes, by level.
    let mut upper: BTreeMap<u8, BTreeMap<u64, Hash>> = BTreeMap::new();
    let mut leaves: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut bundle: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut entries = client.scan(ScanQuery {
        from_seq: start,
        to_seq: Some(size),
        ..ScanQuery::default()
    });
    let mut next = start;
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if entry.seq() != next {
            return Err(Failure::Verification {
                reason: format!(
                    "the cluster sent entry {} where {next} was due",
                    entry.seq()
                ),
                first_bad_seq: Some(next),
                details: None,
            });
        }
        frontier.push(leaf_hash(&entry.canonical), |id, hash| {
            if id.level % 8 == 0 {
                let level = id.level / 8;
                if level == 0 {
                    leaves.insert(id.index, *hash);
                } else {
                    upper.entry(level).or_default().insert(id.index, *hash);
                }
            }
        });
        bundle.push((next, entry.canonical));
        next += 1;
        if next.is_multiple_of(WIDTH) {
            let index = next / WIDTH - 1;
            export.write_tile(0, index, &leaves, start)?;
            export.write_bundle(index, &bundle)?;
            leaves.clear();
            bundle.clear();
        }
    }
    if next != size {
        return Err(
            anyhow::anyhow!("the scan ended at {next}, before the checkpoint's {size}").into(),
        );
    }
    if frontier.root() != root {
        return Err(Failure::Verification {
            reason: format!(
                "the root recomputed from entries {start} to {size} is not the one the \
                 checkpoint signs: the checkpoint in {dir} was left as it was, but the level-0 \
                 tiles and bundles from entry {start} on written by this run do not belong to \
                 it; remove them (or export into an empty directory) before exporting again",
                dir = args.dir.display()
            ),
            first_bad_seq: None,
            details: None,
        });
    }
    if !bundle.is_empty() {
        let index = (next - 1) / WIDTH;
        export.write_tile(0, index, &leaves, start)?;
        export.write_bundle(index, &bundle)?;
    }
    // The levels above: every tile from the one the old export left partial.
    let mut level = 1u8;
    while hashes_at(size, level) > 0 {
        let new_from = hashes_at(old_size, level);
        let empty = BTreeMap::new();
        let hashes = upper.get(&level).unwrap_or(&empty);
        for index in new_from / WIDTH..hashes_at(size, level).div_ceil(WIDTH) {
            export.write_tile(level, index, hashes, new_from)?;
        }
        level += 1;
    }
    // Every tile durable before the checkpoint that names them.
    let dir = std::fs::File::open(&args.dir)?;
    rustix::fs::syncfs(&dir).context("syncing the export's file system")?;
    let checkpoint = args.dir.join("checkpoint");
    let tmp = args.dir.join("checkpoint.tmp");
    std::fs::write(&tmp, note.as_bytes())?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &checkpoint)?;
    dir.sync_all()?;

    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "dir": args.dir.display().to_string(),
            "tree_size": size,
            "previous_size": export.old_size,
            "files_written": export.files_written,
            "bundles_not_written": export.bundles_skipped.iter().map(|(index, seq, len)| json!({
                "bundle": index, "entry": seq, "bytes": len,
            })).collect::<Vec<_>>(),
        })),
        Format::Text => {
            println!(
                "exported {size} entries to {} ({} before; {} files written), checked against \
                 the checkpoint of size {size}",
                args.dir.display(),
                export.old_size,
                export.files_written
            );
            for (index, seq, len) in &export.bundles_skipped {
                eprintln!(
                    "warning: entry bundle {index} not written: entry {seq} is {len} bytes, \
                     longer than a bundle's 16-bit length prefix holds (docs/FORMAT.md section 10)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_spelt_as_tile_paths() {
        let dir = Path::new("d");
        assert_eq!(
            tile_path(dir, Some(0), 3, 232),
            Path::new("d/tile/0/003.p/232")
        );
        assert_eq!(
            tile_path(dir, None, 1, 256),
            Path::new("d/tile/entries/001")
        );
    }
}

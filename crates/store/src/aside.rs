//! Setting a damaged node's state aside, for a repair (issue #18, item 7).
//!
//! A node whose data fails its checks on open can rejoin empty under its own
//! identity and receive the log again from the others. What it held is never
//! deleted: the database and the snapshots move, by rename within the data
//! directory, into `damaged-<unix seconds>/`, where `fsck` and a post-mortem
//! can still read them. The node key, the vote's copy (`vote_file`, which
//! the emptied database takes back on open) and earlier `damaged-*` and
//! `wal-damaged-*` directories stay where they are.
//!
//! Whether an empty node may rejoin as the voter it was is not this module's
//! question: it may not vote until it holds its leader's log again, which the
//! server enforces (`veritrail-server`, `repair.rs`).

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::shared::{DB_DIR, SNAPSHOT_DIR};

/// What [`set_aside`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The directory that now holds the state, under the data directory.
    pub dir: PathBuf,
    /// The names moved into it (`db`, `snapshots`: those that existed).
    pub moved: Vec<String>,
}

impl StoreError {
    /// True when opening failed because the data is damaged (a checksum, a
    /// record that does not decode, state that contradicts itself): what a
    /// repair mends. Not: a directory of another log or of a later release,
    /// a database another process holds, a permission, a full disk.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Integrity { .. } | StoreError::Corrupt { .. } => true,
            StoreError::Rocks(e) => e.kind() == rocksdb::ErrorKind::Corruption,
            _ => false,
        }
    }
}

/// Moves the database and the snapshots of the data directory `dir` into a
/// new `dir/damaged-<unix seconds>/`, with a `REASON` file saying why, and
/// syncs every directory whose names changed. Deletes nothing. The node must
/// be stopped.
pub fn set_aside(dir: &Path, reason: &str) -> Result<SetAside> {
    let io = |what: String| move |e| StoreError::io(what, e);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = dir.join(format!("damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("damaged-{secs}-{n}"));
        n += 1;
    }
    std::fs::create_dir(&aside).map_err(io(format!("creating {}", aside.display())))?;
    let why = aside.join("REASON");
    std::fs::write(&why, format!("{reason}\n"))
        .map_err(io(format!("writing {}", why.display())))?;
    let mut moved = Vec::new();
    // The snapshots first: a node stopped between the two renames finds its
    // database and no snapshot, which its checks refuse (and a repair moves
    // on), where the other order left an empty database beside snapshots
    // that opening it would have deleted as stale.
    for name in [SNAPSHOT_DIR, DB_DIR] {
        let from = dir.join(name);
        if from.exists() {
            std::fs::rename(&from, aside.join(name))
                .map_err(io(format!("moving {} aside", from.display())))?;
            moved.push(name.to_owned());
        }
    }
    for synced in [&aside, &dir.to_path_buf()] {
        std::fs::File::open(synced)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing the directory {}", synced.display())))?;
    }
    Ok(SetAside { dir: aside, moved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_the_state_and_keeps_everything_else() {
        let dir = tempfile::TempDir::new().expect("dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).expect("db");
        std::fs::write(d.join("db/CURRENT"), "x").expect("file");
        std::fs::create_dir_all(d.join("snapshots")).expect("snapshots");
        std::fs::write(d.join("node.key"), "key").expect("key");
        let first = set_aside(d, "checksum mismatch").expect("set aside");
        assert_eq!(first.moved, ["snapshots", "db"]);
        assert_eq!(
            std::fs::read_to_string(first.dir.join("db/CURRENT")).expect("moved"),
            "x"
        );
        assert!(
            std::fs::read_to_string(first.dir.join("REASON"))
                .expect("reason")
                .contains("checksum mismatch")
        );
        assert!(d.join("node.key").exists() && !d.join("db").exists());

        // Twice in the same second: a second directory, the first untouched.
        std::fs::create_dir_all(d.join("db")).expect("db again");
        let second = set_aside(d, "again").expect("set aside again");
        assert_ne!(first.dir, second.dir);
        assert_eq!(second.moved, ["db"]);
        assert!(first.dir.join("db/CURRENT").exists());
    }

    #[test]
    fn only_damage_is_repaired() {
        assert!(
            StoreError::Integrity {
                seq: Some(3),
                detail: "tail".into()
            }
            .is_damage()
        );
        assert!(StoreError::corrupt("entries/3", "short").is_damage());
        assert!(
            !StoreError::WrongOrigin {
                expected: "a".into(),
                found: "b".into()
            }
            .is_damage()
        );
        assert!(!StoreError::OutOfRange("x".into()).is_damage());
    }
}

//! What the witness remembers: for each origin, the size and root of the
//! latest checkpoint it cosigned. One small JSON file, replaced atomically
//! (written beside it, synced, renamed, its directory synced) before any
//! cosignature leaves: a witness that forgot an advance after a power cut
//! could be led to cosign a rollback or a fork.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veritrail_core::Hash;

/// The latest cosigned checkpoint of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// The file's contents: the format version, and one record per origin.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    version: u32,
    logs: BTreeMap<String, Record>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    size: u64,
    /// Base64, as in checkpoints.
    root: String,
}

const VERSION: u32 = 1;

/// The state file and what it holds.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    logs: BTreeMap<String, Latest>,
}

impl StateFile {
    /// Opens the state at `path`; a file that does not exist yet is an empty
    /// state (a new witness). Any other failure is an error: a witness that
    /// cannot read what it cosigned must not start afresh.
    pub fn open(path: &Path) -> Result<StateFile, String> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StateFile {
                    path: path.to_owned(),
                    logs: BTreeMap::new(),
                });
            }
            Err(e) => return Err(format!("reading the state file {shown}: {e}")),
        };
        let contents: Contents = serde_json::from_str(&text)
            .map_err(|e| format!("the state file {shown} does not parse: {e}"))?;
        if contents.version != VERSION {
            return Err(format!(
                "the state file {shown} is version {}; this witness reads version {VERSION}",
                contents.version
            ));
        }
        let logs = contents
            .logs
            .into_iter()
            .map(|(origin, record)| {
                let root = Hash::from_base64(&record.root)
                    .map_err(|e| format!("the state file {shown}, log {origin:?}: {e}"))?;
                Ok((
                    origin,
                    Latest {
                        size: record.size,
                        root,
                    },
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(StateFile {
            path: path.to_owned(),
            logs,
        })
    }

    pub fn latest(&self, origin: &str) -> Option<&Latest> {
        self.logs.get(origin)
    }

    /// Records `latest` for `origin`, on disk first: on failure nothing
    /// changes, in memory or on disk.
    pub fn set(&mut self, origin: &str, latest: Latest) -> Result<(), String> {
        let mut logs = self.logs.clone();
        logs.insert(origin.to_owned(), latest);
        self.write(&logs)?;
        self.logs = logs;
        Ok(())
    }

    fn write(&self, logs: &BTreeMap<String, Latest>) -> Result<(), String> {
        let contents = Contents {
            version: VERSION,
            logs: logs
                .iter()
                .map(|(origin, l)| {
                    (
                        origin.clone(),
                        Record {
                            size: l.size,
                            root: l.root.to_base64(),
                        },
                    )
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&contents)
            .map_err(|e| format!("encoding the state: {e}"))?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let shown = self.path.display();
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| format!("writing the state beside {shown}: {e}"))?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.as_file().sync_all())
            .map_err(|e| format!("writing the state beside {shown}: {e}"))?;
        file.persist(&self.path)
            .map_err(|e| format!("replacing the state file {shown}: {e}"))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("syncing the directory of {shown}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_reopen_and_a_damaged_file_is_refused() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("state.json");
        let mut state = StateFile::open(&path).expect("new");
        assert!(state.latest("log").is_none());
        let latest = Latest {
            size: 7,
            root: Hash([3; 32]),
        };
        state.set("log", latest.clone()).expect("set");
        assert_eq!(
            StateFile::open(&path).expect("reopen").latest("log"),
            Some(&latest)
        );

        std::fs::write(
            &path,
            "{\"version\": 1, \"logs\": {\"log\": {\"size\": 7}}}",
        )
        .expect("damage");
        let refused = StateFile::open(&path).expect_err("damaged");
        assert!(refused.contains("does not parse"), "{refused}");
    }
}

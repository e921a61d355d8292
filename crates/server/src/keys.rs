//! The node's checkpoint-signing key: created on first start in the data
//! directory, readable by the node's user only, and never rewritten.

use std::io::Write;
use std::path::Path;

use veritrail_core::note::NoteSigner;

/// File name of the signer key inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// The key name of node `node_id` of the log `origin`.
pub fn key_name(origin: &str, node_id: u64) -> String {
    format!("{origin}/node-{node_id}")
}

/// Loads the node's key, or creates it from the OS's CSPRNG on first start.
pub fn load_or_create(data_dir: &Path, origin: &str, node_id: u64) -> Result<NoteSigner, String> {
    let path = data_dir.join(KEY_FILE);
    let name = key_name(origin, node_id);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let signer =
            NoteSigner::parse(text.trim()).map_err(|e| format!("{}: {e}", path.display()))?;
        if signer.public().name() != name {
            return Err(format!(
                "{} holds the key of {:?}, but this node is {name:?}: a data directory belongs to one node id and origin",
                path.display(),
                signer.public().name()
            ));
        }
        return Ok(signer);
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("the OS random source failed: {e}"))?;
    let signer = NoteSigner::from_seed(&name, &seed).map_err(|e| e.to_string())?;
    seed.fill(0);
    write_private(&path, &signer.to_signer_string())?;
    tracing::info!(key = %signer.public(), "created the node's checkpoint signing key");
    Ok(signer)
}

/// Writes a new key file so that a power cut leaves either no key file or the
/// whole one (a key file lost to a power cut while the membership already
/// names its public key would leave the node signing with a key nobody
/// trusts).
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    write_durably(path, &format!("{text}\n"))
}

/// Writes `text` to `path`, readable by this user only, so that a power cut
/// leaves either the file before or the whole new one: the bytes go to a
/// temporary file that is synced, then renamed into place, and the directory
/// is synced so that the name lasts too.
pub fn write_durably(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // Left by a start that lost power before the rename: never used.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the names in `dir` durable (new files, renames).
pub fn sync_dir(dir: &Path) -> Result<(), String> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing the directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::TempDir::new().expect("dir");
        let a = load_or_create(dir.path(), "x.example/log", 2).expect("create");
        let b = load_or_create(dir.path(), "x.example/log", 2).expect("load");
        assert_eq!(a.public(), b.public());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            load_or_create(dir.path(), "x.example/log", 3).is_err(),
            "another node id"
        );
    }
}

//! The witness's configuration file (TOML), with `VERITRAIL_WITNESS_*`
//! environment variables over it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use veritrail_core::note::NoteKey;

use crate::protocol::TrustedLog;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `add-checkpoint` is served (plain HTTP: put TLS in front of it,
    /// as the spec's bastion does, when it leaves the host).
    pub listen: SocketAddr,
    /// The witness's signer key (`veritrail-witness keygen`).
    pub key_file: PathBuf,
    /// The latest cosigned checkpoint of each log.
    pub state_file: PathBuf,
    /// The logs this witness follows.
    #[serde(default, rename = "log")]
    pub logs: Vec<LogConfig>,
}

/// One log: `origin`, its keys, and how many must sign a checkpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub origin: String,
    /// Verifier keys (`name+id+base64`), as `veritrail cluster keys` prints
    /// a Veritrail cluster's.
    pub keys: Vec<String>,
    /// Signatures a checkpoint needs; a majority of `keys` when not given,
    /// which is what a Veritrail cluster's checkpoints carry.
    pub quorum: Option<usize>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed("VERITRAIL_WITNESS_"))
            .extract()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The logs, their keys parsed and quorums checked.
    pub fn trusted_logs(&self) -> Result<Vec<TrustedLog>, String> {
        let mut logs: Vec<TrustedLog> = Vec::new();
        for log in &self.logs {
            let what = format!("log {:?}", log.origin);
            if log.origin.is_empty() || log.origin.contains('\n') {
                return Err(format!("{what}: an origin is one non-empty line"));
            }
            if logs.iter().any(|l| l.origin == log.origin) {
                return Err(format!("{what} is listed twice"));
            }
            let keys = log
                .keys
                .iter()
                .map(|k| NoteKey::parse(k).map_err(|e| format!("{what}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let quorum = log.quorum.unwrap_or(keys.len() / 2 + 1);
            if quorum == 0 || quorum > keys.len() {
                return Err(format!(
                    "{what}: quorum {quorum} for {} keys; it must be between 1 and the number of keys",
                    keys.len()
                ));
            }
            logs.push(TrustedLog {
                origin: log.origin.clone(),
                keys,
                quorum,
            });
        }
        if logs.is_empty() {
            return Err("no [[log]] is configured: the witness would cosign nothing".into());
        }
        Ok(logs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_loads() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/witness/witness.toml");
        let config = Config::load(&example).expect("the example loads");
        let logs = config.trusted_logs().expect("its logs");
        assert_eq!(logs.len(), 1);
        assert_eq!((logs[0].keys.len(), logs[0].quorum), (3, 2));
    }

    #[test]
    fn a_log_without_keys_or_with_an_impossible_quorum_is_refused() {
        let dir = tempfile::TempDir::new().expect("dir");
        let path = dir.path().join("w.toml");
        let head = "listen = \"127.0.0.1:1\"\nkey_file = \"k\"\nstate_file = \"s\"\n";
        for (log, expected) in [
            ("", "no [[log]]"),
            (
                "[[log]]\norigin = \"o\"\nkeys = []\n",
                "quorum 1 for 0 keys",
            ),
            (
                "[[log]]\norigin = \"o\"\nkeys = [\"nonsense\"]\n",
                "verifier key",
            ),
        ] {
            std::fs::write(&path, format!("{head}{log}")).expect("write");
            let refused = Config::load(&path)
                .and_then(|c| c.trusted_logs())
                .expect_err(log);
            assert!(refused.contains(expected), "{refused}");
        }
    }
}

//! An external witness for cluster tests: `veritrail-witness` as its own
//! process, its key and its configuration.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{HttpAnswer, ORIGIN, http_post, veritrail_witness, wait_for};

/// A witness process, stopped when dropped.
#[derive(Debug)]
pub struct WitnessProcess {
    child: Child,
    pub addr: String,
    config: PathBuf,
}

impl WitnessProcess {
    pub async fn start(config: &Path, addr: &str) -> WitnessProcess {
        let child = Command::new(veritrail_witness())
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start veritrail-witness");
        wait_for(Duration::from_secs(20), "the witness to listen", || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        WitnessProcess {
            child,
            addr: addr.to_owned(),
            config: config.to_owned(),
        }
    }

    pub async fn restart(mut self) -> WitnessProcess {
        let _ = self.child.kill();
        let _ = self.child.wait();
        WitnessProcess::start(&self.config.clone(), &self.addr.clone()).await
    }

    /// POSTs `add-checkpoint` with `old`, `proof` (base64 lines) and `note`.
    pub async fn add(&self, old: u64, proof: &[String], note: &str) -> HttpAnswer {
        let mut body = format!("old {old}\n");
        for line in proof {
            body.push_str(line);
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        http_post(&self.addr, "/add-checkpoint", &body).await
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file name a witness's files take after, in a test's directory.
fn file_stem(name: &str) -> String {
    name.replace('/', "_")
}

/// A new key for the witness `name`, made by `veritrail-witness keygen`: the
/// key file and its verifier key.
pub fn witness_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key_file = dir.join(format!("{}.key", file_stem(name)));
    let made = Command::new(veritrail_witness())
        .args(["keygen", "--name", name, "-o"])
        .arg(&key_file)
        .output()
        .expect("keygen");
    assert!(made.status.success(), "{made:?}");
    let vkey = String::from_utf8(made.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    (key_file, vkey)
}

/// The configuration of a witness, with its own state file, following the
/// test cluster's log.
pub fn witness_config(dir: &Path, addr: &str, key_file: &Path, log_keys: &[String]) -> PathBuf {
    let stem = key_file.file_stem().expect("a key file").to_string_lossy();
    let config = dir.join(format!("{stem}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nkey_file = \"{}\"\nstate_file = \"{}\"\n\n[[log]]\norigin = \"{ORIGIN}\"\nkeys = {log_keys:?}\n",
            key_file.display(),
            dir.join(format!("{stem}.state.json")).display()
        ),
    )
    .expect("config");
    config
}

//! Rotation without restart: the TLS files, the policy and the tokens file
//! are read again on SIGHUP, and when one of them changes on disk (checked
//! every [`POLL`]).
//!
//! A reload is all or nothing. Every file is read and checked first, as at
//! start (the certificate must still be this node's, in the same trust
//! domain); only when all pass are they put in force together: new
//! connections are accepted with the new certificate and CA, peers are called
//! with them (channels are made anew), and calls are authorized by the new
//! policy and tokens. When one fails, nothing changes: the node logs
//! `reload refused`, naming the file and why, and keeps what it had, so a
//! half-written or mistyped file never takes a node down. Connections already
//! open keep the TLS session they made.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::auth::Grants;
use crate::listener::CurrentTls;
use crate::node::Node;
use crate::tls::TlsMaterial;

/// How often the files are looked at for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Reloads on SIGHUP and on file changes, for as long as the node runs.
pub async fn run_reload(node: Arc<Node>, tls: Option<CurrentTls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; files are still watched");
            None
        }
    };
    let files = watched(&node);
    let mut seen = stamps(&files);
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = async {
                match hangup.as_mut() {
                    Some(signals) => signals.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            _ = every.tick() => {
                let now = stamps(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "a file changed"
            }
        };
        match reload(&node, tls.as_ref()) {
            Ok(what) => {
                node.metrics
                    .reloads
                    .get_or_create(&vec![("outcome".to_owned(), "ok".to_owned())])
                    .inc();
                tracing::info!(trigger = why, reloaded = ?what, "reloaded");
            }
            Err(e) => {
                node.metrics
                    .reloads
                    .get_or_create(&vec![("outcome".to_owned(), "refused".to_owned())])
                    .inc();
                tracing::error!(
                    trigger = why,
                    error = %e,
                    "reload refused: the files in force before stay in force"
                );
            }
        }
    }
}

/// Reads every file, and puts them in force only if all of them pass.
fn reload(node: &Node, tls: Option<&CurrentTls>) -> Result<Vec<&'static str>, String> {
    let config = &node.config;
    let material = match tls {
        Some(_) => {
            let material = TlsMaterial::load(&config.tls, node.id, &config.origin)?
                .ok_or("the TLS files are no longer configured")?;
            if Some(&material.cluster) != node.auth.cluster() {
                return Err(format!(
                    "tls.cert_file is now of trust domain {:?}; changing the trust domain takes a restart",
                    material.cluster.trust_domain
                ));
            }
            Some((material.acceptor()?, material.peer_connector()?))
        }
        None => None,
    };
    let grants = Grants::load(config)?;
    let mut what = Vec::new();
    if let (Some(current), Some((acceptor, client))) = (tls, material) {
        current.replace(acceptor);
        node.peers.replace_tls(client.clone());
        node.raft_peers.replace_tls(client);
        what.push("tls");
    }
    node.auth.replace_grants(grants);
    what.extend(["policy", "tokens"]);
    Ok(what)
}

/// The files a reload reads.
fn watched(node: &Node) -> Vec<PathBuf> {
    let c = &node.config;
    [
        &c.tls.ca_file,
        &c.tls.cert_file,
        &c.tls.key_file,
        &c.tls.crl_file,
        &c.auth.policy_file,
        &c.auth.tokens_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

/// Each file's modification time and length (`None` while it is missing).
fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

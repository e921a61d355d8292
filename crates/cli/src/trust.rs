//! Which keys an auditor trusts, from flags or, failing that, from the cluster.

use anyhow::{Context as _, bail};
use veritrail_client::Client;
use veritrail_core::checkpoint::{CheckpointVerifier, VerifiedCheckpoint};
use veritrail_core::note::NoteKey;

use crate::KeyArgs;
use crate::output::{Failure, Format};

/// Keys given with `--keys`: verifier-key strings, or `@FILE` naming a file
/// with one per line (blank lines and `#` comments skipped).
pub fn keys_from_args(args: &KeyArgs) -> anyhow::Result<Vec<NoteKey>> {
    let mut keys = Vec::new();
    for arg in &args.keys {
        if let Some(path) = arg.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading keys from {path}"))?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(NoteKey::parse(line).with_context(|| format!("key {line:?} in {path}"))?);
            }
        } else if !arg.trim().is_empty() {
            keys.push(NoteKey::parse(arg.trim()).with_context(|| format!("key {arg:?}"))?);
        }
    }
    Ok(keys)
}

/// A verifier for `origin` over `keys` with `--quorum` or a majority.
pub fn verifier(
    origin: &str,
    keys: Vec<NoteKey>,
    quorum: Option<usize>,
) -> anyhow::Result<CheckpointVerifier> {
    if keys.is_empty() {
        bail!("no keys to verify signatures with");
    }
    let quorum = quorum.unwrap_or(keys.len() / 2 + 1);
    CheckpointVerifier::new(origin, keys, quorum).context("trusted keys")
}

/// The log's origin and the keys to trust: `--keys` when given, else the voters'
/// keys as the cluster reports them, with a warning that this trusts the node
/// that answered.
pub async fn from_cluster(
    client: &Client,
    format: Format,
    args: &KeyArgs,
) -> anyhow::Result<CheckpointVerifier> {
    let status = client
        .status()
        .await
        .context("asking the cluster for its status")?;
    let mut keys = keys_from_args(args)?;
    if keys.is_empty() {
        for member in status.members.iter().filter(|m| m.voter) {
            keys.push(
                NoteKey::parse(&member.public_key)
                    .with_context(|| format!("node {} reports a malformed key", member.node_id))?,
            );
        }
        if format == Format::Text {
            eprintln!(
                "warning: trusting the {} voter keys node {} reports (trust on first use); \
                 pin them with --keys for an independent check",
                keys.len(),
                status.node_id
            );
        }
    }
    verifier(&status.origin, keys, args.quorum)
}

/// The cluster's latest co-signed checkpoint, as signed text and verified
/// against `trust`; a verification failure when it does not verify.
pub async fn latest_checkpoint(
    client: &Client,
    trust: &CheckpointVerifier,
) -> Result<(String, VerifiedCheckpoint), Failure> {
    let latest = client.checkpoint(None).await?;
    let verified = trust
        .verify(&latest.note)
        .map_err(|e| Failure::Verification {
            reason: format!("the latest checkpoint does not verify: {e}"),
            first_bad_seq: None,
            details: None,
        })?;
    Ok((latest.note, verified))
}

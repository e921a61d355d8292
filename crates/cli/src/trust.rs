//! Which keys an auditor trusts, from flags or, failing that, from the cluster.

use anyhow::{Context as _, bail};
use veritrail_client::Client;
use veritrail_core::checkpoint::{CheckpointVerifier, VerifiedCheckpoint};
use veritrail_core::note::NoteKey;
use veritrail_core::policy::TrustPolicy;

use crate::KeyArgs;
use crate::output::{Failure, Format};

/// The trust policy given with `--policy`, if any.
pub fn policy_from_args(args: &KeyArgs) -> anyhow::Result<Option<TrustPolicy>> {
    let Some(path) = &args.policy else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the trust policy {}", path.display()))?;
    let policy = TrustPolicy::parse(&text).with_context(|| format!("{}", path.display()))?;
    Ok(Some(policy))
}

/// The quorum given with `--quorum`, or the policy's.
pub fn quorum_from_args(args: &KeyArgs) -> anyhow::Result<Option<usize>> {
    Ok(match policy_from_args(args)? {
        Some(policy) => Some(policy.log_quorum()),
        None => args.quorum,
    })
}

/// A verifier for an offline check: the policy's with `--policy` (whose
/// origin must be `origin`), else `origin` over the `--keys` with `--quorum`
/// or a majority.
pub fn offline_verifier(args: &KeyArgs, origin: &str) -> anyhow::Result<CheckpointVerifier> {
    if let Some(policy) = policy_from_args(args)? {
        return policy_verifier(&policy, origin);
    }
    let keys = keys_from_args(args)?;
    if keys.is_empty() {
        bail!(
            "give the log's keys with --keys or --policy: a proof is only as good as the keys \
             it is checked against"
        );
    }
    verifier(origin, keys, args.quorum)
}

fn policy_verifier(policy: &TrustPolicy, origin: &str) -> anyhow::Result<CheckpointVerifier> {
    if policy.origin() != origin {
        bail!(
            "the trust policy is for the log {:?}, and this is {origin:?}",
            policy.origin()
        );
    }
    policy.checkpoint_verifier().context("the trust policy")
}

/// Keys given with `--keys`: verifier-key strings, or `@FILE` naming a file
/// with one per line (blank lines and `#` comments skipped); or the log keys
/// of the `--policy`.
pub fn keys_from_args(args: &KeyArgs) -> anyhow::Result<Vec<NoteKey>> {
    if let Some(policy) = policy_from_args(args)? {
        return Ok(policy.log_keys().to_vec());
    }
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
    if let Some(policy) = policy_from_args(args)? {
        return policy_verifier(&policy, &status.origin);
    }
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

//! Auditing: `verify` (online, incremental), `export` (an evidence bundle) and
//! `verify-bundle` (offline).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use futures::StreamExt as _;
use serde_json::json;
use veritrail_client::{
    Advance, ChainState, Client, Error as ClientError, KeySetChange, ScanQuery, Verifier,
};
use veritrail_core::bundle::{
    BUNDLE_FORMAT, BUNDLE_HEADER_MAX_BYTES, BundleHeader, BundleVerifier, entry_line,
};
use veritrail_core::merkle::Frontier;
use veritrail_core::{ChainVerifier, Error as CoreError, FORMAT_ENTRY_MAX_BYTES};

use crate::KeyArgs;
use crate::output::{self, CmdResult, Failure, Format};
use crate::trust;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check entries from this seq only (their Merkle root is still checked
    /// against the checkpoint). By default from the start, or from where the
    /// trusted state left off.
    #[arg(long)]
    from: Option<u64>,
    /// JSON file holding the trusted checkpoint and how far the chain was
    /// checked. Created on first use; later runs check only what is new, and
    /// fail if the cluster's history no longer extends it.
    #[arg(long)]
    trusted_state: Option<PathBuf>,
    /// The auditor's signer list: a TOML file of `[[signer]]` tables (the
    /// cluster policy's own form; other tables are ignored). Every entry of a
    /// listed principal must be signed by one of its keys, and no other entry
    /// may be signed. Without it, signatures are still verified where present.
    #[arg(long, value_name = "FILE")]
    signers: Option<PathBuf>,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// First seq of the range.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// End of the range, exclusive; the latest checkpoint's size by default.
    #[arg(long)]
    to: Option<u64>,
    /// Where to write the bundle.
    #[arg(long, short = 'o')]
    output_file: PathBuf,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Debug, Args)]
pub struct VerifyBundleArgs {
    /// The bundle file.
    pub file: PathBuf,
    /// The log's origin the bundle must be for; the bundle's own by default.
    #[arg(long)]
    pub origin: Option<String>,
    /// Node verifier keys (`name+hash+base64`), comma-separated, or `@FILE`
    /// with one per line. Without it, the bundle's own keys are used, which
    /// only proves the bundle consistent with itself, and a warning says so.
    #[arg(long = "keys", value_name = "KEYS", value_delimiter = ',')]
    pub bundle_keys: Vec<String>,
    /// How many of the keys must have signed; a majority by default.
    #[arg(long)]
    pub quorum: Option<usize>,
    /// The auditor's signer list, as for `veritrail verify --signers`.
    #[arg(long, value_name = "FILE")]
    pub signers: Option<PathBuf>,
    /// A trust policy file (docs/FORMAT.md section 13), instead of --keys and
    /// --quorum: the bundle's checkpoint must also carry the witness
    /// cosignatures it asks for.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle_keys", "quorum"])]
    pub policy: Option<PathBuf>,
}

/// The `[[signer]]` tables of a TOML file: an auditor's signer list, or the
/// cluster's policy file itself.
pub fn load_signers(path: &Path) -> anyhow::Result<veritrail_core::SignerList> {
    #[derive(serde::Deserialize)]
    struct SignerFile {
        #[serde(default)]
        signer: Vec<veritrail_core::SignerEntry>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: SignerFile =
        toml::from_str(&text).with_context(|| format!("signer list {}", path.display()))?;
    veritrail_core::SignerList::new(file.signer)
        .map_err(|e| anyhow::anyhow!("signer list {}: {e}", path.display()))
}

fn verification(error: &ClientError) -> Option<Failure> {
    match error {
        ClientError::Fork(evidence) => Some(Failure::Verification {
            reason: evidence.reason.clone(),
            first_bad_seq: None,
            details: Some(json!({ "fork": evidence })),
        }),
        ClientError::Verification(reason) => Some(Failure::Verification {
            reason: reason.clone(),
            first_bad_seq: None,
            details: None,
        }),
        _ => None,
    }
}

fn chain_failure(error: CoreError) -> Failure {
    let first_bad_seq = match &error {
        CoreError::ChainBroken { seq, .. } => Some(*seq),
        _ => None,
    };
    Failure::Verification {
        reason: error.to_string(),
        first_bad_seq,
        details: None,
    }
}

pub async fn verify(client: &Client, format: Format, args: &VerifyArgs) -> CmdResult {
    let signers = args.signers.as_deref().map(load_signers).transpose()?;
    let existing = args.trusted_state.as_deref().filter(|p| p.exists());
    let mut verifier = match existing {
        Some(path) => {
            let verifier = Verifier::load(path)?;
            let given = trust::keys_from_args(&args.keys)?;
            let held: Vec<String> = verifier
                .trust()
                .keys()
                .iter()
                .map(|k| k.to_string())
                .collect();
            let differs = !given.is_empty()
                && given
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    != held.iter().cloned().collect();
            if differs
                || trust::quorum_from_args(&args.keys)?
                    .is_some_and(|q| q != verifier.trust().quorum())
            {
                return Err(anyhow::anyhow!(
                    "{} already pins {} keys with quorum {}; --keys and --quorum cannot change \
                     them (use another file to start a new trust)",
                    path.display(),
                    held.len(),
                    verifier.trust().quorum()
                )
                .into());
            }
            // The policy's witnesses, which the state file does not hold.
            match trust::policy_from_args(&args.keys)? {
                Some(policy) => verifier.with_witness_rule(policy.witness_rule().clone()),
                None => verifier,
            }
        }
        None => Verifier::new(trust::from_cluster(client, format, &args.keys).await?),
    };
    let before = verifier.trusted().map(|t| t.checkpoint.size);
    let advance = match verifier.update(client).await {
        Ok(advance) => advance,
        Err(e) => return Err(verification(&e).unwrap_or_else(|| e.into())),
    };
    let trusted = verifier
        .trusted()
        .cloned()
        .context("no checkpoint is trusted after the update")?;
    let checkpoint = &trusted.checkpoint;
    let origin = verifier.trust().origin().to_owned();

    // Where to start: a given seq, where the last audit stopped, or genesis.
    let resumed_chain = verifier.chain().cloned();
    let (mut chain, start, full) = match (args.from, &resumed_chain) {
        (Some(from), _) => {
            if from > checkpoint.size {
                return Err(anyhow::anyhow!(
                    "--from {from} is past the checkpoint's size {}",
                    checkpoint.size
                )
                .into());
            }
            let chain = if from == 0 {
                ChainVerifier::from_genesis(&origin)
            } else {
                let frontier = Frontier::from_parts(from, client.frontier(from).await?)
                    .map_err(chain_failure)?;
                ChainVerifier::resume(&origin, from, None, None, Some(frontier))
                    .map_err(chain_failure)?
            };
            (chain, from, from == 0)
        }
        (None, Some(state)) if state.size > 0 => {
            let frontier =
                Frontier::from_parts(state.size, state.frontier.clone()).map_err(chain_failure)?;
            let chain = ChainVerifier::resume(
                &origin,
                state.size,
                Some(state.head),
                Some(state.last_timestamp_ns),
                Some(frontier),
            )
            .map_err(chain_failure)?;
            (chain, state.size, true)
        }
        _ => (ChainVerifier::from_genesis(&origin), 0, true),
    };

    let bar = output::progress(format, checkpoint.size - start, "verifying");
    let mut signed = 0u64;
    let mut entries = client.scan(ScanQuery {
        from_seq: start,
        to_seq: Some(checkpoint.size),
        ..ScanQuery::default()
    });
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| match e {
            // An entry whose bytes do not match the hash it came with is a
            // failed check of what the node says, not a connection problem.
            ClientError::Protocol(reason) => Failure::Verification {
                reason,
                first_bad_seq: Some(chain.next_seq()),
                details: None,
            },
            other => other.into(),
        })?;
        let pushed = chain.push(&entry.canonical).map_err(chain_failure)?;
        signed += u64::from(pushed.signature.is_some());
        if let Some(list) = &signers {
            list.check_entry(&pushed)
                .map_err(|reason| Failure::Verification {
                    reason,
                    first_bad_seq: Some(pushed.seq),
                    details: None,
                })?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let end = chain.next_seq();
    if end != checkpoint.size {
        return Err(Failure::Verification {
            reason: format!(
                "the node returned entries up to seq {end}; the checkpoint covers {}",
                checkpoint.size
            ),
            first_bad_seq: Some(end),
            details: None,
        });
    }
    let root = chain
        .root()
        .unwrap_or_else(veritrail_core::merkle::empty_root);
    if root != checkpoint.root {
        return Err(Failure::Verification {
            reason: format!(
                "entries [{start}, {end}) lead to root {root}; the checkpoint signs {}",
                checkpoint.root
            ),
            first_bad_seq: None,
            details: None,
        });
    }
    if checkpoint.size > 0 && start < checkpoint.size {
        if chain.head() != Some(checkpoint.head) {
            return Err(Failure::Verification {
                reason: "the last entry's hash is not the checkpoint's chain head".into(),
                first_bad_seq: Some(end - 1),
                details: None,
            });
        }
        if chain.last_timestamp_ns() != Some(checkpoint.timestamp_ns) {
            return Err(Failure::Verification {
                reason: "the last entry's timestamp is not the checkpoint's".into(),
                first_bad_seq: Some(end - 1),
                details: None,
            });
        }
    }
    if full
        && let (Some(head), Some(ts), Some(frontier)) =
            (chain.head(), chain.last_timestamp_ns(), chain.frontier())
    {
        verifier.set_chain(ChainState {
            size: end,
            head,
            last_timestamp_ns: ts,
            frontier: frontier.nodes().to_vec(),
        })?;
    }
    if let Some(path) = &args.trusted_state {
        verifier.persist_to(path)?;
    }
    let checked = end - start;
    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "origin": origin,
            "tree_size": checkpoint.size,
            "root": checkpoint.root.to_hex(),
            "signers": trusted.signers,
            "quorum": verifier.trust().quorum(),
            "previous_trusted_size": before,
            "advance": advance,
            "key_set": verifier.key_set_news(),
            "key_set_epoch": verifier.key_set_epoch(),
            "checked_from": start,
            "entries_checked": checked,
            "signed_entries": signed,
            "signer_list": signers.is_some(),
        })),
        Format::Text => {
            match verifier.key_set_news() {
                Some(KeySetChange::Adopted {
                    epoch,
                    added,
                    removed,
                    signers,
                    quorum,
                }) => {
                    println!(
                        "the cluster's voters changed: learnt their key set of epoch {epoch}, \
                         vouched for by {} trusted keys ({}); quorum now {quorum}",
                        signers.len(),
                        signers.join(", ")
                    );
                    for key in added {
                        println!("  + {key}");
                    }
                    for key in removed {
                        println!("  - {key}");
                    }
                }
                Some(KeySetChange::Deferred { epoch }) => println!(
                    "the cluster's key set of epoch {epoch} is vouched for by the trusted keys; \
                     it is adopted once a checkpoint its keys signed is trusted"
                ),
                Some(KeySetChange::Unchanged { .. }) | None => {}
            }
            match advance {
                Advance::Advanced { from_size, to_size } => println!(
                    "checkpoint advanced from size {from_size} to {to_size}: consistency proof verified"
                ),
                Advance::First { size } => println!("first trusted checkpoint: size {size}"),
                _ => println!("checkpoint unchanged at size {}", checkpoint.size),
            }
            println!(
                "signed by {} of {} keys (quorum {}): {}",
                trusted.signers.len(),
                verifier.trust().keys().len(),
                verifier.trust().quorum(),
                trusted.signers.join(", ")
            );
            println!(
                "verified {checked} entries [{start}, {end}): chain links, timestamps and Merkle root {root}"
            );
            if signed > 0 {
                println!(
                    "{signed} of them carry their service's signature, and every one verifies"
                );
            }
            if signers.is_some() {
                println!(
                    "every entry of a principal in the signer list is signed by one of its keys"
                );
            }
            println!("OK");
        }
    }
    Ok(())
}

pub async fn export(client: &Client, format: Format, args: &ExportArgs) -> CmdResult {
    let trust = trust::from_cluster(client, format, &args.keys).await?;
    let (note, verified) = trust::latest_checkpoint(client, &trust).await?;
    let size = verified.checkpoint.size;
    let to = args.to.unwrap_or(size);
    if to > size {
        return Err(anyhow::anyhow!(
            "--to {to} is past the latest co-signed checkpoint ({size} entries); \
             wait for the next checkpoint or export up to {size}"
        )
        .into());
    }
    if args.from > to {
        return Err(anyhow::anyhow!("--from {} is past --to {to}", args.from).into());
    }
    let left_frontier = if args.from == 0 {
        Vec::new()
    } else {
        client.frontier(args.from).await?
    };
    let consistency_proof = client.consistency_proof(to, size).await?.proof;
    let header = BundleHeader {
        format: BUNDLE_FORMAT.to_owned(),
        origin: trust.origin().to_owned(),
        start: args.from,
        count: to - args.from,
        checkpoint: note.clone(),
        keys: trust.keys().iter().map(|k| k.to_string()).collect(),
        quorum: trust.quorum(),
        left_frontier,
        consistency_proof,
    };
    // Check while writing: a bundle that would not verify is never left behind.
    let mut check =
        BundleVerifier::start(header.clone(), &trust).map_err(|f| Failure::Verification {
            reason: f.reason,
            first_bad_seq: f.seq,
            details: None,
        })?;
    let path = &args.output_file;
    let tmp = tmp_path(path);
    // Ctrl-C leaves no partial file behind (it used to leave a 0-byte one).
    // `biased`: the handler is in place before the file is created.
    let written = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Failure::Interrupted(format!(
                "nothing was written to {}",
                path.display()
            )));
        }
        written = write_bundle(client, format, &header, &tmp, &mut check) => written,
    };
    let finished = written.and_then(|()| {
        check.finish().map_err(|f| Failure::Verification {
            reason: f.reason,
            first_bad_seq: f.seq,
            details: None,
        })
    });
    let (checks, _) = match finished {
        Ok(done) => done,
        Err(failure) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(failure);
        }
    };
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "file": path.display().to_string(),
            "origin": header.origin,
            "start": header.start,
            "count": header.count,
            "tree_size": size,
            "checks": checks,
        })),
        Format::Text => println!(
            "wrote {} entries [{}, {to}) to {}, checked against the checkpoint of size {size}",
            header.count,
            header.start,
            path.display()
        ),
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    path.with_file_name(name)
}

async fn write_bundle(
    client: &Client,
    format: Format,
    header: &BundleHeader,
    tmp: &Path,
    check: &mut BundleVerifier,
) -> CmdResult {
    let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(header.to_line().as_bytes())?;
    let bar = output::progress(format, header.count, "exporting");
    let mut entries = client.scan(ScanQuery {
        from_seq: header.start,
        to_seq: Some(header.start + header.count),
        ..ScanQuery::default()
    });
    while let Some(entry) = entries.next().await {
        let line = entry_line(&entry?.canonical);
        check.push_line(&line).map_err(|f| Failure::Verification {
            reason: f.reason,
            first_bad_seq: f.seq,
            details: None,
        })?;
        out.write_all(line.as_bytes())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(())
}

/// Longest entry line: the base64 of the largest entry the format allows, and
/// its newline.
const ENTRY_LINE_MAX_BYTES: u64 = (FORMAT_ENTRY_MAX_BYTES as u64).div_ceil(3) * 4 + 1;

/// Reads one line of at most `max` bytes, newline included. `None` at the end.
fn read_line(
    reader: &mut impl std::io::BufRead,
    max: u64,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let mut buf = Vec::new();
    reader.by_ref().take(max + 1).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() as u64 > max {
        anyhow::bail!("{what} is longer than {max} bytes");
    }
    if buf.last() != Some(&b'\n') {
        anyhow::bail!("{what} does not end in a newline: the bundle is truncated");
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| anyhow::anyhow!("{what} is not UTF-8"))
}

/// What `bundle` does with a bundle file.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Print the entries of an evidence bundle, offline, checking each as it
    /// is read (as verify-bundle does); the result of the checks ends the
    /// output, and a bundle that fails them exits 1.
    Show(VerifyBundleArgs),
}

pub fn bundle(format: Format, command: &BundleCommand) -> CmdResult {
    match command {
        BundleCommand::Show(args) => check_bundle(format, args, true),
    }
}

pub fn verify_bundle(format: Format, args: &VerifyBundleArgs) -> CmdResult {
    check_bundle(format, args, false)
}

/// Checks a bundle, printing each entry once it passed its checks when `show`.
fn check_bundle(format: Format, args: &VerifyBundleArgs, show: bool) -> CmdResult {
    let fail = |seq: Option<u64>, reason: String| Failure::Verification {
        reason,
        first_bad_seq: seq,
        details: None,
    };
    // A file that cannot be read is not a bundle that failed its checks.
    let read_failure = |seq: Option<u64>, e: anyhow::Error| match e.downcast_ref::<std::io::Error>()
    {
        Some(_) => Failure::Other(e),
        None => fail(seq, e.to_string()),
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let mut reader = BufReader::new(file);
    let header_line = read_line(&mut reader, BUNDLE_HEADER_MAX_BYTES as u64, "the header")
        .map_err(|e| read_failure(None, e))?
        .ok_or_else(|| fail(None, "the bundle is empty".into()))?;
    let header = BundleHeader::parse(&header_line).map_err(|e| fail(None, e.to_string()))?;
    let origin = args.origin.clone().unwrap_or_else(|| header.origin.clone());
    let key_args = KeyArgs {
        keys: args.bundle_keys.clone(),
        quorum: args.quorum,
        policy: args.policy.clone(),
    };
    let mut keys = trust::keys_from_args(&key_args)?;
    let keys_from_bundle = keys.is_empty();
    if keys_from_bundle {
        keys = header
            .parse_keys()
            .map_err(|e| fail(None, format!("bundle keys: {e}")))?;
        if format == Format::Text {
            eprintln!(
                "warning: no --keys given: checking against the bundle's own keys, which only \
                 shows that the bundle is internally consistent"
            );
        }
    }
    let quorum = if keys_from_bundle && args.quorum.is_none() {
        Some(header.quorum)
    } else {
        args.quorum
    };
    let trust = match args.policy {
        Some(_) => trust::offline_verifier(&key_args, &origin)?,
        None => trust::verifier(&origin, keys, quorum)?,
    };
    let count = header.count;
    let start = header.start;
    let mut check = BundleVerifier::start(header, &trust).map_err(|f| fail(f.seq, f.reason))?;
    if let Some(path) = &args.signers {
        check = check.with_signers(load_signers(path)?);
    }
    let bar = output::progress(format, count, "verifying");
    let mut seq = start;
    while let Some(line) = read_line(
        &mut reader,
        ENTRY_LINE_MAX_BYTES,
        &format!("the line of seq {seq}"),
    )
    .map_err(|e| read_failure(Some(seq), e))?
    {
        check.push_line(&line).map_err(|f| fail(f.seq, f.reason))?;
        if show {
            // It decoded and chained in push_line: the line is a valid entry.
            let canonical = BASE64
                .decode(line.trim_end_matches('\n'))
                .map_err(|e| fail(Some(seq), e.to_string()))?;
            let entry = veritrail_core::Entry::decode(&canonical)
                .map_err(|e| fail(Some(seq), e.to_string()))?;
            output::print_entry(
                format,
                &veritrail_client::LogEntry {
                    hash: veritrail_core::entry_hash(&canonical),
                    entry,
                    canonical,
                },
            );
        }
        seq += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (checks, verified) = check.finish().map_err(|f| fail(f.seq, f.reason))?;
    match format {
        // With the entries, the result goes to stderr: stdout is theirs.
        Format::Text if show => eprintln!(
            "verified: {count} entries from seq {start}, in the tree of size {} signed by {}{}",
            verified.checkpoint.size,
            verified.signers.join(", "),
            if keys_from_bundle {
                " (against the bundle's own keys only)"
            } else {
                ""
            }
        ),
        Format::Json => output::print_json(&json!({
            "ok": true,
            "origin": origin,
            "start": start,
            "count": count,
            "tree_size": verified.checkpoint.size,
            "root": verified.checkpoint.root.to_hex(),
            "signers": verified.signers,
            "keys_from_bundle": keys_from_bundle,
            "checks": checks,
        })),
        Format::Text => {
            for c in &checks {
                println!("ok  {c}");
            }
            if keys_from_bundle {
                println!("OK (against the bundle's own keys only)");
            } else {
                println!("OK");
            }
        }
    }
    Ok(())
}

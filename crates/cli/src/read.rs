//! Reading commands: `get`, `scan`, `tail`, `checkpoint`, `proof`.

use clap::{Args, Subcommand};
use futures::StreamExt as _;
use serde_json::json;
use veritrail_client::{Client, Error as ClientError, ScanQuery, TailQuery};

use crate::KeyArgs;
use crate::output::{self, CmdResult, Failure, Format};
use crate::trust;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The entry at this sequence number.
    #[arg(long, conflicts_with_all = ["source", "event_id"], required_unless_present = "event_id")]
    seq: Option<u64>,
    /// With --event-id: the entry of this event of this source.
    #[arg(long, requires = "event_id")]
    source: Option<String>,
    /// With --source: the event id the service gave (its idempotency key).
    #[arg(long, requires = "source")]
    event_id: Option<String>,
}

/// The field filters `scan` and `tail` share.
#[derive(Debug, Args)]
pub struct FieldFilters {
    /// Only events of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only events by this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only events with this action.
    #[arg(long)]
    action: Option<String>,
    /// Only events on this resource (not indexed: the node reads the entries
    /// the other filters select and checks each).
    #[arg(long)]
    resource: Option<String>,
    /// Only events with this outcome (not indexed, as --resource).
    #[arg(long)]
    outcome: Option<String>,
    /// Only entries appended by this principal, as the cluster recorded it
    /// (not indexed, as --resource).
    #[arg(long)]
    principal: Option<String>,
}

impl FieldFilters {
    /// These filters, from `from_seq` on.
    fn query(&self, from_seq: u64) -> TailQuery {
        TailQuery {
            from_seq,
            source: self.source.clone(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            outcome: self.outcome.clone(),
            principal: self.principal.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The first seq to read.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Exclusive; the end of the log by default.
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    filters: FieldFilters,
    /// Only entries stamped at or after: RFC 3339 or unix nanoseconds.
    #[arg(long)]
    since: Option<String>,
    /// Only entries stamped before: RFC 3339 or unix nanoseconds.
    #[arg(long)]
    until: Option<String>,
    /// Most entries to print; 0 for all.
    #[arg(long, default_value_t = 0)]
    limit: u64,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// First seq; by default the current end of the log (only new entries).
    #[arg(long)]
    from: Option<u64>,
    /// Keep printing new entries until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    filters: FieldFilters,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The checkpoint of this tree size instead of the latest.
    #[arg(long)]
    size: Option<u64>,
    #[command(flatten)]
    keys: KeyArgs,
}

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// The inclusion proof of an entry, checked against a co-signed checkpoint.
    Inclusion {
        /// Which entry: --seq, or --source and --event-id.
        #[command(flatten)]
        entry: GetArgs,
        /// Tree size; the latest checkpoint's by default.
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        keys: KeyArgs,
        /// Also write the checked proof to FILE as a C2SP tlog-proof
        /// (`c2sp.org/tlog-proof@v1`, conventionally `.tlog-proof`): the
        /// entry's canonical bytes as its `extra`, the inclusion proof and the
        /// co-signed checkpoint. `veritrail verify-proof` and any tlog-proof
        /// verifier check it offline.
        #[arg(long, value_name = "FILE")]
        tlog_proof: Option<std::path::PathBuf>,
    },
    /// The consistency proof between two tree sizes, checked against the
    /// co-signed checkpoints of those sizes.
    Consistency {
        /// The older tree size.
        #[arg(long)]
        from: u64,
        /// The latest checkpoint's size by default.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

impl GetArgs {
    /// The entry these flags name.
    async fn fetch(&self, client: &Client) -> Result<veritrail_client::LogEntry, Failure> {
        Ok(match (&self.seq, &self.source, &self.event_id) {
            (Some(seq), _, _) => client.get(*seq).await?,
            (None, Some(source), Some(id)) => client.get_by_event_id(source, id).await?,
            _ => return Err(anyhow::anyhow!("give --seq, or --source and --event-id").into()),
        })
    }
}

pub async fn get(client: &Client, format: Format, args: &GetArgs) -> CmdResult {
    let entry = args.fetch(client).await?;
    output::print_entry(format, &entry);
    Ok(())
}

pub async fn scan(client: &Client, format: Format, args: &ScanArgs) -> CmdResult {
    let query = ScanQuery {
        to_seq: args.to,
        since_ns: args.since.as_deref().map(output::parse_time).transpose()?,
        until_ns: args.until.as_deref().map(output::parse_time).transpose()?,
        limit: args.limit,
        ..ScanQuery::from(args.filters.query(args.from))
    };
    let mut entries = client.scan(query);
    while let Some(entry) = entries.next().await {
        output::print_entry(format, &entry?);
    }
    Ok(())
}

pub async fn tail(client: &Client, format: Format, args: &TailArgs) -> CmdResult {
    let from = match args.from {
        Some(from) => from,
        None => client.status().await?.tree_size,
    };
    if !args.follow {
        let mut entries = client.scan(ScanQuery::from(args.filters.query(from)));
        while let Some(entry) = entries.next().await {
            output::print_entry(format, &entry?);
        }
        return Ok(());
    }
    let mut entries = client.tail(args.filters.query(from));
    loop {
        tokio::select! {
            entry = entries.next() => match entry {
                Some(entry) => output::print_entry(format, &entry?),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

pub async fn checkpoint(client: &Client, format: Format, args: &CheckpointArgs) -> CmdResult {
    let checkpoint = client.checkpoint(args.size).await?;
    let trust = trust::from_cluster(client, format, &args.keys).await?;
    let verified = trust
        .verify(&checkpoint.note)
        .map_err(|e| Failure::Verification {
            reason: format!(
                "the checkpoint of size {} does not verify: {e}",
                checkpoint.tree_size
            ),
            first_bad_seq: None,
            details: Some(json!({ "signed_note": checkpoint.note })),
        })?;
    match format {
        Format::Json => output::print_json(&json!({
            "ok": true,
            "tree_size": verified.checkpoint.size,
            "root": verified.checkpoint.root.to_hex(),
            "head": verified.checkpoint.head.to_hex(),
            "timestamp_ns": verified.checkpoint.timestamp_ns,
            "timestamp": output::format_time(verified.checkpoint.timestamp_ns),
            "signers": verified.signers,
            "quorum": trust.quorum(),
            "signed_note": checkpoint.note,
        })),
        Format::Text => {
            // The note is printed as signed: its root is base64, as the C2SP
            // format has it. Every other output of this CLI shows hashes in
            // hex, so the line below gives the root in hex too.
            print!("{}", checkpoint.note);
            eprintln!(
                "verified: size {}, root {} (hex), signed by {} of {} keys (quorum {}): {}",
                verified.checkpoint.size,
                verified.checkpoint.root.to_hex(),
                verified.signers.len(),
                trust.keys().len(),
                trust.quorum(),
                verified.signers.join(", ")
            );
        }
    }
    Ok(())
}

pub async fn proof(client: &Client, format: Format, command: &ProofCommand) -> CmdResult {
    match command {
        ProofCommand::Inclusion {
            entry,
            size,
            keys,
            tlog_proof,
        } => {
            let entry = entry.fetch(client).await?;
            let seq = &entry.seq();
            let trust = trust::from_cluster(client, format, keys).await?;
            let checkpoint = client.checkpoint(*size).await?;
            let verified = trust
                .verify(&checkpoint.note)
                .map_err(|e| Failure::Verification {
                    reason: format!("checkpoint of size {}: {e}", checkpoint.tree_size),
                    first_bad_seq: None,
                    details: None,
                })?;
            let size = verified.checkpoint.size;
            if *seq >= size {
                return Err(anyhow::anyhow!(
                    "seq {seq} is not covered by the checkpoint of size {size}; \
                     wait for the next checkpoint or name a larger --size"
                )
                .into());
            }
            let proof = client.inclusion_proof(*seq, size).await?;
            if proof.leaf != entry.hash {
                return Err(Failure::Verification {
                    reason: format!(
                        "the proof is for leaf {}, the entry hashes to {}",
                        proof.leaf, entry.hash
                    ),
                    first_bad_seq: Some(*seq),
                    details: None,
                });
            }
            proof
                .verify(&verified.checkpoint.root)
                .map_err(ClientError::from)
                .map_err(|e| Failure::Verification {
                    reason: format!("entry {seq} is not in the signed tree of size {size}: {e}"),
                    first_bad_seq: Some(*seq),
                    details: None,
                })?;
            if let Some(path) = tlog_proof {
                let text = crate::tlog_proof::TlogProof {
                    extra: Some(entry.canonical.clone()),
                    index: *seq,
                    proof: proof.proof.clone(),
                    checkpoint: checkpoint.note.clone(),
                }
                .encode();
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
                if format == Format::Text {
                    eprintln!(
                        "wrote the proof to {} (c2sp.org/tlog-proof@v1)",
                        path.display()
                    );
                }
            }
            match format {
                Format::Json => output::print_json(&json!({
                    "ok": true,
                    "seq": seq,
                    "tree_size": size,
                    "leaf": proof.leaf.to_hex(),
                    "proof": proof.proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                    "root": verified.checkpoint.root.to_hex(),
                    "signers": verified.signers,
                })),
                Format::Text => {
                    println!(
                        "entry {seq} (leaf {}) is in the tree of size {size}",
                        proof.leaf
                    );
                    for (i, h) in proof.proof.iter().enumerate() {
                        println!("  proof[{i}] {h}");
                    }
                    println!(
                        "root {} signed by {}",
                        verified.checkpoint.root,
                        verified.signers.join(", ")
                    );
                }
            }
            Ok(())
        }
        ProofCommand::Consistency { from, to, keys } => {
            let trust = trust::from_cluster(client, format, keys).await?;
            let new = client.checkpoint(*to).await?;
            let new = trust.verify(&new.note).map_err(|e| Failure::Verification {
                reason: format!("checkpoint of size {}: {e}", new.tree_size),
                first_bad_seq: None,
                details: None,
            })?;
            let to = new.checkpoint.size;
            if *from > to {
                return Err(anyhow::anyhow!("--from {from} is past --to {to}").into());
            }
            // The old root is trusted only when a quorum signed it too; otherwise
            // the node's word for it is shown and labelled.
            let old = match client.checkpoint(Some(*from)).await {
                Ok(old) => Some(trust.verify(&old.note).map_err(|e| Failure::Verification {
                    reason: format!("checkpoint of size {from}: {e}"),
                    first_bad_seq: None,
                    details: None,
                })?),
                Err(_) => None,
            };
            let proof = client.consistency_proof(*from, to).await?;
            let from_root = old.as_ref().map_or(proof.from_root, |o| o.checkpoint.root);
            proof
                .verify(&from_root, &new.checkpoint.root)
                .map_err(ClientError::from)
                .map_err(|e| Failure::Verification {
                    reason: format!(
                        "the tree of size {to} does not extend the one of size {from}: {e}"
                    ),
                    first_bad_seq: None,
                    details: None,
                })?;
            let from_signed = old.is_some();
            match format {
                Format::Json => output::print_json(&json!({
                    "ok": true,
                    "from_size": from,
                    "to_size": to,
                    "from_root": from_root.to_hex(),
                    "from_root_signed": from_signed,
                    "to_root": new.checkpoint.root.to_hex(),
                    "proof": proof.proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                })),
                Format::Text => {
                    println!("the tree of size {to} extends the tree of size {from}");
                    for (i, h) in proof.proof.iter().enumerate() {
                        println!("  proof[{i}] {h}");
                    }
                    println!(
                        "from root {from_root} ({})",
                        if from_signed {
                            "co-signed"
                        } else {
                            "as the node reports it: no checkpoint of that size"
                        }
                    );
                    println!("to root   {} (co-signed)", new.checkpoint.root);
                }
            }
            Ok(())
        }
    }
}

//! `veritrail keygen`: a service's event-signing key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use veritrail_core::note::{NoteSigner, validate_key_name};

use crate::output::{self, CmdResult, Format};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The key's name, shown in its verifier key: the service's, say `billing`
    /// (no spaces, no `+`).
    #[arg(long)]
    name: String,
    /// Where to write the secret key; an existing file is never overwritten.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
}

pub fn run(format: Format, args: &KeygenArgs) -> CmdResult {
    validate_key_name(&args.name)?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let signer = NoteSigner::from_seed(&args.name, &seed)?;
    seed.fill(0);
    // Created owner-only and never over another file: the secret must not
    // be readable by anyone else for an instant, nor replace a key in use.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    writeln!(file, "{}", signer.to_signer_string())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let verifier_key = signer.public().to_string();
    match format {
        Format::Json => output::print_json(&json!({
            "name": args.name,
            "verifier_key": verifier_key,
            "signing_key_file": args.out,
        })),
        Format::Text => {
            eprintln!(
                "wrote the signing key to {} (keep it secret: it signs this service's events)",
                args.out.display()
            );
            eprintln!("register the verifier key below in the policy's [[signer]] table:");
            println!("{verifier_key}");
        }
    }
    Ok(())
}

//! Printing results as text for people or JSON for programs, and the exit codes.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::json;
use veritrail_client::{LogEntry, Receipt};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Exit codes, one scheme for `veritrail` and `veritraild` (docs/ERRORS.md,
/// "Exit codes"; `veritrail --help`).
pub const EXIT_OK: u8 = 0;
/// A check failed: what the cluster or a bundle claims does not hold.
pub const EXIT_VERIFICATION_FAILED: u8 = 1;
/// Bad flags, arguments, input or files, or a request the cluster refused as
/// invalid: retrying the same thing fails the same way.
pub const EXIT_USAGE: u8 = 2;
/// No node could do it now: none answered, or it was unavailable, timed out,
/// overloaded or failing. Retrying later may work.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// What was asked for does not exist (an entry, a checkpoint of that size).
pub const EXIT_NOT_FOUND: u8 = 4;
/// The credentials are missing or not allowed to do it.
pub const EXIT_DENIED: u8 = 5;

/// The exit code of a failure that is not a verification's: by the SDK error
/// in its chain, or usage when there is none (a flag, a file, the input).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    use tonic::Code;
    use veritrail_client::Error;
    let Some(error) = error.chain().find_map(|e| e.downcast_ref::<Error>()) else {
        return EXIT_USAGE;
    };
    match error {
        Error::Verification(_) | Error::Fork(_) | Error::Protocol(_) => EXIT_VERIFICATION_FAILED,
        Error::InvalidRequest(_) | Error::File { .. } => EXIT_USAGE,
        Error::Unresolvable { .. } | Error::ProducerClosed => EXIT_UNAVAILABLE,
        Error::Status { .. } | Error::RetriesExhausted { .. } => match error.code() {
            Some(Code::NotFound) => EXIT_NOT_FOUND,
            Some(Code::Unauthenticated | Code::PermissionDenied) => EXIT_DENIED,
            Some(
                Code::InvalidArgument
                | Code::OutOfRange
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::Unimplemented,
            ) => EXIT_USAGE,
            // Unavailable, a deadline, an overload, a node's own failure, or
            // no answer at all (a connection that never opened).
            _ => EXIT_UNAVAILABLE,
        },
    }
}

/// How a command ended, when not in success.
#[derive(Debug)]
pub enum Failure {
    /// A check failed: what the cluster or a bundle claims does not hold.
    Verification {
        reason: String,
        first_bad_seq: Option<u64>,
        /// Extra JSON for `--output json` (a report, fork evidence).
        details: Option<serde_json::Value>,
    },
    /// Anything else: bad flags, an unreachable cluster, a refused request.
    Other(anyhow::Error),
    /// Stopped by Ctrl-C, after cleaning up (what is left, in words).
    Interrupted(String),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Other(error.into())
    }
}

pub type CmdResult = Result<(), Failure>;

/// The exit status of a command stopped by Ctrl-C, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Prints the failure and returns its exit code.
pub fn report_failure(format: Format, failure: Failure) -> ExitCode {
    match failure {
        Failure::Interrupted(what) => {
            match format {
                Format::Json => print_json(&json!({
                    "ok": false,
                    "error": "interrupted",
                    "reason": what,
                })),
                Format::Text => eprintln!("interrupted: {what}"),
            }
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Failure::Verification {
            reason,
            first_bad_seq,
            details,
        } => {
            match format {
                Format::Json => print_json(&json!({
                    "ok": false,
                    "error": "verification_failed",
                    "reason": reason,
                    "first_bad_seq": first_bad_seq,
                    "details": details,
                })),
                Format::Text => {
                    let at = first_bad_seq
                        .map(|s| format!(" (first bad seq: {s})"))
                        .unwrap_or_default();
                    eprintln!("VERIFICATION FAILED{at}: {reason}");
                }
            }
            ExitCode::from(EXIT_VERIFICATION_FAILED)
        }
        Failure::Other(error) => {
            match format {
                Format::Json => print_json(&json!({
                    "ok": false,
                    "error": "error",
                    "reason": format!("{error:#}"),
                })),
                Format::Text => eprintln!("error: {error:#}"),
            }
            ExitCode::from(exit_code(&error))
        }
    }
}

pub fn print_json(value: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, value);
    let _ = writeln!(out);
}

/// An entry as one JSON object. The payload is base64; `canonical` is the
/// hashed form, base64. Each `*_ns` time has an RFC 3339 twin (`timestamp`,
/// `event_time`) for people and for tools that read dates.
pub fn entry_json(entry: &LogEntry) -> serde_json::Value {
    let e = &entry.entry;
    json!({
        "seq": e.seq,
        "timestamp_ns": e.timestamp_ns,
        "timestamp": format_time(e.timestamp_ns),
        "prev_hash": e.prev_hash.to_hex(),
        "entry_hash": entry.hash.to_hex(),
        "principal": e.principal,
        "event": {
            "source": e.event.source,
            "event_id": e.event.event_id,
            "actor": e.event.actor,
            "action": e.event.action,
            "resource": e.event.resource,
            "outcome": e.event.outcome,
            "event_time_ns": e.event.event_time_ns,
            "event_time": e.event.event_time_ns.map(format_time),
            "trace_id": e.event.trace_id,
            "attributes": e.event.attributes,
            "payload_base64": BASE64.encode(&e.event.payload),
        },
        // The service's signature (entry format 2), as stored: `veritrail
        // verify` checks it, and with --signers the key.
        "signature": e.signature.map(|s| json!({
            "public_key": hex::encode(s.public_key),
            "signature": hex::encode(s.signature),
        })),
        "canonical_base64": BASE64.encode(&entry.canonical),
    })
}

/// Text as a line may show it: the characters that would reorder or break
/// the line (bidirectional controls, line separators) as `\u{...}` escapes.
/// Entries written before nodes refused them may still hold them.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(veritrail_core::is_display_hazard) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if veritrail_core::is_display_hazard(c) {
                format!("\\u{{{:04X}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

pub fn print_entry(format: Format, entry: &LogEntry) {
    match format {
        Format::Json => print_json(&entry_json(entry)),
        Format::Text => {
            let e = &entry.entry;
            let mut line = format!(
                "{:>8}  {}  {}  {} {} {} -> {}  [{}/{}] by {}",
                e.seq,
                format_time(e.timestamp_ns),
                &entry.hash.to_hex()[..16],
                shown(&e.event.actor),
                shown(&e.event.action),
                shown(&e.event.resource),
                shown(&e.event.outcome),
                e.event.source,
                e.event.event_id,
                shown(&e.principal),
            );
            if !e.event.attributes.is_empty() {
                let attrs: Vec<String> = e
                    .event
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shown(v)))
                    .collect();
                line.push_str(&format!("  {}", attrs.join(" ")));
            }
            if let Some(signature) = &e.signature {
                line.push_str(&format!(
                    "  signed by key {}",
                    &hex::encode(signature.public_key)[..16]
                ));
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
        }
    }
}

pub fn receipt_json(receipt: &Receipt) -> serde_json::Value {
    json!({
        "seq": receipt.seq,
        "entry_hash": receipt.entry_hash.to_hex(),
        "timestamp_ns": receipt.timestamp_ns,
        "timestamp": format_time(receipt.timestamp_ns),
        "duplicate": receipt.duplicate,
        "event_id": receipt.event_id,
    })
}

pub fn print_receipt(format: Format, receipt: &Receipt) {
    match format {
        Format::Json => print_json(&receipt_json(receipt)),
        Format::Text => println!(
            "seq {} hash {} at {}{} (event id {})",
            receipt.seq,
            receipt.entry_hash,
            format_time(receipt.timestamp_ns),
            if receipt.duplicate {
                ", already in the log"
            } else {
                ""
            },
            receipt.event_id
        ),
    }
}

/// Unix nanoseconds as RFC 3339 UTC with nanoseconds.
pub fn format_time(ns: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// An RFC 3339 time (`2026-11-28T12:00:00Z`) or unix nanoseconds, as unix
/// nanoseconds.
pub fn parse_time(text: &str) -> anyhow::Result<u64> {
    if let Ok(ns) = text.parse::<u64>() {
        return Ok(ns);
    }
    let time = humantime::parse_rfc3339_weak(text).map_err(|e| {
        anyhow::anyhow!("{text:?} is neither unix nanoseconds nor an RFC 3339 time: {e}")
    })?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("{text:?} is before 1970"))?;
    u64::try_from(since.as_nanos()).map_err(|_| anyhow::anyhow!("{text:?} is too far ahead"))
}

/// A progress bar on stderr when it is a terminal and the output is text;
/// hidden otherwise, so scripts and JSON consumers see nothing of it.
pub fn progress(format: Format, total: u64, what: &str) -> indicatif::ProgressBar {
    if format == Format::Json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_would_reorder_or_break_a_line_is_shown_escaped() {
        assert_eq!(shown("invoice/42"), "invoice/42");
        assert_eq!(shown("a\u{202E}gpj.exe"), "a\\u{202E}gpj.exe");
        assert_eq!(shown("one\u{2028}two"), "one\\u{2028}two");
        assert_eq!(shown("\u{5D0}\u{5D1}"), "\u{5D0}\u{5D1}");
    }

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z").ok(),
            Some(951_782_400_000_000_000)
        );
        assert_eq!(parse_time("42").ok(), Some(42));
        assert!(parse_time("yesterday").is_err());
    }
}

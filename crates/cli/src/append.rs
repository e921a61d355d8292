//! `veritrail append`: one event from flags, or many as NDJSON from stdin.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use serde::Deserialize;
use veritrail_client::{
    Client, Event, EventSigning, PendingReceipt, Producer, ProducerConfig, Receipt,
};

use crate::output::{self, CmdResult, Format};

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Read newline-delimited JSON events from stdin (fields as in --help of
    /// the flags; `payload` as UTF-8 text or `payload_base64`).
    #[arg(long, conflicts_with_all = ["source", "actor", "action", "resource", "outcome"])]
    stdin: bool,
    /// With --stdin: a line without an `event_id` gets `<PREFIX>-<line number>`
    /// instead of a fresh UUIDv7, so that running the same input again with
    /// the same prefix appends only the lines that are not in the log yet
    /// (say, after a failure part-way).
    #[arg(long, requires = "stdin", value_name = "PREFIX")]
    id_prefix: Option<String>,
    /// The system the event comes from (an identifier: printable ASCII, no
    /// spaces); the policy grants appends per source.
    #[arg(long, required_unless_present = "stdin")]
    source: Option<String>,
    /// Idempotency key; a UUIDv7 when absent.
    #[arg(long)]
    event_id: Option<String>,
    /// Who acted (text).
    #[arg(long, required_unless_present = "stdin")]
    actor: Option<String>,
    /// What was done (text), e.g. `invoice.refund`.
    #[arg(long, required_unless_present = "stdin")]
    action: Option<String>,
    /// What it was done to (text), e.g. `invoice/42`.
    #[arg(long, required_unless_present = "stdin")]
    resource: Option<String>,
    /// How it ended (text), e.g. `success` or `denied`.
    #[arg(long, required_unless_present = "stdin")]
    outcome: Option<String>,
    /// When it happened: RFC 3339 or unix nanoseconds (`event_time_ns` in
    /// JSON, on stdin and in the output).
    #[arg(long)]
    event_time: Option<String>,
    /// A trace id to correlate the event with (an identifier).
    #[arg(long)]
    trace_id: Option<String>,
    /// `key=value`, repeatable.
    #[arg(long = "attr", value_parser = parse_attr)]
    attributes: Vec<(String, String)>,
    /// Payload, as UTF-8 text.
    #[arg(long)]
    payload: Option<String>,
    /// Sign every event with this service key (a file `veritrail keygen`
    /// wrote), for the log --origin names. The policy registers its verifier
    /// key for the principal the CLI authenticates as.
    #[arg(
        long,
        env = "VERITRAIL_SIGNING_KEY",
        requires = "origin",
        value_name = "FILE"
    )]
    signing_key: Option<std::path::PathBuf>,
    /// The log's origin, which signatures name (the first line of `veritrail
    /// checkpoint`).
    #[arg(long, env = "VERITRAIL_ORIGIN")]
    origin: Option<String>,
}

fn parse_attr(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// One line of `append --stdin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEvent {
    source: String,
    #[serde(default)]
    event_id: String,
    actor: String,
    action: String,
    resource: String,
    outcome: String,
    #[serde(default)]
    event_time_ns: Option<u64>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
}

impl JsonEvent {
    fn into_event(self) -> anyhow::Result<Event> {
        let payload = match (self.payload, self.payload_base64) {
            (Some(_), Some(_)) => bail!("give payload or payload_base64, not both"),
            (Some(text), None) => text.into_bytes(),
            (None, Some(b64)) => BASE64.decode(b64).context("payload_base64")?,
            (None, None) => Vec::new(),
        };
        Ok(Event {
            source: self.source,
            event_id: self.event_id,
            actor: self.actor,
            action: self.action,
            resource: self.resource,
            outcome: self.outcome,
            event_time_ns: self.event_time_ns,
            trace_id: self.trace_id,
            attributes: self.attributes,
            payload,
        })
    }
}

pub async fn run(client: &Client, format: Format, args: &AppendArgs) -> CmdResult {
    let signing_client;
    let client = match (&args.signing_key, &args.origin) {
        (Some(path), Some(origin)) => {
            let mut config = client.config().clone();
            config.signing = Some(EventSigning::from_file(path, origin)?);
            signing_client = Client::with_config(config)?;
            &signing_client
        }
        _ => client,
    };
    if args.stdin {
        return bulk(client, format, args.id_prefix.as_deref()).await;
    }
    let event_time_ns = args
        .event_time
        .as_deref()
        .map(output::parse_time)
        .transpose()?;
    let event = Event {
        source: args.source.clone().unwrap_or_default(),
        event_id: args.event_id.clone().unwrap_or_default(),
        actor: args.actor.clone().unwrap_or_default(),
        action: args.action.clone().unwrap_or_default(),
        resource: args.resource.clone().unwrap_or_default(),
        outcome: args.outcome.clone().unwrap_or_default(),
        event_time_ns,
        trace_id: args.trace_id.clone(),
        attributes: args.attributes.iter().cloned().collect(),
        payload: args.payload.clone().unwrap_or_default().into_bytes(),
    };
    let receipt = client.append(event).await?;
    output::print_receipt(format, &receipt);
    Ok(())
}

/// Streams stdin through a producer, printing receipts in input order. At most
/// `window` receipts are awaited at a time, so memory stays bounded for any
/// input size.
async fn bulk(client: &Client, format: Format, id_prefix: Option<&str>) -> CmdResult {
    let config = ProducerConfig::default();
    let window = config.queue_max_events;
    let producer = Producer::new(client, config)?;
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1024);
    // stdin is blocking: read it on a thread of its own.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut pending: VecDeque<PendingReceipt> = VecDeque::new();
    let (mut appended, mut duplicates) = (0u64, 0u64);
    let mut line_no = 0u64;
    let mut failure: Option<anyhow::Error> = None;
    while let Some(line) = lines_rx.recv().await {
        line_no += 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                failure = Some(anyhow::Error::from(e).context("reading stdin"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str::<JsonEvent>(&line)
            .map_err(anyhow::Error::from)
            .and_then(JsonEvent::into_event);
        let event = match event {
            Ok(mut event) => {
                if let Some(prefix) = id_prefix
                    && event.event_id.is_empty()
                {
                    event.event_id = format!("{prefix}-{line_no}");
                }
                event
            }
            Err(e) => {
                failure = Some(e.context(format!("line {line_no}")));
                break;
            }
        };
        match producer.send(event).await {
            Ok(p) => pending.push_back(p),
            Err(e) => {
                failure = Some(anyhow::Error::from(e).context(format!("line {line_no}")));
                break;
            }
        }
        while pending.len() >= window {
            if let Some(p) = pending.pop_front() {
                tally(format, p.await?, &mut appended, &mut duplicates);
            }
        }
    }
    producer.flush().await?;
    for p in pending {
        tally(format, p.await?, &mut appended, &mut duplicates);
    }
    producer.close().await?;
    if format == Format::Text {
        println!("appended {appended} events ({duplicates} were already in the log)");
    }
    let resume = match id_prefix {
        Some(prefix) => format!(
            "; fix the line and run the same input again with --id-prefix {prefix}: \
             the lines already appended are recognized, not appended twice"
        ),
        None => "; to run the same input again without appending its first lines \
                 twice, give every line an event_id, or use --id-prefix from the start"
            .to_owned(),
    };
    match failure {
        Some(e) => Err(e
            .context(format!("stopped after {appended} events{resume}"))
            .into()),
        None => Ok(()),
    }
}

/// Counts a receipt, and prints it in JSON mode (text mode prints a summary).
fn tally(format: Format, receipt: Receipt, appended: &mut u64, duplicates: &mut u64) {
    *appended += 1;
    *duplicates += u64::from(receipt.duplicate);
    if format == Format::Json {
        output::print_receipt(format, &receipt);
    }
}

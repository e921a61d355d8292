//! Store benchmark: apply throughput by batch size, and for a store of one million
//! entries its open time, proof latency and disk use. Prints its figures; run with
//! `cargo bench -p veritrail-store --bench store` (or `make bench`).
//! `VERITRAIL_BENCH_ENTRIES` overrides the large store's size.

use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use veritrail_core::Event;
use veritrail_store::{AppendRequest, Command, Proposal, Store, StoreConfig};

const ORIGIN: &str = "bench.example/log";

/// An event whose canonical entry is 256 bytes with principal "svc".
fn event(n: u64) -> Event {
    let mut e = Event {
        source: "billing".into(),
        event_id: format!("{n:016x}"),
        actor: "alice@example.com".into(),
        action: "invoice.refund".into(),
        resource: format!("tenant/7/invoice/{n:08}"),
        outcome: "success".into(),
        ..Event::default()
    };
    let entry = veritrail_core::Entry {
        seq: 0,
        timestamp_ns: 0,
        prev_hash: veritrail_core::Hash::ZERO,
        principal: "svc".into(),
        event: e.clone(),
        signature: None,
    };
    e.payload = vec![b'x'; 256 - entry.encode().len()];
    e
}

struct Feeder {
    store: Store,
    index: u64,
    next_event: u64,
}

impl Feeder {
    async fn apply_batches(&mut self, batches: u64, events_per_batch: u64) {
        let mut sm = self.store.state_machine.clone();
        for _ in 0..batches {
            let events = (0..events_per_batch).map(|_| {
                self.next_event += 1;
                event(self.next_event)
            });
            let proposal = Proposal {
                proposed_at_ns: 1_700_000_000_000_000_000 + self.index,
                requests: vec![AppendRequest {
                    principal: "svc".into(),
                    events: events.collect(),
                }],
            };
            self.index += 1;
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
                payload: EntryPayload::Normal(Command::Append(proposal)),
            };
            sm.apply(vec![entry]).await.expect("apply");
        }
    }
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks benches to list tests; there are none.
    }
    println!(
        "== veritrail-store benchmark (256-byte entries; apply writes unsynced, as nodes do: \
         the Raft log before it is synced)"
    );
    for (events_per_batch, batches) in [(1u64, 2000u64), (64, 400), (1024, 60)] {
        let dir = tempfile::TempDir::new().expect("dir");
        let store = Store::open(dir.path(), &StoreConfig::new(ORIGIN)).expect("open");
        let mut f = Feeder {
            store,
            index: 0,
            next_event: 0,
        };
        f.apply_batches(batches / 10, events_per_batch).await; // warm-up
        let start = Instant::now();
        f.apply_batches(batches, events_per_batch).await;
        let elapsed = start.elapsed();
        let events = batches * events_per_batch;
        println!(
            "apply, batch of {events_per_batch:>4}: {:>9.0} events/s  ({:.3} ms per batch)",
            events as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / batches as f64
        );
    }

    let total: u64 = std::env::var("VERITRAIL_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::TempDir::new().expect("dir");
    let store = Store::open(dir.path(), &StoreConfig::new(ORIGIN)).expect("open");
    let mut f = Feeder {
        store,
        index: 0,
        next_event: 0,
    };
    let start = Instant::now();
    f.apply_batches(total / 1000, 1000).await;
    println!(
        "filled {total} entries in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    drop(f);
    let start = Instant::now();
    let store = Store::open(dir.path(), &StoreConfig::new(ORIGIN)).expect("reopen");
    println!(
        "open with {total} entries: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let reader = store.reader.clone();
    let size = reader.tail().size;
    let mut latencies = Vec::with_capacity(10_000);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let seq = x % size;
        let t = Instant::now();
        reader.inclusion_proof(seq, size).expect("proof");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "inclusion proof at {size}: p50 {:?}  p99 {:?}  max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    let mut latencies = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let from = 1 + x % (size - 1);
        let t = Instant::now();
        reader.consistency_proof(from, size).expect("proof");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "consistency proof to {size}: p50 {:?}  p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    drop(store);
    let bytes = dir_bytes(dir.path());
    println!(
        "disk: {} MiB for {total} entries, {:.0} bytes per event (state machine: entries, indexes, Merkle nodes)",
        bytes >> 20,
        bytes as f64 / total as f64
    );
}

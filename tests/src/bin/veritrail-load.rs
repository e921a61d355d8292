//! A first load generator: starts a three-node cluster of release `veritraild`
//! processes on loopback (fsync on, as always), drives closed-loop clients for a
//! fixed time per workload, and prints events per second and request latency.
//!
//! `make bench` runs it. The full benchmark against etcd and NATS is issue #8.
//!
//! Workloads: one client unary; 64 clients unary; 16 clients with batches of
//! 256; 16 SDK producers, each pipelining over one `AppendStream`.
//!
//! Usage: veritrail-load [SECONDS_PER_WORKLOAD]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use veritrail_proto::v1::{AppendBatchRequest, AppendRequest, Event};
use veritrail_tests::{Cluster, ClusterOptions};

/// An event of about 256 canonical bytes.
fn event(client: usize, n: u64) -> Event {
    let mut e = veritrail_tests::event("bench", &format!("c{client}-{n}"));
    e.payload = vec![b'x'; 120];
    e
}

struct Result {
    events: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn workload(cluster: &Cluster, clients: usize, batch: usize, seconds: u64) -> Result {
    let leader = cluster.leader().await;
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut client = cluster.client(leader).await;
        let counter = Arc::clone(&counter);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if batch == 1 {
                    client
                        .append(AppendRequest {
                            event: Some(event(c, n)),
                        })
                        .await
                        .expect("append");
                } else {
                    let events = (0..batch as u64).map(|k| event(c, n + k)).collect();
                    client
                        .append_batch(AppendBatchRequest { events })
                        .await
                        .expect("append batch");
                }
                latencies.push(t.elapsed());
                n += batch as u64;
                counter.fetch_add(batch as u64, Ordering::Relaxed);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    latencies.sort();
    Result {
        events: counter.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies,
    }
}

/// `producers` SDK producers, each one `AppendStream`, each keeping up to
/// `window` events awaiting their receipts. Latency is from `send` to receipt.
async fn producers(cluster: &Cluster, producers: usize, window: usize, seconds: u64) -> Result {
    use std::collections::VecDeque;
    use veritrail_client::{Producer, ProducerConfig};
    let client = cluster.sdk();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let producer = Producer::new(&client, ProducerConfig::default()).expect("producer");
            let mut waiting = VecDeque::new();
            let mut latencies = Vec::new();
            let mut n = 0u64;
            let sdk_event = |n: u64| {
                let e = event(1000 + p, n);
                veritrail_client::Event {
                    source: e.source,
                    event_id: e.event_id,
                    actor: e.actor,
                    action: e.action,
                    resource: e.resource,
                    outcome: e.outcome,
                    payload: e.payload,
                    ..Default::default()
                }
            };
            while Instant::now() < deadline {
                let pending = producer.send(sdk_event(n)).await.expect("send");
                waiting.push_back((Instant::now(), pending));
                n += 1;
                while waiting.len() >= window {
                    let (t, pending) = waiting.pop_front().expect("non-empty");
                    pending.await.expect("receipt");
                    latencies.push(t.elapsed());
                }
            }
            producer.flush().await.expect("flush");
            for (t, pending) in waiting {
                pending.await.expect("receipt");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("producer task"));
    }
    latencies.sort();
    Result {
        events: latencies.len() as u64,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn pct(sorted: &[Duration], p: f64) -> String {
    let d = sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    println!("== veritraild, 3 nodes on loopback, fsync on, {seconds} s per workload");
    println!(
        "{:<28} {:>12} {:>10} {:>10} {:>10}",
        "workload", "events/s", "p50", "p99", "max"
    );
    for (name, clients, batch) in [
        ("1 client, unary", 1, 1),
        ("64 clients, unary", 64, 1),
        ("16 clients, batches of 256", 16, 256),
    ] {
        let r = workload(&cluster, clients, batch, seconds).await;
        report(name, &r);
    }
    let r = producers(&cluster, 16, 2_048, seconds).await;
    report("16 SDK producers (stream)", &r);
}

fn report(name: &str, r: &Result) {
    println!(
        "{name:<28} {:>12.0} {:>10} {:>10} {:>10}",
        r.events as f64 / r.elapsed.as_secs_f64(),
        pct(&r.latencies, 0.5),
        pct(&r.latencies, 0.99),
        pct(&r.latencies, 1.0)
    );
}

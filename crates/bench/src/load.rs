//! The load loop: workers that issue operations against a target, closed loop
//! or open loop, and the figures they produce.
//!
//! **Open loop** (a target rate): worker `w` of `n` plans operation `k` at
//! `start + (k·n + w)/rate_ops`, whether or not earlier ones have finished, and
//! its latency counts from that planned time. A stalled system therefore shows
//! up in the percentiles instead of slowing the load down and hiding
//! (coordinated omission). **Closed loop** (no rate): each worker starts the next
//! operation when one of its slots frees, and latency counts from the start.
//!
//! Each worker keeps at most `window` operations in flight: 1 for unary and
//! batch requests, more for streams and pipelines.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde::Serialize;

/// One operation: resolves to the events it carried.
pub type Op = Pin<Box<dyn Future<Output = anyhow::Result<u64>> + Send>>;

/// An operation in flight, with the time it was planned for.
type Timed = Pin<Box<dyn Future<Output = (Instant, anyhow::Result<u64>)> + Send>>;

/// Makes worker `worker`'s operation number `n`.
pub trait OpSource: Send + Sync {
    fn op(&self, worker: usize, n: u64) -> Op;
}

#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub workers: usize,
    /// Operations in flight per worker.
    pub window: usize,
    /// Events per operation (for the rate and the counts).
    pub events_per_op: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Target events per second over all workers; `None` is closed loop.
    pub rate_events: Option<f64>,
}

/// Measured figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Events acknowledged within the measured window, per second.
    pub events_per_s: f64,
    pub events: u64,
    pub ops: u64,
    pub errors: u64,
    /// The first error seen, to tell what went wrong.
    pub first_error: Option<String>,
    /// Operation latency in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

struct WorkerResult {
    histogram: Histogram<u64>,
    events: u64,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
}

/// How long a run waits for operations still in flight at its end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(source: std::sync::Arc<dyn OpSource>, spec: LoadSpec) -> Figures {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut tasks = Vec::new();
    for worker in 0..spec.workers {
        let source = std::sync::Arc::clone(&source);
        tasks.push(tokio::spawn(async move {
            worker_loop(source, spec, worker, start, measure_from, end).await
        }));
    }
    let mut histogram = new_histogram();
    let (mut events, mut ops, mut errors, mut first_error) = (0, 0, 0, None);
    for task in tasks {
        match task.await {
            Ok(r) => {
                let _ = histogram.add(&r.histogram);
                events += r.events;
                ops += r.ops;
                errors += r.errors;
                first_error = first_error.or(r.first_error);
            }
            Err(e) => {
                errors += 1;
                first_error = first_error.or(Some(format!("worker failed: {e}")));
            }
        }
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Figures {
        events_per_s: events as f64 / spec.duration.as_secs_f64(),
        events,
        ops,
        errors,
        first_error,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: histogram.max() as f64 / 1000.0,
    }
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds, up to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 digits"))
}

async fn worker_loop(
    source: std::sync::Arc<dyn OpSource>,
    spec: LoadSpec,
    worker: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> WorkerResult {
    let mut result = WorkerResult {
        histogram: new_histogram(),
        events: 0,
        ops: 0,
        errors: 0,
        first_error: None,
    };
    // Open loop: this worker's share of the rate, its first slot staggered.
    let interval = spec.rate_events.map(|rate| {
        let ops_per_s = rate / spec.events_per_op as f64 / spec.workers as f64;
        Duration::from_secs_f64(1.0 / ops_per_s.max(1e-9))
    });
    let mut next_planned = match interval {
        Some(i) => start + i.mul_f64(worker as f64 / spec.workers as f64),
        None => start,
    };
    tokio::time::sleep_until(start.into()).await;
    let mut in_flight: FuturesUnordered<Timed> = FuturesUnordered::new();
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        let launching = now < end && in_flight.len() < spec.window;
        if launching {
            let planned = match interval {
                Some(i) => {
                    if next_planned > now {
                        // Wait for the slot, or for a completion, whichever first.
                        tokio::select! {
                            _ = tokio::time::sleep_until(next_planned.into()) => {}
                            Some((planned, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                                record(&mut result, planned, outcome, measure_from, end);
                            }
                        }
                        continue;
                    }
                    let planned = next_planned;
                    next_planned += i;
                    planned
                }
                None => now,
            };
            let op = source.op(worker, n);
            n += 1;
            in_flight.push(Box::pin(async move { (planned, op.await) }));
            continue;
        }
        if in_flight.is_empty() {
            break;
        }
        let next = if now >= end {
            match tokio::time::timeout_at((end + DRAIN_TIMEOUT).into(), in_flight.next()).await {
                Ok(next) => next,
                Err(_) => {
                    result.errors += in_flight.len() as u64;
                    result.first_error.get_or_insert_with(|| {
                        "not answered within the 15 s drain after the run (backlog: offered load above capacity)".into()
                    });
                    break;
                }
            }
        } else {
            in_flight.next().await
        };
        if let Some((planned, outcome)) = next {
            record(&mut result, planned, outcome, measure_from, end);
        }
    }
    result
}

fn record(
    result: &mut WorkerResult,
    planned: Instant,
    outcome: anyhow::Result<u64>,
    measure_from: Instant,
    end: Instant,
) {
    let done = Instant::now();
    match outcome {
        Ok(events) => {
            // Throughput: completions inside the window. Latency: operations
            // planned inside it (their tail may complete after it).
            if done >= measure_from && done <= end {
                result.events += events;
                result.ops += 1;
            }
            if planned >= measure_from && planned < end {
                let micros = done.saturating_duration_since(planned).as_micros() as u64;
                let _ = result.histogram.record(micros.max(1));
            }
        }
        Err(e) => {
            if planned >= measure_from {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
}

//! What the load runs against: Veritrail through its SDK, etcd through its v3
//! gRPC client, NATS JetStream through async-nats. One event is one Veritrail
//! append, one etcd Put, one JetStream publish acknowledged by the stream.

use std::sync::Arc;

use anyhow::Context as _;
use veritrail_client::{Client, Event, Producer, ProducerConfig};

use crate::load::{Op, OpSource};

/// How operations carry events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "events")]
pub enum Mode {
    /// One event per request, one request in flight per worker.
    Unary,
    /// N events per request (Veritrail AppendBatch, an etcd Txn of Puts, N
    /// JetStream publishes awaited together).
    Batch(u64),
    /// A pipeline: many events in flight per worker (Veritrail's SDK Producer
    /// over AppendStream; concurrent Puts or publishes for the others).
    Stream,
}

impl Mode {
    pub fn events_per_op(self) -> u64 {
        match self {
            Mode::Batch(n) => n,
            Mode::Unary | Mode::Stream => 1,
        }
    }

    pub fn label(self) -> String {
        match self {
            Mode::Unary => "unary".into(),
            Mode::Batch(n) => format!("batch {n}"),
            Mode::Stream => "stream".into(),
        }
    }
}

/// Bytes of an event's fields other than the payload, so that an event of
/// `event_bytes` stores a canonical entry of about that size (docs/FORMAT.md:
/// the fixed fields, the chain link and the short strings below).
const VERITRAIL_OVERHEAD_BYTES: usize = 136;

pub struct VeritrailOps {
    client: Client,
    mode: Mode,
    run: String,
    payload: Vec<u8>,
    producers: Vec<Arc<Producer>>,
}

impl VeritrailOps {
    pub fn new(
        client: Client,
        mode: Mode,
        workers: usize,
        event_bytes: usize,
    ) -> anyhow::Result<Self> {
        let producers = if mode == Mode::Stream {
            (0..workers)
                .map(|_| Producer::new(&client, ProducerConfig::default()).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
                .context("starting the SDK producers")?
        } else {
            Vec::new()
        };
        Ok(VeritrailOps {
            client,
            mode,
            run: run_id(),
            payload: vec![b'x'; event_bytes.saturating_sub(VERITRAIL_OVERHEAD_BYTES)],
            producers,
        })
    }

    fn event(&self, worker: usize, n: u64) -> Event {
        Event {
            source: "bench".into(),
            event_id: format!("{}-{worker}-{n}", self.run),
            actor: "svc-loadgen".into(),
            action: "bench.append".into(),
            resource: format!("bench/{worker}"),
            outcome: "success".into(),
            payload: self.payload.clone(),
            ..Event::default()
        }
    }
}

impl OpSource for VeritrailOps {
    fn op(&self, worker: usize, n: u64) -> Op {
        match self.mode {
            Mode::Unary => {
                let client = self.client.clone();
                let event = self.event(worker, n);
                Box::pin(async move {
                    client.append(event).await?;
                    Ok(1)
                })
            }
            Mode::Batch(size) => {
                let client = self.client.clone();
                let events = (0..size)
                    .map(|k| self.event(worker, n * size + k))
                    .collect();
                Box::pin(async move {
                    client.append_batch(events).await?;
                    Ok(size)
                })
            }
            Mode::Stream => {
                let producer = Arc::clone(&self.producers[worker % self.producers.len()]);
                let event = self.event(worker, n);
                Box::pin(async move {
                    producer.send(event).await?.await?;
                    Ok(1)
                })
            }
        }
    }
}

pub struct EtcdOps {
    client: etcd_client::Client,
    mode: Mode,
    run: String,
    value: Vec<u8>,
}

impl EtcdOps {
    pub async fn connect(
        endpoints: &[String],
        mode: Mode,
        event_bytes: usize,
    ) -> anyhow::Result<Self> {
        let client = etcd_client::Client::connect(endpoints, None)
            .await
            .context("connecting to etcd")?;
        Ok(EtcdOps {
            client,
            mode,
            run: run_id(),
            value: vec![b'x'; event_bytes],
        })
    }

    fn key(&self, worker: usize, n: u64) -> String {
        format!("bench/{}/{worker}/{n}", self.run)
    }
}

impl OpSource for EtcdOps {
    fn op(&self, worker: usize, n: u64) -> Op {
        let mut client = self.client.clone();
        match self.mode {
            Mode::Unary | Mode::Stream => {
                let key = self.key(worker, n);
                let value = self.value.clone();
                Box::pin(async move {
                    client.put(key, value, None).await?;
                    Ok(1)
                })
            }
            Mode::Batch(size) => {
                let puts: Vec<_> = (0..size)
                    .map(|k| {
                        etcd_client::TxnOp::put(
                            self.key(worker, n * size + k),
                            self.value.clone(),
                            None,
                        )
                    })
                    .collect();
                Box::pin(async move {
                    client.txn(etcd_client::Txn::new().and_then(puts)).await?;
                    Ok(size)
                })
            }
        }
    }
}

pub struct NatsOps {
    js: async_nats::jetstream::Context,
    mode: Mode,
    payload: bytes::Bytes,
}

impl NatsOps {
    pub async fn connect(
        url: &str,
        stream: &str,
        mode: Mode,
        event_bytes: usize,
    ) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .context("connecting to NATS")?;
        let js = async_nats::jetstream::new(client);
        js.get_stream(stream)
            .await
            .context("the benchmark stream")?;
        Ok(NatsOps {
            js,
            mode,
            payload: bytes::Bytes::from(vec![b'x'; event_bytes]),
        })
    }
}

impl OpSource for NatsOps {
    fn op(&self, worker: usize, _n: u64) -> Op {
        let js = self.js.clone();
        let subject = format!("bench.{worker}");
        let payload = self.payload.clone();
        match self.mode {
            Mode::Unary | Mode::Stream => Box::pin(async move {
                js.publish(subject, payload).await?.await?;
                Ok(1)
            }),
            Mode::Batch(size) => Box::pin(async move {
                let mut acks = Vec::with_capacity(size as usize);
                for _ in 0..size {
                    acks.push(js.publish(subject.clone(), payload.clone()).await?);
                }
                for ack in acks {
                    ack.await?;
                }
                Ok(size)
            }),
        }
    }
}

/// A prefix that makes this run's event ids and keys unique.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("r{nanos:x}")
}

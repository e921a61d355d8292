//! Core costs: entry encoding and hashing, Merkle proofs at one million leaves,
//! checkpoint signing and verification. `make bench` runs this; the figures go to
//! docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use veritrail_core::checkpoint::CheckpointVerifier;
use veritrail_core::merkle::{
    Frontier, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, root_at,
    verify_consistency, verify_inclusion,
};
use veritrail_core::note::NoteSigner;
use veritrail_core::{Checkpoint, Entry, Event, EventSignature, Hash, entry_hash};

const LEAVES: u64 = 1 << 20;

/// An entry whose canonical encoding is 256 bytes, the size the benchmarks of the
/// whole system use.
fn entry_256() -> Entry {
    let mut entry = Entry {
        seq: 123_456,
        timestamp_ns: 1_735_689_600_000_000_000,
        prev_hash: Hash([7; 32]),
        principal: "spiffe://example.org/sa/billing".into(),
        event: Event {
            source: "billing".into(),
            event_id: "0193d4c2-7e4f-7a8b-9c1d-2e3f4a5b6c7d".into(),
            actor: "alice@example.com".into(),
            action: "invoice.refund".into(),
            resource: "tenant/7/invoice/2024-0042".into(),
            outcome: "success".into(),
            ..Event::default()
        },
        signature: None,
    };
    let short = 256 - entry.encode().len();
    entry.event.payload = vec![b'x'; short];
    assert_eq!(entry.encode().len(), 256);
    entry
}

fn entries(c: &mut Criterion) {
    let entry = entry_256();
    let bytes = entry.encode();
    let mut group = c.benchmark_group("entry_256B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter(|| {
            buf.clear();
            black_box(&entry).encode_into(&mut buf);
            black_box(buf.len())
        })
    });
    group.bench_function("encode_and_hash", |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter(|| {
            buf.clear();
            black_box(&entry).encode_into(&mut buf);
            black_box(entry_hash(&buf))
        })
    });
    group.bench_function("decode", |b| b.iter(|| Entry::decode(black_box(&bytes))));
    // What a signing service pays per event (the SDK), and what each node
    // pays again at the door and at apply (docs/SECURITY.md, "Client-signed
    // events").
    let signer = NoteSigner::from_seed("billing", &[9; 32]).expect("signer");
    let origin = "bench.example/log";
    group.bench_function("event_sign", |b| {
        b.iter(|| EventSignature::sign(&signer, origin, black_box(&entry.event)))
    });
    let signature = EventSignature::sign(&signer, origin, &entry.event);
    group.bench_function("event_verify", |b| {
        b.iter(|| black_box(&signature).verify(origin, black_box(&entry.event)))
    });
    group.finish();
}

fn merkle(c: &mut Criterion) {
    let tree = MemoryTree::from_leaves((0..LEAVES).map(|i| leaf_hash(&i.to_be_bytes())));
    let root = tree.root();
    let mut group = c.benchmark_group("merkle_1M");
    group.bench_function("frontier_push", |b| {
        let mut frontier = Frontier::new();
        let leaf = leaf_hash(b"leaf");
        b.iter(|| frontier.push(black_box(leaf), |_, _| {}))
    });
    let mut i = 0u64;
    group.bench_function("root_at", |b| {
        b.iter(|| {
            i = (i + 7919) % LEAVES;
            root_at(&tree, black_box(i + 1))
        })
    });
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| {
            i = (i + 7919) % LEAVES;
            inclusion_proof(&tree, black_box(i), LEAVES)
        })
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| {
            i = (i + 7919) % LEAVES;
            consistency_proof(&tree, black_box(i + 1), LEAVES)
        })
    });
    let index = 654_321;
    let proof = inclusion_proof(&tree, index, LEAVES).expect("proof");
    let leaf = leaf_hash(&index.to_be_bytes());
    group.bench_function("verify_inclusion", |b| {
        b.iter(|| verify_inclusion(index, LEAVES, black_box(&leaf), &proof, &root))
    });
    let from = 777_777;
    let from_root = root_at(&tree, from).expect("root");
    let proof = consistency_proof(&tree, from, LEAVES).expect("proof");
    group.bench_function("verify_consistency", |b| {
        b.iter(|| verify_consistency(from, LEAVES, black_box(&from_root), &root, &proof))
    });
    group.finish();
}

fn checkpoints(c: &mut Criterion) {
    let origin = "bench.example/log";
    let signers: Vec<NoteSigner> = (1u8..=3)
        .map(|i| NoteSigner::from_seed(&format!("{origin}/node-{i}"), &[i; 32]).expect("signer"))
        .collect();
    let checkpoint = Checkpoint {
        size: LEAVES,
        ..Checkpoint::empty(origin)
    };
    let mut group = c.benchmark_group("checkpoint");
    group.bench_function("sign_one", |b| b.iter(|| checkpoint.sign(&signers[0])));
    let mut note = checkpoint.to_note().expect("note");
    for s in &signers {
        note.sign(s).expect("sign");
    }
    let text = note.to_string();
    let trust =
        CheckpointVerifier::majority(origin, signers.iter().map(|s| s.public().clone()).collect())
            .expect("trust");
    group.bench_function("verify_3_signatures", |b| {
        b.iter_batched(|| text.clone(), |t| trust.verify(&t), BatchSize::SmallInput)
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = entries, merkle, checkpoints }
criterion_main!(benches);

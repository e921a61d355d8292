//! On-disk layout changes: a data directory written by an earlier version is
//! converted when the node opens it, and checked only after.

mod common;

use common::Harness;
use rocksdb::{DB, Options};

/// Rewrites a closed store's Merkle nodes into the layout of earlier versions:
/// a `merkle` column family keyed by level then index, and no `merkle_nodes`.
fn downgrade_merkle_layout(dir: &std::path::Path) -> usize {
    let path = dir.join("db");
    let mut db =
        DB::open_cf(&Options::default(), &path, common::COLUMN_FAMILIES).expect("raw open");
    db.create_cf("merkle", &Options::default())
        .expect("create old family");
    let mut nodes = 0;
    {
        let new = db.cf_handle("merkle_nodes").expect("cf");
        let old = db.cf_handle("merkle").expect("cf");
        for item in db.iterator_cf(new, rocksdb::IteratorMode::Start) {
            let (key, value) = item.expect("read");
            let last = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
            let level = key[8];
            let mut old_key = vec![level];
            old_key.extend_from_slice(&(last >> level).to_be_bytes());
            db.put_cf(old, old_key, value).expect("put");
            nodes += 1;
        }
    }
    db.drop_cf("merkle_nodes").expect("drop new family");
    nodes
}

#[tokio::test]
async fn merkle_nodes_of_an_earlier_layout_are_converted_on_open() {
    let mut h = Harness::new();
    h.install_membership_with_keys().await;
    h.fill("svc", 300, 7).await;
    let reader = h.store().reader.clone();
    let tail = reader.tail();
    let proofs: Vec<_> = [0u64, 1, 150, 255, 256, 299]
        .iter()
        .map(|&seq| reader.inclusion_proof_with_root(seq, 300).expect("proof"))
        .collect();
    let consistency = reader.consistency_proof(77, 300).expect("proof");
    drop(reader);
    h.close();

    let nodes = downgrade_merkle_layout(h.dir.path());
    let perfect: usize = (0..9).map(|level| 300 >> level).sum();
    assert_eq!(
        nodes, perfect,
        "every perfect node of a 300-leaf tree is stored"
    );
    // fsck reads only: it asks for one start of the node first.
    let error = veritrail_store::fsck(h.dir.path()).expect_err("old layout");
    assert!(error.to_string().contains("earlier version"), "{error}");

    h.reopen();
    let reader = h.store().reader.clone();
    assert_eq!(reader.tail(), tail);
    for (&seq, before) in [0u64, 1, 150, 255, 256, 299].iter().zip(&proofs) {
        assert_eq!(
            &reader.inclusion_proof_with_root(seq, 300).expect("proof"),
            before
        );
    }
    assert_eq!(
        reader.consistency_proof(77, 300).expect("proof"),
        consistency
    );
    // The log goes on on the new layout.
    h.fill("after", 20, 5).await;
    h.close();
    let families = DB::list_cf(&Options::default(), h.dir.path().join("db")).expect("list");
    assert!(
        !families.iter().any(|f| f == "merkle"),
        "the old family is gone: {families:?}"
    );
    let report = veritrail_store::fsck(h.dir.path()).expect("fsck");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 320);
}

//! Golden vectors of signed events: `testdata/vectors-signed.json` pins the
//! event statement (docs/FORMAT.md 1.1), entry format version 2 (2.4) and the
//! signer list (9), beside `vectors.json`, which stays as it was.
//!
//! As in `golden_vectors.rs`: the file is generated below from fixed inputs
//! and committed; this test regenerates it and demands equality, and creates
//! it only where it does not exist, with `VERITRAIL_BLESS=1`. A second test
//! reads the committed file through the public API only.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};
use veritrail_core::merkle::MemoryTree;
use veritrail_core::note::NoteSigner;
use veritrail_core::{
    ChainVerifier, Entry, Event, EventSignature, SignerEntry, SignerList, entry_hash,
    event_statement, genesis_hash,
};

const ORIGIN: &str = "vectors.veritrail.example/log";
const PRINCIPAL: &str = "spiffe://example.org/ns/prod/sa/";

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors-signed.json")
}

/// The services' keys: `billing` and `iam` are in the signer list, `stranger`
/// is not.
fn keys() -> Vec<(&'static str, [u8; 32])> {
    vec![
        ("billing", [0x11; 32]),
        ("iam", [0x12; 32]),
        ("stranger", [0x13; 32]),
    ]
}

fn signer(name: &str) -> NoteSigner {
    let (_, seed) = keys().into_iter().find(|(n, _)| *n == name).expect("a key");
    NoteSigner::from_seed(name, &seed).expect("key")
}

fn event(i: u64, source: &str) -> Event {
    let mut e = Event {
        source: source.into(),
        event_id: format!("sig-{i:04}"),
        actor: format!("user-{i}"),
        action: ["invoice.create", "role.grant", "object.delete"][(i % 3) as usize].into(),
        resource: format!("tenant/7/object/{}", 2000 + i),
        outcome: if i == 4 { "denied" } else { "success" }.into(),
        ..Event::default()
    };
    if i.is_multiple_of(2) {
        e.event_time_ns = Some(1_767_225_600_000_000_000 + i);
        e.attributes.insert("ip".into(), format!("192.0.2.{i}"));
    }
    if i == 2 {
        e.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        e.payload = b"{\"role\":\"admin\"}".to_vec();
    }
    e
}

/// Who appends entry `i`, with which source, and which key signs it (if any).
const PLAN: [(&str, Option<&str>); 7] = [
    ("billing", Some("billing")),  // listed, signed by its key
    ("storage", None),             // not listed, unsigned
    ("iam", Some("iam")),          // listed (required = false), signed
    ("iam", None),                 // listed (required = false), unsigned
    ("billing", None),             // listed, unsigned: unsatisfied
    ("storage", Some("stranger")), // not listed, signed: unsatisfied
    ("billing", Some("iam")),      // listed, signed by another's key: unsatisfied
];

fn entries() -> Vec<Entry> {
    let mut prev = genesis_hash(ORIGIN);
    PLAN.iter()
        .enumerate()
        .map(|(i, (service, key))| {
            let i = i as u64;
            let event = event(i, service);
            let signature = key.map(|k| EventSignature::sign(&signer(k), ORIGIN, &event));
            let entry = Entry {
                seq: i,
                timestamp_ns: 1_767_225_600_000_000_000 + i / 2 * 1_000_000,
                prev_hash: prev,
                principal: format!("{PRINCIPAL}{service}"),
                event,
                signature,
            };
            prev = entry.hash();
            entry
        })
        .collect()
}

const SIGNER_LIST: &str = "[[signer]]
principal = \"spiffe://example.org/ns/prod/sa/billing\"
keys = [\"BILLING\"]

[[signer]]
principal = \"spiffe://example.org/ns/prod/sa/iam\"
keys = [\"IAM\"]
required = false
";

fn signer_list_toml() -> String {
    SIGNER_LIST
        .replace("BILLING", &signer("billing").public().to_string())
        .replace("IAM", &signer("iam").public().to_string())
}

fn signer_list() -> SignerList {
    SignerList::new(vec![
        SignerEntry {
            principal: format!("{PRINCIPAL}billing"),
            keys: vec![signer("billing").public().to_string()],
            required: true,
        },
        SignerEntry {
            principal: format!("{PRINCIPAL}iam"),
            keys: vec![signer("iam").public().to_string()],
            required: false,
        },
    ])
    .expect("signer list")
}

/// Version 2 entries that decode but whose signature does not verify.
fn bad_signatures(first: &Entry) -> Vec<Value> {
    let reencode = |f: &dyn Fn(&mut Entry)| {
        let mut e = first.clone();
        f(&mut e);
        hex::encode(e.encode())
    };
    // S + L, which plain arithmetic accepts and RFC 8032 refuses: S must be
    // below the group order L.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let non_canonical_s = |e: &mut Entry| {
        let sig = e.signature.as_mut().expect("signed");
        let mut carry = 0u16;
        for (i, l) in L.iter().enumerate() {
            let sum = u16::from(sig.signature[32 + i]) + u16::from(*l) + carry;
            sig.signature[32 + i] = sum as u8;
            carry = sum >> 8;
        }
    };
    vec![
        json!({"canonical_hex": reencode(&|e| e.event.outcome = "denied".into()),
               "reason": "the event was changed after it was signed (outcome)"}),
        json!({"canonical_hex": reencode(&|e| {
                   e.signature = Some(EventSignature::sign(&signer("billing"), "other.example/log", &e.event));
               }),
               "reason": "signed for another origin, other.example/log"}),
        json!({"canonical_hex": reencode(&|e| {
                   if let Some(s) = e.signature.as_mut() { s.signature[5] ^= 0x01; }
               }),
               "reason": "a signature byte flipped"}),
        json!({"canonical_hex": reencode(&|e| {
                   if let Some(s) = e.signature.as_mut() { s.public_key = signer("iam").public().public_key(); }
               }),
               "reason": "the signature of one key, with another key"}),
        json!({"canonical_hex": reencode(&non_canonical_s),
               "reason": "S is not below the group order (S + L)"}),
    ]
}

fn invalid_entries(first: &Entry, unsigned: &Entry) -> Vec<Value> {
    let signed = first.encode();
    let alg_at = signed.len() - 97;
    let mut bad_alg = signed.clone();
    bad_alg[alg_at] = 0x02;
    let mut trailing = signed.clone();
    trailing.push(0);
    let mut v1_with_block = signed.clone();
    v1_with_block[0] = 0x01;
    let mut v2_without = unsigned.encode();
    v2_without[0] = 0x02;
    let mut version_3 = signed.clone();
    version_3[0] = 0x03;
    vec![
        json!({"hex": hex::encode(&bad_alg), "reason": "signature algorithm 0x02"}),
        json!({"hex": hex::encode(&signed[..signed.len() - 1]), "reason": "signature one byte short"}),
        json!({"hex": hex::encode(&signed[..alg_at]), "reason": "version 2 without its signature block"}),
        json!({"hex": hex::encode(&v2_without), "reason": "a version 1 entry labelled version 2"}),
        json!({"hex": hex::encode(&trailing), "reason": "a byte after the signature"}),
        json!({"hex": hex::encode(&v1_with_block), "reason": "version 1 followed by a signature block"}),
        json!({"hex": hex::encode(&version_3), "reason": "version 3"}),
    ]
}

fn generate() -> Value {
    let entries = entries();
    let tree = MemoryTree::from_leaves(entries.iter().map(Entry::hash));
    let list = signer_list();
    let key_vectors: Vec<Value> = keys()
        .iter()
        .map(|(name, seed)| {
            let s = signer(name);
            json!({
                "name": name,
                "seed_hex": hex::encode(seed),
                "public_key_hex": hex::encode(s.public().public_key()),
                "verifier_key": s.public().to_string(),
                "signer_key": s.to_signer_string(),
            })
        })
        .collect();
    let entry_vectors: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let e = &entry.event;
            let bytes = entry.encode();
            let signature = entry.signature.map(|s| {
                let (name, _) = keys()
                    .into_iter()
                    .find(|(n, _)| signer(n).public().public_key() == s.public_key)
                    .expect("a known key");
                json!({
                    "key_name": name,
                    "public_key_hex": hex::encode(s.public_key),
                    "signature_hex": hex::encode(s.signature),
                })
            });
            json!({
                "seq": entry.seq,
                "version": entry.version(),
                "timestamp_ns": entry.timestamp_ns,
                "prev_hash": entry.prev_hash.to_hex(),
                "principal": entry.principal,
                "event": {
                    "source": e.source, "event_id": e.event_id, "actor": e.actor,
                    "action": e.action, "resource": e.resource, "outcome": e.outcome,
                    "event_time_ns": e.event_time_ns, "trace_id": e.trace_id,
                    "attributes": e.attributes.iter().collect::<BTreeMap<_, _>>(),
                    "payload_hex": hex::encode(&e.payload),
                },
                "signature": signature,
                "statement_hex": hex::encode(event_statement(ORIGIN, e)),
                "canonical_hex": hex::encode(&bytes),
                "entry_hash": entry_hash(&bytes).to_hex(),
            })
        })
        .collect();
    let mut satisfied = Vec::new();
    let mut unsatisfied = Vec::new();
    for entry in &entries {
        match list.check_entry(entry) {
            Ok(()) => satisfied.push(json!(entry.seq)),
            Err(reason) => unsatisfied.push(json!({"seq": entry.seq, "reason": reason})),
        }
    }
    json!({
        "entry_format_versions": [1, 2],
        "origin": ORIGIN,
        "genesis_hash": genesis_hash(ORIGIN).to_hex(),
        "signing_keys": key_vectors,
        "entries": entry_vectors,
        "root": tree.root().to_hex(),
        "signer_list": {
            "toml": signer_list_toml(),
            "satisfied": satisfied,
            "unsatisfied": unsatisfied,
        },
        "bad_signatures": bad_signatures(&entries[0]),
        "invalid_entries": invalid_entries(&entries[0], &entries[1]),
    })
}

#[test]
fn committed_signed_vectors_match_the_generator() {
    common::assert_committed(&path(), &generate());
}

/// Reads the committed file through the public API only.
#[test]
fn committed_signed_vectors_verify() {
    let text = std::fs::read_to_string(path()).expect("vectors-signed.json");
    let v: Value = serde_json::from_str(&text).expect("json");
    let origin = v["origin"].as_str().expect("origin");
    let bytes_of = |x: &Value| hex::decode(x.as_str().expect("hex")).expect("hex");
    let mut chain = ChainVerifier::from_genesis(origin);
    let mut decoded = Vec::new();
    for e in v["entries"].as_array().expect("entries") {
        let bytes = bytes_of(&e["canonical_hex"]);
        assert_eq!(u64::from(bytes[0]), e["version"].as_u64().expect("version"));
        let entry = chain.push(&bytes).expect("the chain, signatures included");
        assert_eq!(
            entry_hash(&bytes).to_hex(),
            e["entry_hash"].as_str().expect("h")
        );
        assert_eq!(
            event_statement(origin, &entry.event),
            bytes_of(&e["statement_hex"])
        );
        assert_eq!(entry.signature.is_some(), !e["signature"].is_null());
        decoded.push(entry);
    }
    assert_eq!(
        chain.root().map(|r| r.to_hex()),
        v["root"].as_str().map(str::to_owned)
    );
    let toml_list: SignerList = {
        // The TOML form as the CLI reads it.
        #[derive(serde::Deserialize)]
        struct File {
            signer: Vec<SignerEntry>,
        }
        let file: File = toml::from_str(v["signer_list"]["toml"].as_str().expect("toml"))
            .expect("the signer list is TOML");
        SignerList::new(file.signer).expect("list")
    };
    let satisfied: Vec<u64> = v["signer_list"]["satisfied"]
        .as_array()
        .expect("satisfied")
        .iter()
        .map(|s| s.as_u64().expect("seq"))
        .collect();
    for entry in &decoded {
        assert_eq!(
            toml_list.check_entry(entry).is_ok(),
            satisfied.contains(&entry.seq),
            "seq {}",
            entry.seq
        );
    }
    for bad in v["bad_signatures"].as_array().expect("bad") {
        let entry = Entry::decode(&bytes_of(&bad["canonical_hex"])).expect("decodes");
        assert!(entry.verify_signature(origin).is_err(), "{}", bad["reason"]);
    }
    for bad in v["invalid_entries"].as_array().expect("invalid") {
        assert!(
            Entry::decode(&bytes_of(&bad["hex"])).is_err(),
            "{}",
            bad["reason"]
        );
    }
}

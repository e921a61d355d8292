//! Key sets: which keys sign a log's checkpoints, stated in a signed note so
//! that an auditor can learn a cluster's new voters from the voters it
//! already trusts (docs/FORMAT.md section 6.1).
//!
//! When a node is replaced, checkpoints are signed by a key the auditor has
//! never seen. The auditor must not take that key from the node that offers
//! it: any node could offer any key. A key-set note names every voter's key at
//! one membership of the cluster (its *epoch*, the Raft log index where that
//! membership was recorded), and each voter signs only the key set it holds
//! itself. An auditor adopts a key set when a quorum of the keys it already
//! trusts signed it, exactly as it accepts a checkpoint.
//!
//! The body cannot be read as a checkpoint, nor a checkpoint as a key set: the
//! second line of a checkpoint is a decimal size, that of a key set starts
//! with a keyword.

use std::fmt;

use crate::Error;
use crate::checkpoint::{CheckpointVerifier, parse_decimal, validate_origin};
use crate::note::{NoteKey, NoteSigner, SignedNote};

/// The keyword that starts a key set's second line.
pub const KEY_SET_KEYWORD: &str = "veritrail-key-set";
/// The most keys one key set names (a signed note holds at most 100
/// signatures, and every key signs it).
pub const KEY_SET_MAX_KEYS: usize = 100;

/// The keys of a cluster's voters at one membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    /// The log's name.
    pub origin: String,
    /// The Raft log index of the membership these keys are the voters of:
    /// later memberships have larger epochs.
    pub epoch: u64,
    /// The voters' verifier keys, sorted by their string form.
    keys: Vec<NoteKey>,
}

/// A key set whose signatures verified, with who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeySet {
    pub key_set: KeySet,
    pub note: SignedNote,
    /// Names of the trusted keys whose signatures verified.
    pub signers: Vec<String>,
}

impl KeySet {
    /// The key set of `keys` at `epoch`. Refuses an empty set, one of more
    /// than [`KEY_SET_MAX_KEYS`] keys, and a key named twice.
    pub fn new(origin: &str, epoch: u64, mut keys: Vec<NoteKey>) -> Result<Self, Error> {
        validate_origin(origin)?;
        keys.sort_by_key(|k| k.to_string());
        if keys.is_empty() || keys.len() > KEY_SET_MAX_KEYS {
            return Err(Error::MalformedKeySet(format!(
                "a key set names 1 to {KEY_SET_MAX_KEYS} keys, not {}",
                keys.len()
            )));
        }
        if let Some(pair) = keys.windows(2).find(|w| w[0].name() == w[1].name()) {
            return Err(Error::MalformedKeySet(format!(
                "key name {:?} appears twice",
                pair[0].name()
            )));
        }
        Ok(KeySet {
            origin: origin.to_owned(),
            epoch,
            keys,
        })
    }

    /// The voters' keys, sorted by their string form.
    pub fn keys(&self) -> &[NoteKey] {
        &self.keys
    }

    /// A majority of the keys: what must sign this set's checkpoints.
    pub fn majority(&self) -> usize {
        self.keys.len() / 2 + 1
    }

    /// Whether this set holds the same keys as `keys`, in any order.
    pub fn same_keys(&self, keys: &[NoteKey]) -> bool {
        let mut theirs: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        theirs.sort();
        theirs.dedup();
        theirs == self.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()
    }

    /// The note text: the origin, the keyword and epoch, then one verifier key
    /// per line in ascending byte order, each line ending in a newline.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n{KEY_SET_KEYWORD} {}\n", self.origin, self.epoch);
        for key in &self.keys {
            body.push_str(&key.to_string());
            body.push('\n');
        }
        body
    }

    /// Parses a body. Strict: each key set has exactly one body, so keys must
    /// be canonical verifier-key strings in strictly ascending order.
    pub fn parse(body: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::MalformedKeySet(why);
        let Some(lines) = body.strip_suffix('\n') else {
            return Err(bad("body must end in a newline".into()));
        };
        let lines: Vec<&str> = lines.split('\n').collect();
        let [origin, header, keys @ ..] = lines.as_slice() else {
            return Err(bad("expected an origin line and a key-set line".into()));
        };
        validate_origin(origin)?;
        let epoch = header
            .strip_prefix(KEY_SET_KEYWORD)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or_else(|| bad(format!("second line must be `{KEY_SET_KEYWORD} <epoch>`")))?;
        let epoch = parse_decimal(epoch)
            .ok_or_else(|| bad(format!("epoch {epoch:?} is not a canonical decimal")))?;
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("keys must be in strictly ascending order".into()));
        }
        let mut parsed = Vec::with_capacity(keys.len());
        for line in keys {
            let key = NoteKey::parse(line)?;
            if key.to_string() != *line {
                return Err(bad(format!("key {line:?} is not in its canonical form")));
            }
            parsed.push(key);
        }
        KeySet::new(origin, epoch, parsed)
    }

    /// An unsigned note over this key set's body.
    pub fn to_note(&self) -> Result<SignedNote, Error> {
        SignedNote::new(&self.body())
    }

    /// A note over this key set's body signed by `signer`.
    pub fn sign(&self, signer: &NoteSigner) -> Result<SignedNote, Error> {
        let mut note = self.to_note()?;
        note.sign(signer)?;
        Ok(note)
    }

    /// Parses and verifies a signed key set against what `trust` trusts: a
    /// quorum of its keys signed, and the origin is its log's.
    pub fn verify(signed_note: &str, trust: &CheckpointVerifier) -> Result<VerifiedKeySet, Error> {
        let note = SignedNote::parse(signed_note)?;
        let signers = note.verify(trust.keys(), trust.quorum())?;
        let key_set = KeySet::parse(note.text())?;
        if key_set.origin != trust.origin() {
            return Err(Error::WrongOrigin {
                expected: trust.origin().to_owned(),
                found: key_set.origin,
            });
        }
        Ok(VerifiedKeySet {
            key_set,
            note,
            signers,
        })
    }
}

impl fmt::Display for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(NoteKey::name).collect();
        write!(
            f,
            "{} key set {} [{}]",
            self.origin,
            self.epoch,
            names.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "audit.example.com/prod";

    fn signers() -> Vec<NoteSigner> {
        (1u8..=5)
            .map(|i| {
                NoteSigner::from_seed(&format!("{ORIGIN}/node-{i}"), &[i; 32]).expect("signer")
            })
            .collect()
    }

    fn keys(signers: &[NoteSigner], which: &[usize]) -> Vec<NoteKey> {
        which.iter().map(|i| signers[*i].public().clone()).collect()
    }

    #[test]
    fn body_round_trips_and_is_canonical() {
        let s = signers();
        let set = KeySet::new(ORIGIN, 42, keys(&s, &[2, 0, 1])).expect("set");
        let body = set.body();
        assert!(body.starts_with(&format!("{ORIGIN}\nveritrail-key-set 42\n")));
        assert_eq!(body.lines().count(), 5);
        assert_eq!(KeySet::parse(&body), Ok(set.clone()));
        assert!(set.same_keys(&keys(&s, &[1, 2, 0])));
        assert!(!set.same_keys(&keys(&s, &[1, 2, 3])));
        assert_eq!(set.majority(), 2);
        let lines: Vec<&str> = body.lines().collect();
        let swapped = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            lines[0], lines[1], lines[3], lines[2], lines[4]
        );
        let bad = [
            body.trim_end().to_owned(),
            body.replacen(" 42\n", " 042\n", 1),
            body.replacen("veritrail-key-set", "veritrail-head", 1),
            format!("{}\n{}\n", lines[0], lines[1]),
            swapped,
            format!("{body}{}\n", lines[4]),
            body.replacen(lines[2], &lines[2].to_uppercase(), 1),
        ];
        for b in bad {
            assert!(KeySet::parse(&b).is_err(), "accepted {b:?}");
        }
    }

    #[test]
    fn a_checkpoint_is_not_a_key_set_nor_the_reverse() {
        let s = signers();
        let set = KeySet::new(ORIGIN, 7, keys(&s, &[0])).expect("set");
        assert!(crate::Checkpoint::parse(&set.body()).is_err());
        let checkpoint = crate::Checkpoint::empty(ORIGIN);
        assert!(KeySet::parse(&checkpoint.body()).is_err());
    }

    #[test]
    fn only_a_quorum_of_trusted_keys_makes_a_key_set_verify() {
        let s = signers();
        let trust = CheckpointVerifier::majority(ORIGIN, keys(&s, &[0, 1, 2])).expect("trust");
        // Node 3 (index 1) is replaced by node 4 (index 3).
        let next = KeySet::new(ORIGIN, 9, keys(&s, &[0, 2, 3])).expect("set");
        let mut note = next.to_note().expect("note");
        for i in [0, 2, 3] {
            note.sign(&s[i]).expect("sign");
        }
        let verified = KeySet::verify(&note.to_string(), &trust).expect("verifies");
        assert_eq!(verified.key_set, next);
        assert_eq!(verified.signers.len(), 2);
        // Signed by one trusted key and new keys only: not enough.
        let mut forged = next.to_note().expect("note");
        for i in [0, 3, 4] {
            forged.sign(&s[i]).expect("sign");
        }
        assert!(matches!(
            KeySet::verify(&forged.to_string(), &trust),
            Err(Error::QuorumNotMet {
                valid: 1,
                quorum: 2
            })
        ));
        // Another log's key set.
        let other = KeySet::new("other.example/log", 9, keys(&s, &[0, 2, 3])).expect("set");
        let mut other_note = other.to_note().expect("note");
        for i in [0, 2] {
            other_note.sign(&s[i]).expect("sign");
        }
        assert!(matches!(
            KeySet::verify(&other_note.to_string(), &trust),
            Err(Error::WrongOrigin { .. })
        ));
    }

    #[test]
    fn refuses_empty_sets_and_names_used_twice() {
        assert!(KeySet::new(ORIGIN, 1, Vec::new()).is_err());
        let a = NoteSigner::from_seed("n", &[1; 32]).expect("a");
        let b = NoteSigner::from_seed("n", &[2; 32]).expect("b");
        assert!(KeySet::new(ORIGIN, 1, vec![a.public().clone(), b.public().clone()]).is_err());
    }
}

//! Trust policies: C2SP `tlog-policy` files, read as one Veritrail log's
//! voters plus the witnesses whose cosignatures a checkpoint needs.
//!
//! The syntax is the spec's (`log`, `witness`, `group`, `quorum` lines;
//! comments; names defined before use). Veritrail reads it in one way the spec
//! leaves open and adds two lines (docs/FORMAT.md section 13):
//!
//! - the `log` lines are the voters of **one** log, and a checkpoint needs
//!   `log-quorum <k>` of them (a majority when the line is absent), where the
//!   spec accepts a signature by any one listed log;
//! - `origin <origin>` names that log; without it, the origin is read from the
//!   voters' key names (`<origin>/node-<id>`), which must agree.
//!
//! The witness rule is the spec's: `quorum none`, a witness, or a group of
//! witnesses and groups with a threshold (`any`, `all`, or `k`).

use crate::Error;
use crate::checkpoint::{CheckpointVerifier, validate_origin};
use crate::cosignature::CosignerKey;
use crate::note::{NoteKey, SignedNote};

/// Most logs, witnesses and groups a policy may define (the spec recommends
/// supporting at least 32 of each).
pub const POLICY_ITEMS_MAX: usize = 256;

/// A witness or a group, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// One witness of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name in the policy (not its key name).
    pub name: String,
    pub key: CosignerKey,
    /// Its submission prefix, when the policy gives one.
    pub url: Option<String>,
}

/// Which witnesses a checkpoint needs: the witness half of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessRule {
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    /// `None` for `quorum none`.
    quorum: Option<Member>,
}

impl WitnessRule {
    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether cosignatures are required at all.
    pub fn requires_cosignatures(&self) -> bool {
        self.quorum.is_some()
    }

    /// Checks the note's cosignatures: every line of a listed witness must
    /// verify (a listed witness's bad line is an error, as a trusted node
    /// key's is), and the witnesses whose lines verified must meet the
    /// quorum. Returns the policy names of those witnesses.
    pub fn check(&self, note: &SignedNote) -> Result<Vec<String>, Error> {
        let mut cosigned = vec![false; self.witnesses.len()];
        for line in note.signatures() {
            let Some(i) = self.witnesses.iter().position(|w| w.key.matches(line)) else {
                continue;
            };
            if cosigned[i] {
                return Err(Error::DuplicateSignature {
                    name: line.name.clone(),
                    key_id: line.key_id,
                });
            }
            self.witnesses[i].key.verify(note.text(), line)?;
            cosigned[i] = true;
        }
        let names: Vec<String> = self
            .witnesses
            .iter()
            .zip(&cosigned)
            .filter(|(_, c)| **c)
            .map(|(w, _)| w.name.clone())
            .collect();
        match self.quorum {
            None => Ok(names),
            Some(quorum) if self.witnessed(quorum, &cosigned) => Ok(names),
            Some(quorum) => Err(Error::WitnessQuorumNotMet {
                quorum: self.name_of(quorum).to_owned(),
                cosigned: names,
            }),
        }
    }

    fn witnessed(&self, member: Member, cosigned: &[bool]) -> bool {
        match member {
            Member::Witness(i) => cosigned[i],
            Member::Group(g) => {
                let group = &self.groups[g];
                let met = group
                    .members
                    .iter()
                    .filter(|m| self.witnessed(**m, cosigned))
                    .count();
                met >= group.threshold
            }
        }
    }

    fn name_of(&self, member: Member) -> &str {
        match member {
            Member::Witness(i) => &self.witnesses[i].name,
            Member::Group(g) => &self.groups[g].name,
        }
    }
}

/// A parsed trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    origin: String,
    logs: Vec<NoteKey>,
    log_quorum: usize,
    rule: WitnessRule,
}

impl TrustPolicy {
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn log_keys(&self) -> &[NoteKey] {
        &self.logs
    }

    pub fn log_quorum(&self) -> usize {
        self.log_quorum
    }

    pub fn witness_rule(&self) -> &WitnessRule {
        &self.rule
    }

    /// The verifier this policy describes: the voters' keys and quorum, and
    /// the witness rule.
    pub fn checkpoint_verifier(&self) -> Result<CheckpointVerifier, Error> {
        Ok(
            CheckpointVerifier::new(&self.origin, self.logs.clone(), self.log_quorum)?
                .with_witnesses(self.rule.clone()),
        )
    }

    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<TrustPolicy, Error> {
        Parser::default().parse(text)
    }
}

#[derive(Default)]
struct Parser {
    origin: Option<String>,
    logs: Vec<NoteKey>,
    log_quorum: Option<usize>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Option<Option<Member>>,
}

fn bad(line: usize, why: impl std::fmt::Display) -> Error {
    Error::MalformedPolicy(format!("line {line}: {why}"))
}

impl Parser {
    fn parse(mut self, text: &str) -> Result<TrustPolicy, Error> {
        if let Some(c) = text
            .bytes()
            .find(|&b| b < 0x20 && b != b'\t' && b != b'\n' || b == 0x7f)
        {
            return Err(Error::MalformedPolicy(format!(
                "control character 0x{c:02x}: only tab and newline are allowed"
            )));
        }
        for (n, line) in text.split('\n').enumerate() {
            let n = n + 1;
            let words: Vec<&str> = line.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some((&keyword, args)) = words.split_first() else {
                continue;
            };
            if keyword.starts_with('#') {
                continue;
            }
            match keyword {
                "origin" => self.origin_line(n, args)?,
                "log" => self.log_line(n, args)?,
                "log-quorum" => self.log_quorum_line(n, args)?,
                "witness" => self.witness_line(n, args)?,
                "group" => self.group_line(n, args)?,
                "quorum" => self.quorum_line(n, args)?,
                other => return Err(bad(n, format!("unknown keyword {other:?}"))),
            }
            if self.logs.len() + self.witnesses.len() + self.groups.len() > POLICY_ITEMS_MAX {
                return Err(bad(
                    n,
                    format!("more than {POLICY_ITEMS_MAX} logs, witnesses and groups"),
                ));
            }
        }
        self.finish()
    }

    fn origin_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let [origin] = args else {
            return Err(bad(n, "expected `origin <origin>`"));
        };
        if self.origin.is_some() {
            return Err(bad(n, "a second origin line"));
        }
        validate_origin(origin).map_err(|e| bad(n, e))?;
        self.origin = Some((*origin).to_owned());
        Ok(())
    }

    fn log_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let (Some(vkey), None) = (args.first(), args.get(2)) else {
            return Err(bad(n, "expected `log <vkey> [<url>]`"));
        };
        let key = NoteKey::parse(vkey).map_err(|e| bad(n, e))?;
        if self.logs.iter().any(|k| k.public_key() == key.public_key()) {
            return Err(bad(n, "this log key is listed twice"));
        }
        self.logs.push(key);
        Ok(())
    }

    fn log_quorum_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let [k] = args else {
            return Err(bad(n, "expected `log-quorum <k>`"));
        };
        if self.log_quorum.is_some() {
            return Err(bad(n, "a second log-quorum line"));
        }
        let k = decimal(k).ok_or_else(|| bad(n, "the log quorum is a decimal number"))?;
        self.log_quorum = Some(k);
        Ok(())
    }

    fn witness_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let (Some(name), Some(vkey), None) = (args.first(), args.get(1), args.get(3)) else {
            return Err(bad(n, "expected `witness <name> <vkey> [<url>]`"));
        };
        self.new_name(n, name)?;
        let key = CosignerKey::parse(vkey).map_err(|e| bad(n, e))?;
        if self
            .witnesses
            .iter()
            .any(|w| w.key.public_key() == key.public_key())
        {
            return Err(bad(n, "this witness key is listed twice"));
        }
        self.witnesses.push(PolicyWitness {
            name: (*name).to_owned(),
            key,
            url: args.get(2).map(|u| (*u).to_owned()),
        });
        Ok(())
    }

    fn group_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let [name, threshold, members @ ..] = args else {
            return Err(bad(n, "expected `group <name> <all|any|k> <name>...`"));
        };
        if members.is_empty() {
            return Err(bad(n, "a group needs at least one member"));
        }
        self.new_name(n, name)?;
        let mut resolved: Vec<Member> = Vec::with_capacity(members.len());
        for member in members {
            let m = self.lookup(member).ok_or_else(|| {
                bad(
                    n,
                    format!("{member:?} is not a witness or group defined above"),
                )
            })?;
            if resolved.contains(&m) {
                return Err(bad(n, format!("{member:?} is listed twice in the group")));
            }
            resolved.push(m);
        }
        let threshold = match *threshold {
            "all" => resolved.len(),
            "any" => 1,
            k => decimal(k)
                .filter(|k| (1..=resolved.len()).contains(k))
                .ok_or_else(|| {
                    bad(
                        n,
                        format!("threshold {k:?}: all, any, or 1 to {}", resolved.len()),
                    )
                })?,
        };
        self.groups.push(Group {
            name: (*name).to_owned(),
            threshold,
            members: resolved,
        });
        Ok(())
    }

    fn quorum_line(&mut self, n: usize, args: &[&str]) -> Result<(), Error> {
        let [name] = args else {
            return Err(bad(n, "expected `quorum <name>`"));
        };
        if self.quorum.is_some() {
            return Err(bad(n, "a second quorum line"));
        }
        let quorum = match *name {
            "none" => None,
            name => Some(self.lookup(name).ok_or_else(|| {
                bad(
                    n,
                    format!("{name:?} is not a witness or group defined above"),
                )
            })?),
        };
        self.quorum = Some(quorum);
        Ok(())
    }

    fn new_name(&self, n: usize, name: &str) -> Result<(), Error> {
        if name == "none" {
            return Err(bad(n, "`none` is reserved for `quorum none`"));
        }
        if self.lookup(name).is_some() {
            return Err(bad(n, format!("{name:?} is defined twice")));
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Member> {
        self.witnesses
            .iter()
            .position(|w| w.name == name)
            .map(Member::Witness)
            .or_else(|| {
                self.groups
                    .iter()
                    .position(|g| g.name == name)
                    .map(Member::Group)
            })
    }

    fn finish(self) -> Result<TrustPolicy, Error> {
        let missing = |why: &str| Error::MalformedPolicy(why.to_owned());
        let quorum = self
            .quorum
            .ok_or_else(|| missing("no quorum line (`quorum none` requires no witness)"))?;
        if self.logs.is_empty() {
            return Err(missing(
                "no log line: the policy names no key to verify checkpoints with",
            ));
        }
        let origin = match self.origin {
            Some(origin) => origin,
            None => origin_of(&self.logs)?,
        };
        let log_quorum = self.log_quorum.unwrap_or(self.logs.len() / 2 + 1);
        if log_quorum == 0 || log_quorum > self.logs.len() {
            return Err(Error::MalformedPolicy(format!(
                "log-quorum {log_quorum} for {} log keys: it must be between 1 and their number",
                self.logs.len()
            )));
        }
        Ok(TrustPolicy {
            origin,
            logs: self.logs,
            log_quorum,
            rule: WitnessRule {
                witnesses: self.witnesses,
                groups: self.groups,
                quorum,
            },
        })
    }
}

/// The origin the voters' key names share (`<origin>/node-<id>`).
fn origin_of(logs: &[NoteKey]) -> Result<String, Error> {
    let origins: Vec<&str> = logs
        .iter()
        .map(|k| k.name().rsplit_once("/node-").map_or(k.name(), |(o, _)| o))
        .collect();
    match origins.split_first() {
        Some((first, rest)) if rest.iter().all(|o| o == first) => Ok((*first).to_owned()),
        _ => Err(Error::MalformedPolicy(
            "the log keys' names name different origins: give the log's with an `origin` line"
                .into(),
        )),
    }
}

fn decimal(text: &str) -> Option<usize> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpoint;
    use crate::Hash;
    use crate::cosignature::Cosigner;
    use crate::note::NoteSigner;

    const ORIGIN: &str = "audit.example.com/prod";

    fn voters() -> Vec<NoteSigner> {
        (1u8..=3)
            .map(|i| NoteSigner::from_seed(&format!("{ORIGIN}/node-{i}"), &[i; 32]).expect("key"))
            .collect()
    }

    fn witness(i: u8) -> Cosigner {
        Cosigner::from_seed(&format!("w{i}.example"), &[100 + i; 32]).expect("witness")
    }

    fn policy(rest: &str) -> String {
        let mut text = String::from("# voters\n");
        for v in voters() {
            text.push_str(&format!("log {}\n", v.public()));
        }
        for i in 1..=3 {
            text.push_str(&format!(
                "witness W{i}\t{} http://w{i}.example\n",
                witness(i).public()
            ));
        }
        text.push_str(rest);
        text
    }

    fn checkpoint(signers: &[NoteSigner], cosigners: &[Cosigner]) -> String {
        let body = Checkpoint {
            origin: ORIGIN.into(),
            size: 10,
            root: Hash([1; 32]),
            head: Hash([2; 32]),
            timestamp_ns: 5,
        }
        .body();
        let mut note = SignedNote::new(&body).expect("note");
        for s in signers {
            note.sign(s).expect("sign");
        }
        for c in cosigners {
            note.add_signature(c.cosign(&body, 1_700_000_000).expect("cosign"))
                .expect("add");
        }
        note.to_string()
    }

    #[test]
    fn a_checkpoint_needs_the_voters_and_the_witness_quorum() {
        let p = TrustPolicy::parse(&policy("group two 2 W1 W2 W3\nquorum two\n")).expect("policy");
        assert_eq!((p.origin(), p.log_quorum()), (ORIGIN, 2));
        let v = p.checkpoint_verifier().expect("verifier");
        let vs = voters();
        let cosigned = checkpoint(&vs[..2], &[witness(1), witness(3)]);
        let verified = v.verify(&cosigned).expect("two voters, two witnesses");
        assert_eq!(verified.witnesses, ["W1", "W3"]);

        let one_witness = checkpoint(&vs, &[witness(2)]);
        assert!(matches!(
            v.verify(&one_witness),
            Err(Error::WitnessQuorumNotMet { ref quorum, ref cosigned }) if quorum == "two" && cosigned == &["W2"]
        ));
        let one_voter = checkpoint(&vs[..1], &[witness(1), witness(2)]);
        assert!(matches!(
            v.verify(&one_voter),
            Err(Error::QuorumNotMet { .. })
        ));

        // A listed witness's altered cosignature is an error, not a skip.
        let mut note = SignedNote::parse(&cosigned).expect("note");
        let mut line = note.signatures()[2].clone();
        line.signature[10] ^= 1;
        note.add_signature(line).expect("replace");
        assert!(matches!(
            v.verify(&note.to_string()),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn groups_nest_and_quorum_none_asks_for_no_witness() {
        let p = TrustPolicy::parse(&policy(
            "group a any W1 W2\ngroup both all a W3\nquorum both\n",
        ))
        .expect("policy");
        let v = p.checkpoint_verifier().expect("verifier");
        let vs = voters();
        assert!(
            v.verify(&checkpoint(&vs, &[witness(2), witness(3)]))
                .is_ok()
        );
        assert!(
            v.verify(&checkpoint(&vs, &[witness(1), witness(2)]))
                .is_err()
        );

        let none = TrustPolicy::parse(&policy("quorum none\n")).expect("policy");
        assert!(!none.witness_rule().requires_cosignatures());
        let v = none.checkpoint_verifier().expect("verifier");
        assert!(v.verify(&checkpoint(&vs, &[])).is_ok());
    }

    #[test]
    fn malformed_policies_are_refused_with_their_line() {
        for (rest, expected) in [
            ("", "no quorum line"),
            ("quorum W9\n", "not a witness or group defined above"),
            ("quorum none\nquorum none\n", "a second quorum line"),
            ("group g 4 W1 W2 W3\nquorum g\n", "threshold"),
            ("group g any W1 W1\nquorum g\n", "listed twice in the group"),
            ("group W1 any W2\nquorum none\n", "defined twice"),
            ("group none any W2\nquorum none\n", "reserved"),
            ("group g any\nquorum g\n", "at least one member"),
            ("log-quorum 4\nquorum none\n", "log-quorum 4 for 3"),
            ("frobnicate\nquorum none\n", "unknown keyword"),
            ("quorum none\r\n", "control character"),
        ] {
            let refused = TrustPolicy::parse(&policy(rest)).expect_err(rest);
            assert!(
                refused.to_string().contains(expected),
                "{rest:?}: {refused}"
            );
        }
        let twice = format!("{}log {}\nquorum none\n", policy(""), voters()[0].public());
        let refused = TrustPolicy::parse(&twice).expect_err("a log key twice");
        assert!(refused.to_string().contains("listed twice"), "{refused}");
    }
}

//! C2SP signed notes with Ed25519 signatures (`signed-note` v1).
//!
//! A signed note is a text that ends in a newline, a blank line, and one signature
//! line per signer: `— <key name> <base64(key id || signature)>`. Key names and
//! ids follow the spec, so Go's `golang.org/x/mod/sumdb/note` reads our notes and
//! keys, and we read theirs.
//!
//! Verification here is stricter than the spec's minimum, on purpose: Veritrail's
//! checkpoints are signed by cluster nodes only, so a signature by a key the
//! verifier does not know, or a key signing twice, means the verifier's key list is
//! wrong or someone tampered with the note; both are reported as errors, each with
//! its own variant, rather than skipped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::{Error, Hash};

/// The signature-type byte of Ed25519 in key ids and key strings.
pub const ALG_ED25519: u8 = 0x01;
/// Most signature lines a note may carry. The spec asks verifiers to accept at
/// least 16; Go's implementation stops at 100, and so do we.
pub const NOTE_SIGNATURES_MAX: usize = 100;
/// Largest signed note we parse, in bytes: generously above 100 signature lines
/// and any checkpoint body.
pub const NOTE_MAX_BYTES: usize = 64 * 1024;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The key id of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || "\n" || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    typed_key_id(name, ALG_ED25519, public_key)
}

/// The key id of a key of signature type `alg`: the first four bytes,
/// big-endian, of `SHA-256(name || "\n" || alg || public key)`.
pub(crate) fn typed_key_id(name: &str, alg: u8, public_key: &[u8; 32]) -> u32 {
    let digest = Hash::digest_parts(&[name.as_bytes(), b"\n", &[alg], public_key]);
    let b = digest.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Splits a key string `<name>+<8 hex key id>+<base64(alg || 32 bytes)>` (a
/// verifier key, or a signer key after its `PRIVATE+KEY+`) into its name,
/// id and 32 key bytes, checking that the type byte is `alg`. `what` names
/// the string in errors.
pub(crate) fn split_key_string(
    text: &str,
    alg: u8,
    what: &str,
) -> Result<(String, u32, [u8; 32]), Error> {
    let bad = |why: &str| Error::MalformedKey(format!("{what}: {why}"));
    // Split on the first two '+' only: the base64 part may itself hold '+'.
    let (name, rest) = text
        .split_once('+')
        .ok_or_else(|| bad("expected name+id+key"))?;
    let (id_hex, key_b64) = rest
        .split_once('+')
        .ok_or_else(|| bad("expected name+id+key"))?;
    let id = parse_key_id(id_hex).ok_or_else(|| bad("key id must be 8 hex digits"))?;
    let raw = BASE64
        .decode(key_b64.trim_end())
        .map_err(|_| bad("key is not base64"))?;
    let (found, key) = raw.split_first().ok_or_else(|| bad("key is empty"))?;
    if *found != alg {
        return Err(bad(&format!(
            "key type 0x{found:02x}, where 0x{alg:02x} is expected"
        )));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| bad("a key is 32 bytes"))?;
    Ok((name.to_owned(), id, key))
}

/// A named Ed25519 public key: its name, key id and key, for the signature
/// type a caller names (notes' `0x01`, cosignatures' `0x04`).
pub(crate) type NamedKey = (String, u32, VerifyingKey);

/// The named key of type `alg` for `name` and a 32-byte Ed25519 public key.
pub(crate) fn named_key(name: &str, alg: u8, public_key: &[u8; 32]) -> Result<NamedKey, Error> {
    validate_key_name(name)?;
    let key = VerifyingKey::from_bytes(public_key)
        .map_err(|e| Error::MalformedKey(format!("not an Ed25519 public key: {e}")))?;
    Ok((name.to_owned(), typed_key_id(name, alg, public_key), key))
}

/// Parses a verifier-key string of type `alg`; `what` names it in errors.
pub(crate) fn parse_named_key(text: &str, alg: u8, what: &str) -> Result<NamedKey, Error> {
    let (name, id, public) = split_key_string(text, alg, what)?;
    let key = named_key(&name, alg, &public)?;
    if key.1 != id {
        return Err(Error::MalformedKey(format!(
            "{what}: key id does not match the name and key"
        )));
    }
    Ok(key)
}

/// `<name>+<8 hex key id>+<base64(alg || 32 bytes)>`: a verifier key string,
/// or, after `PRIVATE+KEY+`, a signer key's with the seed as the bytes.
pub(crate) fn key_string(name: &str, id: u32, alg: u8, bytes: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(alg);
    raw.extend_from_slice(bytes);
    format!("{name}+{id:08x}+{}", BASE64.encode(raw))
}

/// Parses a signer-key string `PRIVATE+KEY+<name>+<id>+<base64(alg || seed)>`:
/// its name and seed, the id checked against the key the seed makes.
pub(crate) fn parse_signer_key(
    text: &str,
    alg: u8,
    what: &str,
) -> Result<(String, [u8; 32]), Error> {
    let rest = text
        .strip_prefix("PRIVATE+KEY+")
        .ok_or_else(|| Error::MalformedKey(format!("{what}: must start PRIVATE+KEY+")))?;
    let (name, id, seed) = split_key_string(rest, alg, what)?;
    let public = SigningKey::from_bytes(&seed).verifying_key();
    if typed_key_id(&name, alg, public.as_bytes()) != id {
        return Err(Error::MalformedKey(format!(
            "{what}: key id does not match the name and key"
        )));
    }
    Ok((name, seed))
}

/// Key names are non-empty and contain neither Unicode white space nor `+`.
pub fn validate_key_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::MalformedKey("key name is empty".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || *c == '+' || c.is_control())
    {
        return Err(Error::MalformedKey(format!(
            "key name {name:?} contains {c:?}; names may hold neither spaces nor '+'"
        )));
    }
    Ok(())
}

/// A verifier key: who signs, and the Ed25519 public key they sign with.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteKey {
    /// A verifier key for `name` and a 32-byte Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, Error> {
        let (name, id, key) = named_key(name, ALG_ED25519, public_key)?;
        Ok(NoteKey { name, id, key })
    }

    /// Parses the verifier-key string `<name>+<8 hex key id>+<base64(0x01 || key)>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, id, key) =
            parse_named_key(text, ALG_ED25519, &format!("verifier key {text:?}"))?;
        Ok(NoteKey { name, id, key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is a valid Ed25519 signature by this key over `text`.
    /// Uses strict verification, which also refuses malleable and small-order
    /// signatures, so each message has exactly one valid signature per key.
    pub fn verifies(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = Signature::from_bytes(bytes);
        self.key.verify_strict(text, &signature).is_ok()
    }

    fn matches(&self, signature: &NoteSignature) -> bool {
        self.name == signature.name && self.id == signature.key_id
    }
}

impl fmt::Display for NoteKey {
    /// The verifier-key string, as `NoteKey::parse` reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_string(
            &self.name,
            self.id,
            ALG_ED25519,
            self.key.as_bytes(),
        ))
    }
}

impl fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteKey({self})")
    }
}

fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A signing key: a name and an Ed25519 secret.
pub struct NoteSigner {
    public: NoteKey,
    secret: SigningKey,
}

impl NoteSigner {
    /// A signer for `name` from a 32-byte Ed25519 seed. The caller draws the seed
    /// from a cryptographic random source; this crate never draws randomness.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, Error> {
        let secret = SigningKey::from_bytes(seed);
        let public = NoteKey::new(name, secret.verifying_key().as_bytes())?;
        Ok(NoteSigner { public, secret })
    }

    /// Parses the signer-key string `PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`,
    /// the form Go's `note` package uses.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, seed) = parse_signer_key(text, ALG_ED25519, "signer key")?;
        NoteSigner::from_seed(&name, &seed)
    }

    /// The signer-key string, as `NoteSigner::parse` reads it. Secret: store it
    /// with owner-only permissions.
    pub fn to_signer_string(&self) -> String {
        let (name, id) = (&self.public.name, self.public.id);
        format!(
            "PRIVATE+KEY+{}",
            key_string(name, id, ALG_ED25519, &self.secret.to_bytes())
        )
    }

    /// The matching verifier key.
    pub fn public(&self) -> &NoteKey {
        &self.public
    }

    /// Signs arbitrary bytes: an event statement ([`crate::signature`]), never
    /// a note text (use [`NoteSigner::sign`], which checks it is one).
    pub(crate) fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.secret.sign(message).to_bytes()
    }

    /// Signs a note text (which must be a valid note text).
    pub fn sign(&self, text: &str) -> Result<NoteSignature, Error> {
        validate_text(text)?;
        let signature = self.secret.sign(text.as_bytes());
        Ok(NoteSignature {
            name: self.public.name.clone(),
            key_id: self.public.id,
            signature: signature.to_bytes().to_vec(),
        })
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({}, secret elided)", self.public)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the key id: 64 bytes for Ed25519, but kept as
    /// given so that notes with other signature types still parse.
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn parse_line(line: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::MalformedNote(format!("signature line {line:?}: {why}"));
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or_else(|| bad("must start with '— '"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| bad("expected a name and a signature"))?;
        validate_key_name(name).map_err(|_| bad("invalid key name"))?;
        let raw = BASE64
            .decode(b64)
            .map_err(|_| bad("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("signature is shorter than a key id and one byte"));
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
            signature: raw[4..].to_vec(),
        })
    }
}

impl fmt::Display for NoteSignature {
    /// The signature line without its trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        write!(f, "{SIGNATURE_PREFIX}{} {}", self.name, BASE64.encode(raw))
    }
}

/// A note text with its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// An unsigned note over `text`.
    pub fn new(text: &str) -> Result<Self, Error> {
        validate_text(text)?;
        Ok(SignedNote {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note: the text, a blank line, and one or more signature
    /// lines, each ending in a newline.
    pub fn parse(message: &str) -> Result<Self, Error> {
        if message.len() > NOTE_MAX_BYTES {
            return Err(Error::MalformedNote(format!(
                "note is {} bytes; the limit is {NOTE_MAX_BYTES}",
                message.len()
            )));
        }
        check_characters(message)?;
        // The text ends at the last blank line; signature lines never hold one.
        let split = message
            .rfind("\n\n")
            .ok_or_else(|| Error::MalformedNote("no blank line before the signatures".into()))?;
        let text = &message[..split + 1];
        let block = &message[split + 2..];
        if block.is_empty() {
            return Err(Error::MalformedNote("note carries no signature".into()));
        }
        let Some(lines) = block.strip_suffix('\n') else {
            return Err(Error::MalformedNote(
                "last signature line must end in a newline".into(),
            ));
        };
        let signatures = lines
            .split('\n')
            .map(NoteSignature::parse_line)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.len() > NOTE_SIGNATURES_MAX {
            return Err(Error::MalformedNote(format!(
                "{} signature lines; the limit is {NOTE_SIGNATURES_MAX}",
                signatures.len()
            )));
        }
        validate_text(text)?;
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature, replacing any earlier one by the same key (name and id),
    /// as Go's `note.Sign` does.
    pub fn add_signature(&mut self, signature: NoteSignature) -> Result<(), Error> {
        self.signatures
            .retain(|s| !(s.name == signature.name && s.key_id == signature.key_id));
        if self.signatures.len() >= NOTE_SIGNATURES_MAX {
            return Err(Error::MalformedNote(format!(
                "a note carries at most {NOTE_SIGNATURES_MAX} signatures"
            )));
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Signs the note with `signer`, replacing any earlier signature by that key.
    pub fn sign(&mut self, signer: &NoteSigner) -> Result<(), Error> {
        let signature = signer.sign(&self.text)?;
        self.add_signature(signature)
    }

    /// Verifies the note against `keys`, returning the names of the keys whose
    /// signatures verified, in signature order.
    ///
    /// A signature by a key that is not in `keys` is skipped: it neither
    /// counts nor fails the note, as in Go's `note.Open`. Trust comes from a
    /// quorum of the keys the verifier holds; a member that joined after the
    /// verifier pinned its keys signs too, and that must not read as tampering.
    ///
    /// Fails on the first of: a quorum outside `1..=keys.len()`, two keys sharing a
    /// name and id, a trusted key that signed twice, a trusted key's signature
    /// that does not verify, or fewer than `quorum` valid signatures by trusted
    /// keys.
    pub fn verify(&self, keys: &[NoteKey], quorum: usize) -> Result<Vec<String>, Error> {
        if quorum == 0 || quorum > keys.len() {
            return Err(Error::InvalidQuorum {
                quorum,
                keys: keys.len(),
            });
        }
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| a.name == b.name && a.id == b.id) {
                return Err(Error::MalformedKey(format!("key {a} is listed twice")));
            }
        }
        let mut signers: Vec<String> = Vec::with_capacity(self.signatures.len());
        for (i, signature) in self.signatures.iter().enumerate() {
            let Some(key) = keys.iter().find(|k| k.matches(signature)) else {
                continue;
            };
            if self.signatures[..i].iter().any(|s| key.matches(s)) {
                return Err(Error::DuplicateSignature {
                    name: signature.name.clone(),
                    key_id: signature.key_id,
                });
            }
            if !key.verifies(self.text.as_bytes(), &signature.signature) {
                return Err(Error::BadSignature {
                    name: signature.name.clone(),
                    key_id: signature.key_id,
                });
            }
            signers.push(key.name.clone());
        }
        if signers.len() < quorum {
            return Err(Error::QuorumNotMet {
                valid: signers.len(),
                quorum,
            });
        }
        Ok(signers)
    }
}

impl fmt::Display for SignedNote {
    /// The signed note as text: the text, a blank line, the signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for signature in &self.signatures {
            writeln!(f, "{signature}")?;
        }
        Ok(())
    }
}

/// A note text is non-empty, ends in a newline, and holds no control character
/// but the newline.
fn validate_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote(
            "note text must end in a newline".into(),
        ));
    }
    check_characters(text)
}

fn check_characters(text: &str) -> Result<(), Error> {
    if let Some((offset, c)) = text.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        return Err(Error::MalformedNote(format!(
            "control character {c:?} at byte {offset}; only newlines are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from golang.org/x/mod/sumdb/note (note_test.go).
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn signs_byte_for_byte_like_go() {
        let signer = NoteSigner::parse(PETER_SKEY).expect("skey");
        assert_eq!(signer.public().to_string(), PETER_VKEY);
        assert_eq!(signer.to_signer_string(), PETER_SKEY);
        let mut note = SignedNote::new(TEXT).expect("text");
        note.sign(&signer).expect("sign");
        assert_eq!(note.to_string(), format!("{TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn verifies_go_signed_notes() {
        let peter = NoteKey::parse(PETER_VKEY).expect("vkey");
        let enoch = NoteKey::parse(ENOCH_VKEY).expect("vkey");
        let note = SignedNote::parse(&format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}")).expect("parse");
        assert_eq!(note.text(), TEXT);
        assert_eq!(
            note.verify(&[peter.clone(), enoch.clone()], 2),
            Ok(vec!["PeterNeumann".to_owned(), "EnochRoot".to_owned()])
        );
        // A signature by a key we were not given is skipped: it neither counts
        // nor fails the note (Go's note.Open does the same).
        assert_eq!(
            note.verify(std::slice::from_ref(&peter), 1),
            Ok(vec!["PeterNeumann".to_owned()])
        );
        assert_eq!(
            note.verify(std::slice::from_ref(&enoch), 1),
            Ok(vec!["EnochRoot".to_owned()])
        );
        // An unknown key's signature never makes up a missing trusted one.
        let only_enoch = SignedNote::parse(&format!("{TEXT}\n{ENOCH_SIG}")).expect("parse");
        assert_eq!(
            only_enoch.verify(std::slice::from_ref(&peter), 1),
            Err(Error::QuorumNotMet {
                valid: 0,
                quorum: 1
            })
        );
        assert_eq!(
            only_enoch.verify(&[peter.clone(), enoch.clone()], 2),
            Err(Error::QuorumNotMet {
                valid: 1,
                quorum: 2
            })
        );
        assert_eq!(
            note.verify(&[peter.clone(), enoch.clone()], 3),
            Err(Error::InvalidQuorum { quorum: 3, keys: 2 })
        );
        let only_peter = SignedNote::parse(&format!("{TEXT}\n{PETER_SIG}")).expect("parse");
        assert_eq!(
            only_peter.verify(&[peter.clone(), enoch.clone()], 2),
            Err(Error::QuorumNotMet {
                valid: 1,
                quorum: 2
            })
        );
        let twice = SignedNote::parse(&format!("{TEXT}\n{PETER_SIG}{PETER_SIG}")).expect("parse");
        assert_eq!(
            twice.verify(&[peter.clone(), enoch], 1),
            Err(Error::DuplicateSignature {
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            })
        );
    }

    #[test]
    fn rejects_tampered_signatures_and_text() {
        let peter = NoteKey::parse(PETER_VKEY).expect("vkey");
        let mut tampered = PETER_SIG.to_owned();
        tampered.insert_str(60, "ABCD");
        let note = SignedNote::parse(&format!("{TEXT}\n{tampered}")).expect("parse");
        assert!(matches!(
            note.verify(std::slice::from_ref(&peter), 1),
            Err(Error::BadSignature { .. })
        ));
        let other_text = TEXT.replace("answer", "Answer");
        let note = SignedNote::parse(&format!("{other_text}\n{PETER_SIG}")).expect("parse");
        assert!(matches!(
            note.verify(&[peter], 1),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn rejects_malformed_notes_like_go() {
        let malformed = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", PETER_SIG.trim_end()),
            format!("\x01{TEXT}\n{PETER_SIG}"),
            "\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=".to_owned(),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(101)),
        ];
        for message in malformed {
            assert!(
                matches!(SignedNote::parse(&message), Err(Error::MalformedNote(_))),
                "accepted {message:?}"
            );
        }
    }

    #[test]
    fn rejects_malformed_verifier_keys() {
        NoteKey::parse(PETER_VKEY).expect("valid");
        for end in 0..PETER_VKEY.len() {
            assert!(
                NoteKey::parse(&PETER_VKEY[..end]).is_err(),
                "prefix {end} accepted"
            );
        }
        for bad in [
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(NoteKey::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn c2sp_example_verifies() {
        let key =
            NoteKey::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k")
                .expect("vkey");
        let note = SignedNote::parse(
            "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n",
        )
        .expect("parse");
        assert_eq!(
            note.verify(&[key], 1),
            Ok(vec!["example.com/foo".to_owned()])
        );
    }
}

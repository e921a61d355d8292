#!/usr/bin/env python3
"""Independent verifier for Veritrail's byte formats, written from docs/FORMAT.md alone.

Usage: python3 tests/format/verify_vectors.py crates/core/testdata/vectors.json \
           [crates/core/testdata/vectors-signed.json]

It re-derives every value in the golden vectors (entry encodings, hashes, Merkle roots,
frontiers, proofs, keys, checkpoints, signatures, key sets, the evidence bundle) and checks that
tampered inputs are rejected. With the second file it also checks signed events: version 2
entries, event statements and signatures, and signer lists (sections 1.1, 2.4, 3, 7 step 5, 9).
Section numbers below refer to docs/FORMAT.md.
Dependencies: Python 3.11 standard library (tomllib) and the `cryptography` package (Ed25519).
"""
import base64, binascii, functools, hashlib, json, re, sys, tomllib, unicodedata
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class Reject(Exception):
    """An input that the format says MUST be rejected."""


# ---------------------------------------------------------------- check bookkeeping
CHECKS, FAILURES = 0, 0

def check(what, ok, detail=""):
    global CHECKS, FAILURES
    CHECKS += 1
    if not ok:
        FAILURES += 1
        print(f"  MISMATCH: {what}{': ' + detail if detail else ''}")

def check_eq(what, got, want):
    check(what, got == want, f"got {got!r}, want {want!r}")

def check_rejects(what, fn, *args, reason=None):
    """fn(*args) must raise Reject (and, if given, with a message starting with `reason`)."""
    try:
        fn(*args)
    except Reject as e:
        check(what, reason is None or str(e).startswith(reason), f"rejected for '{e}', want '{reason}'")
        return
    check(what, False, "was accepted")

GROUP_START = [0, 0]  # (checks, failures) when the current group began

def group_done(name):
    checks, failures = CHECKS - GROUP_START[0], FAILURES - GROUP_START[1]
    print(f"{name}: {'ok' if failures == 0 else f'{failures} MISMATCHES'} ({checks} checks)")
    GROUP_START[:] = [CHECKS, FAILURES]


# ---------------------------------------------------------------- encodings (conventions)
def u32(n): return n.to_bytes(4, "big")
def u64(n): return n.to_bytes(8, "big")
def sha256(b): return hashlib.sha256(b).digest()

def b64_strict(s, want_len=None):
    """FORMAT.md conventions: base64 everywhere is RFC 4648 section 4 in its canonical spelling only
    (padding present, unused bits zero, no white space), so decode-then-re-encode must give `s` back."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Reject("bad base64")
    if base64.b64encode(raw).decode() != s:
        raise Reject("non-canonical base64")
    if want_len is not None and len(raw) != want_len:
        raise Reject(f"base64 of {len(raw)} bytes, want {want_len}")
    return raw

def hex_hash(s):
    """FORMAT.md conventions, section 7: JSON hashes are 64 hex characters, read in either case."""
    if not isinstance(s, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", s):
        raise Reject(f"not a hex hash: {s!r}")
    return bytes.fromhex(s)


# ---------------------------------------------------------------- section 2: entries
MAX_ENTRY, MAX_STRING, MAX_ATTRS, MAX_PAYLOAD = 4 << 20, 4096, 256, 1 << 20
STRING_FIELDS = ("principal", "source", "event_id", "actor", "action", "resource", "outcome")

def string_bytes(s):
    b = s.encode("utf-8")
    return u32(len(b)) + b

ED25519_ALG = 0x01  # section 2.4, field 16: the only signature algorithm

def encode_entry(e):
    """Sections 2.1 and 2.4. `e` is a dict; attributes is a list of (key, value) pairs (sorted here);
    `signature` is None (version 1) or (32-byte public key, 64-byte signature) (version 2)."""
    sig = e.get("signature")
    out = bytes([1 if sig is None else 2]) + u64(e["seq"]) + u64(e["timestamp_ns"]) + e["prev_hash"]
    out += string_bytes(e["principal"]) + encode_event_fields(e)
    if sig is not None:  # fields 16-18
        out += bytes([ED25519_ALG]) + sig[0] + sig[1]
    return out

def encode_event_fields(e):
    """Fields 6 to 15 of section 2.1 (source through payload): what an event statement holds (1.1)."""
    out = bytearray()
    def string(s):
        out.extend(string_bytes(s))
    for f in STRING_FIELDS[1:]:
        string(e[f])
    out += b"\x00" if e["event_time_ns"] is None else b"\x01" + u64(e["event_time_ns"])
    if e["trace_id"] is None:
        out += b"\x00"
    else:
        out += b"\x01"
        string(e["trace_id"])
    attrs = sorted(e["attributes"], key=lambda kv: kv[0].encode("utf-8"))  # byte order of keys
    out += u32(len(attrs))
    for k, v in attrs:
        string(k)
        string(v)
    out += u32(len(e["payload"])) + e["payload"]
    return bytes(out)

class Reader:
    def __init__(self, data): self.data, self.pos = data, 0
    def take(self, n, what):
        if n > len(self.data) - self.pos:
            raise Reject(f"input ends inside {what}")
        self.pos += n
        return self.data[self.pos - n:self.pos]
    def int(self, size, what): return int.from_bytes(self.take(size, what), "big")
    def blob(self, limit, what):
        n = self.int(4, what)
        if n > limit:
            raise Reject(f"{what} longer than {limit} bytes")
        return self.take(n, what)
    def string(self, what):
        try:
            return self.blob(MAX_STRING, what).decode("utf-8")  # strict: no surrogates, no overlongs
        except UnicodeDecodeError:
            raise Reject(f"{what} is not valid UTF-8")
    def presence(self, what):
        tag = self.int(1, what)
        if tag > 1:
            raise Reject(f"presence tag {tag} for {what}")
        return tag == 1

def decode_entry(data):
    """Section 2.2, both versions: structural decoding only (character rules and policy limits are
    not checked, nor whether a version 2 signature verifies, 2.4). `signature` is None for
    version 1 and (public key, signature) for version 2."""
    if len(data) > MAX_ENTRY:
        raise Reject("input longer than 4 MiB")
    r = Reader(data)
    version = r.int(1, "version")
    if version not in (0x01, 0x02):
        raise Reject("unknown version byte")
    e = {"seq": r.int(8, "seq"), "timestamp_ns": r.int(8, "timestamp_ns"), "prev_hash": r.take(32, "prev_hash")}
    for f in STRING_FIELDS:
        e[f] = r.string(f)
    e["event_time_ns"] = r.int(8, "event_time_ns") if r.presence("event_time_ns") else None
    e["trace_id"] = r.string("trace_id") if r.presence("trace_id") else None
    count = r.int(4, "attribute count")
    if count > MAX_ATTRS:
        raise Reject("more than 256 attributes")
    e["attributes"], last_key = [], None
    for _ in range(count):
        k, v = r.string("attribute key"), r.string("attribute value")
        if last_key is not None and k.encode() <= last_key:
            raise Reject("attribute keys not strictly ascending")
        last_key = k.encode()
        e["attributes"].append((k, v))
    e["payload"] = r.blob(MAX_PAYLOAD, "payload")
    if version == 0x01:
        if r.pos != len(data):
            raise Reject("bytes remain after the payload")
        e["signature"] = None
        return e
    if r.int(1, "signature algorithm") != ED25519_ALG:  # section 2.4: missing, cut short, other algorithm
        raise Reject("unknown signature algorithm")
    e["signature"] = (r.take(32, "signature public key"), r.take(64, "signature"))
    if r.pos != len(data):
        raise Reject("bytes remain after the signature")
    return e

def entry_from_vector(v):
    """Build the structured entry from a vector's top-level fields and its `event`
    (FORMAT.md appendix: absent optional fields are null; attribute member order means nothing).
    `signature` only in vectors-signed.json: null, or public_key_hex and signature_hex."""
    ev, sig = v["event"], v.get("signature")
    e = {"seq": v["seq"], "timestamp_ns": v["timestamp_ns"], "prev_hash": hex_hash(v["prev_hash"]),
         "principal": v["principal"], "event_time_ns": ev["event_time_ns"], "trace_id": ev["trace_id"],
         "attributes": sorted((ev["attributes"] or {}).items(), key=lambda kv: kv[0].encode()),
         "payload": bytes.fromhex(ev["payload_hex"] or ""),
         "signature": None if sig is None else (bytes.fromhex(sig["public_key_hex"]), bytes.fromhex(sig["signature_hex"]))}
    for f in STRING_FIELDS[1:]:
        e[f] = ev[f]
    return e


# ---------------------------------------------------------------- section 1.1: event statement
STATEMENT_PREFIX = b"veritrail/event-signature/v1\n"  # 29 ASCII bytes

def statement(origin, e):
    """Section 1.1: prefix || string(origin) || fields 6 to 15 of the entry encoding."""
    return STATEMENT_PREFIX + string_bytes(origin) + encode_event_fields(e)

def event_signature_verifies(origin, e):
    """Section 1.1: a version 2 entry's signature verifies for `origin` (strict, section 6)."""
    pub, sig = e["signature"]
    return ed25519_verify_strict(pub, statement(origin, e), sig)


# ---------------------------------------------------------------- section 3: hashes and chain
def entry_hash(canonical): return sha256(b"\x00" + canonical)
def genesis_hash(origin): return sha256(b"veritrail/genesis/v1\n" + origin.encode("utf-8"))

def check_chain(raw_entries, start, origin, signers=None):
    """Section 3 (and section 7 step 5): canonical entries must decode and form a valid chain of
    log `origin` from seq `start`; entry 0's prev_hash must be the genesis hash (when start == 0),
    every version 2 signature must verify for `origin`, and, given a signer list (section 9),
    every entry must satisfy it. Returns (decoded entries, entry hashes). Raises Reject naming
    the seq concerned."""
    entries, hashes = [], []
    for i, raw in enumerate(raw_entries):
        seq = start + i
        try:
            e = decode_entry(raw)
        except Reject as err:
            raise Reject(f"seq {seq}: {err}")
        if e["seq"] != seq:
            raise Reject(f"seq {seq}: entry carries seq {e['seq']}")
        # Order of section 7 step 5 (signature and signer list before the link); section 3 lists the
        # signature last. Which failure is reported first for one entry differs between the two.
        if e["signature"] is not None and not event_signature_verifies(origin, e):
            raise Reject(f"seq {seq}: bad event signature")
        if signers is not None:
            try:
                check_signer_list(signers, e)
            except Reject as err:
                raise Reject(f"seq {seq}: {err}")
        if i == 0 and seq == 0 and e["prev_hash"] != genesis_hash(origin):
            raise Reject("seq 0: prev_hash is not the genesis hash")
        if i > 0 and e["prev_hash"] != hashes[-1]:
            raise Reject(f"seq {seq}: prev_hash does not link to entry {seq - 1}")
        if i > 0 and e["timestamp_ns"] < entries[-1]["timestamp_ns"]:
            raise Reject(f"seq {seq}: timestamp goes backwards")
        entries.append(e)
        hashes.append(entry_hash(raw))
    return entries, hashes


# ---------------------------------------------------------------- section 4: Merkle tree
EMPTY_ROOT = sha256(b"")
def node(left, right): return sha256(b"\x01" + left + right)
def split_point(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k  # largest power of two smaller than n (n >= 2)

def mth(leaves):
    """RFC 6962 MTH; the leaves are already leaf hashes (entry hashes), not hashed again."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node(mth(leaves[:k]), mth(leaves[k:]))

def inclusion_path(m, leaves):
    """RFC 6962 PATH(m, D[n]), from the leaf's sibling upward."""
    if len(leaves) <= 1:
        return []
    k = split_point(len(leaves))
    if m < k:
        return inclusion_path(m, leaves[:k]) + [mth(leaves[k:])]
    return inclusion_path(m - k, leaves[k:]) + [mth(leaves[:k])]

def consistency_proof(m, leaves):
    """RFC 6962 PROOF(m, D[n]) = SUBPROOF(m, D[n], true); empty when m = 0 or m = n."""
    def subproof(m, d, b):
        if m == len(d):
            return [] if b else [mth(d)]
        k = split_point(len(d))
        if m <= k:
            return subproof(m, d[:k], b) + [mth(d[k:])]
        return subproof(m - k, d[k:], False) + [mth(d[:k])]
    return [] if m == 0 else subproof(m, leaves, True)

def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root

def verify_consistency(m, n, root_m, root_n, proof):
    """RFC 9162 section 2.1.4.2 plus the edge-case rules of FORMAT.md section 4."""
    if m > n:
        return False
    if m == 0 or m == n:  # FORMAT.md §4: the proof must be empty; m = 0 needs the empty root,
        return not proof and (m > 0 or root_m == EMPTY_ROOT) and (m < n or root_m == root_n)  # m = n equal roots
    if not proof:  # FORMAT.md §4: 0 < m < n needs a non-empty proof
        return False
    if m & (m - 1) == 0:  # m is an exact power of two
        proof = [root_m] + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == root_m and sr == root_n and sn == 0

def frontier_by_definition(leaves):
    """Roots of the perfect subtrees tiling [0, n), largest first (one per set bit of n)."""
    out, pos, n = [], 0, len(leaves)
    for j in reversed(range(n.bit_length())):
        if n >> j & 1:
            out.append(mth(leaves[pos:pos + (1 << j)]))
            pos += 1 << j
    return out

def frontier_append(frontier, n, h):
    """Section 4 'append': returns the frontier of size n + 1."""
    frontier = list(frontier)
    while n & 1:
        h = node(frontier.pop(), h)
        n >>= 1
    return frontier + [h]

def frontier_root(frontier):
    if not frontier:
        return EMPTY_ROOT
    r = frontier[-1]
    for f in reversed(frontier[:-1]):
        r = node(f, r)
    return r


# ---------------------------------------------------------------- section 6: keys, Ed25519
def key_id(name, pub): return int.from_bytes(sha256(name.encode() + b"\n\x01" + pub)[:4], "big")
def b64(b): return base64.b64encode(b).decode()
def public_key(seed):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
ED25519 = b"\x01"  # signature type byte
def verifier_key(name, pub): return f"{name}+{key_id(name, pub):08x}+{b64(ED25519 + pub)}"
def signer_key(name, seed, pub): return f"PRIVATE+KEY+{name}+{key_id(name, pub):08x}+{b64(ED25519 + seed)}"

# Unicode White_Space property (PropList.txt; unchanged since Unicode 6.3).
WHITE_SPACE = set("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}

def valid_key_name(name):
    """FORMAT.md §6: non-empty, no White_Space character, no '+', no control character (Cc)."""
    return name != "" and not any(c in WHITE_SPACE or c == "+" or unicodedata.category(c) == "Cc" for c in name)

def parse_key_string(s, what):
    """FORMAT.md §6 steps 1-4, for verifier and signer keys: <name>+<8 hex, either case>+<base64(0x01 || 32 bytes)>."""
    parts = s.split("+", 2)  # the first two '+' only
    if len(parts) != 3 or not valid_key_name(parts[0]) or not re.fullmatch(r"[0-9a-fA-F]{8}", parts[1]):
        raise Reject(f"malformed {what} {s!r}")
    raw = b64_strict(parts[2])
    if len(raw) != 33 or raw[0] != 0x01:
        raise Reject(f"{what} is not an Ed25519 key")
    return parts[0], int(parts[1], 16), raw[1:]

def parse_verifier_key(s):
    name, kid, pub = parse_key_string(s, "verifier key")
    if decode_point(pub) is None:  # FORMAT.md §6 step 5
        raise Reject("verifier key is not a valid Ed25519 point")
    if key_id(name, pub) != kid:  # FORMAT.md §6 step 6
        raise Reject("verifier key id does not match its name and key")
    return name, kid, pub

def parse_signer_key(s):
    """FORMAT.md §6: 'PRIVATE+KEY+' then a key string holding the seed; the id is checked
    against the public key derived from the seed."""
    if not s.startswith("PRIVATE+KEY+"):
        raise Reject("signer key without PRIVATE+KEY+ prefix")
    name, kid, seed = parse_key_string(s[len("PRIVATE+KEY+"):], "signer key")
    if key_id(name, public_key(seed)) != kid:
        raise Reject("signer key id does not match its name and key")
    return name, kid, seed

# Minimal RFC 8032 point decoding: to validate verifier keys and to reject small-order R and A.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P

def decode_point(enc):
    y = int.from_bytes(enc, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:  # RFC 8032 section 5.1.3 decoding fails here.
        # ASSUMPTION: FORMAT.md §6 step 5's "valid Ed25519 point encoding" is RFC 8032 decoding,
        # so non-canonical encodings (y >= p) are refused, including some of large-order points.
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if v * x * x % P != u or (x == 0 and sign):
        return None
    return (P - x if x & 1 != sign else x, y)

def is_small_order(pt):
    x, y = pt
    for _ in range(3):  # [8]P by three doublings (complete twisted Edwards addition, a = -1)
        t = D * x * x * y * y % P
        x, y = 2 * x * y * pow(1 + t, -1, P) % P, (y * y + x * x) * pow(1 - t, -1, P) % P
    return (x, y) == (0, 1)

@functools.lru_cache(maxsize=None)
def strict_point(enc):
    """True if `enc` is a canonical encoding of a point that is not of small order."""
    pt = decode_point(enc)
    return pt is not None and not is_small_order(pt)

def ed25519_verify_strict(pub, msg, sig):
    """FORMAT.md §6 step 3 (ed25519-dalek's verify_strict): a 64-byte signature, S < L, R and A not
    of small order, then the cofactorless [S]B = R + [k]A comparing the computed R's encoding with
    the given R byte for byte. That last step is the RFC 8032 verify of `cryptography` (OpenSSL),
    which is cofactorless and compares R encodings; it lacks the small-order rule, added here.
    strict_point also refuses an R that is not canonical, which the R comparison would refuse anyway."""
    if len(sig) != 64 or int.from_bytes(sig[32:], "little") >= L:
        return False  # wrong length, or S not canonical
    if not strict_point(pub) or not strict_point(sig[:32]):
        return False  # R or A undecodable or of small order
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


# ---------------------------------------------------------------- section 5: checkpoint body
ORIGIN_RE = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,256}")  # printable ASCII without '+'
DECIMAL_RE = re.compile(r"0|[1-9][0-9]*")

def checkpoint_body(origin, size, root, head, ts):
    return f"{origin}\n{size}\n{b64(root)}\nveritrail-head {b64(head)} {ts}\n"

def parse_decimal(s):
    """FORMAT.md §5: no sign, no leading zeros, at most 2^64 - 1 (also used for JSON integers, §7)."""
    if len(s) > 20 or not DECIMAL_RE.fullmatch(s) or int(s) >= 1 << 64:
        raise Reject(f"non-canonical decimal {s!r}")
    return int(s)

def parse_checkpoint(text):
    if not text.endswith("\n"):
        raise Reject("checkpoint: missing final newline")
    lines = text[:-1].split("\n")
    if len(lines) != 4:
        raise Reject("checkpoint: not exactly four lines")
    if not ORIGIN_RE.fullmatch(lines[0]):
        raise Reject("checkpoint: bad origin")
    ext = lines[3].split(" ")
    if len(ext) != 3 or ext[0] != "veritrail-head":
        raise Reject("checkpoint: bad extension line")
    return {"origin": lines[0], "size": parse_decimal(lines[1]), "root": b64_strict(lines[2], 32),
            "head": b64_strict(ext[1], 32), "timestamp_ns": parse_decimal(ext[2])}


# ---------------------------------------------------------------- section 6: signed note
SIG_PREFIX = "\u2014 "  # em dash U+2014 and one space
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

def open_checkpoint(note, keys, quorum, origin):
    """Parse a signed note, verify it strictly against `keys` [(name, id, pub)] and `quorum`,
    then parse its text as a checkpoint of `origin`. Returns the parsed checkpoint."""
    cp = parse_checkpoint(open_note(note, keys, quorum))
    if cp["origin"] != origin:
        raise Reject("checkpoint origin is not the expected one")
    return cp

def open_note(note, keys, quorum):
    """Parse a signed note and verify it strictly against `keys` [(name, id, pub)] and
    `quorum` (section 6). Returns its text."""
    if not 1 <= quorum <= len(keys):  # FORMAT.md §6: rejected at once, not clamped
        raise Reject("quorum out of range")
    if len({(name, kid) for name, kid, _ in keys}) != len(keys):  # FORMAT.md §6: same name and key id
        raise Reject("duplicate trusted key")
    try:  # FORMAT.md §6 parsing rules, all before any signature is checked
        raw = note.encode("utf-8") if isinstance(note, str) else note
        text = raw.decode("utf-8")
    except UnicodeError:
        raise Reject("note is not valid UTF-8")
    if len(raw) > 65536:
        raise Reject("note longer than 65536 bytes")
    if any(ord(c) < 0x20 and c != "\n" for c in text):  # DEL and C1 pass this rule
        raise Reject("note contains a control character")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise Reject("note has no signature block")
    body, sig_block = text[:cut + 1], text[cut + 2:]  # the body keeps its final newline
    if not sig_block.endswith("\n"):
        raise Reject("signature line without final newline")
    lines = sig_block[:-1].split("\n")
    if not 1 <= len(lines) <= 100:
        raise Reject("need 1 to 100 signature lines")
    sigs = []
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise Reject("malformed signature line")
        name, _, sig64 = line[len(SIG_PREFIX):].partition(" ")  # names hold no space; the base64 none either
        if not valid_key_name(name):
            raise Reject("malformed signature line: bad key name")
        blob = b64_strict(sig64)
        if len(blob) < 5:
            raise Reject("malformed signature line: too short")
        sigs.append((name, int.from_bytes(blob[:4], "big"), blob[4:]))
    trusted = {(name, kid): pub for name, kid, pub in keys}
    signed = set()
    for name, kid, sig in sigs:
        if (name, kid) not in trusted:
            continue  # neither counts nor fails (FORMAT.md section 6, step 1)
        if (name, kid) in signed:
            raise Reject(f"duplicate signature: {name}")
        if not ed25519_verify_strict(trusted[(name, kid)], body.encode(), sig):
            raise Reject(f"bad signature: {name}")
        signed.add((name, kid))
    if len(signed) < quorum:
        raise Reject(f"quorum not met: {len(signed)} of {quorum}")
    return body


# ---------------------------------------------------------------- section 6.1: key set
def key_set_body(origin, epoch, verifier_keys):
    return f"{origin}\nveritrail-key-set {epoch}\n" + "".join(k + "\n" for k in sorted(verifier_keys))

def parse_key_set(text):
    """FORMAT.md section 6.1, strictly. Returns (origin, epoch, [(name, id, pub)])."""
    if not text.endswith("\n"):
        raise Reject("key set: missing final newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise Reject("key set: needs an origin, a key-set line and at least one key")
    if len(lines) > 102:
        raise Reject("key set: more than 100 keys")
    if not ORIGIN_RE.fullmatch(lines[0]):
        raise Reject("key set: bad origin")
    word, _, epoch = lines[1].partition(" ")
    if word != "veritrail-key-set":
        raise Reject("key set: second line is not `veritrail-key-set <epoch>`")
    epoch = parse_decimal(epoch)
    keys = lines[2:]
    if any(a >= b for a, b in zip(keys, keys[1:])):
        raise Reject("key set: keys not in strictly ascending byte order")
    parsed = []
    for k in keys:
        name, kid, pub = parse_verifier_key(k)
        if verifier_key(name, pub) != k:
            raise Reject("key set: a key not in its canonical spelling")
        parsed.append((name, kid, pub))
    if len({name for name, _, _ in parsed}) != len(parsed):
        raise Reject("key set: a key name twice")
    return lines[0], epoch, parsed


# ---------------------------------------------------------------- section 7: evidence bundle
BUNDLE_MEMBERS = {"format": str, "origin": str, "start": int, "count": int, "checkpoint": str,
                  "keys": list, "quorum": int, "left_frontier": list, "consistency_proof": list}

def no_duplicate_members(pairs):  # FORMAT.md §7: duplicate member names are an error
    if len({k for k, _ in pairs}) != len(pairs):
        raise Reject("bundle header: duplicate member")
    return dict(pairs)

def json_u64(s):  # FORMAT.md conventions, §7: exact integers in [0, 2^64 - 1]
    try:
        return parse_decimal(s)  # ASSUMPTION: "-0" counts as a negative number, so it is refused
    except Reject:
        raise Reject(f"bundle header: number {s!r} is not a u64")

def json_not_integer(s):  # FORMAT.md conventions: fractions and exponents are errors (and NaN, Infinity)
    raise Reject(f"bundle header: number {s!r} is not an integer")

def verify_bundle(text, keys, quorum, origin, signers=None):
    """Section 7, steps 1 to 7. `keys` are the trusted keys; if there are none, the bundle's own keys are
    used (FORMAT.md §7). `signers`: a parsed signer list (section 9), if the verifier was given one.
    Returns (start, count, N, whether the bundle's own keys were used)."""
    if not text.endswith("\n"):
        raise Reject("bundle: last line does not end in a newline")
    lines = text[:-1].split("\n")
    try:  # step 1. ASSUMPTION: JSON white space (RFC 8259, including \r) is allowed around the header.
        hdr = json.loads(lines[0], object_pairs_hook=no_duplicate_members, parse_int=json_u64,
                         parse_float=json_not_integer, parse_constant=json_not_integer)
        json.dumps(hdr, ensure_ascii=False).encode()  # ASSUMPTION: lone surrogate escapes are an error
    except (ValueError, UnicodeError):
        raise Reject("bundle header: not JSON")
    if not isinstance(hdr, dict) or set(hdr) != set(BUNDLE_MEMBERS):
        raise Reject("bundle header: wrong members")
    for k, t in BUNDLE_MEMBERS.items():
        if not isinstance(hdr[k], t) or isinstance(hdr[k], bool):
            raise Reject(f"bundle header: bad type for {k}")
    if not all(isinstance(k, str) for k in hdr["keys"]):
        raise Reject("bundle header: keys must be strings")
    if hdr["format"] != "veritrail-evidence-bundle/1" or hdr["origin"] != origin:
        raise Reject("bundle header: wrong format or origin")
    start, count = hdr["start"], hdr["count"]
    left = [hex_hash(h) for h in hdr["left_frontier"]]
    proof = [hex_hash(h) for h in hdr["consistency_proof"]]
    own_keys = not keys  # FORMAT.md §7: the bundle's keys and quorum only when no trusted keys are given
    if own_keys:
        keys, quorum = [parse_verifier_key(k) for k in hdr["keys"]], hdr["quorum"]
    cp = open_checkpoint(hdr["checkpoint"], keys, quorum, origin)  # step 2
    n_cp = cp["size"]
    if start + count > n_cp:  # step 3
        raise Reject(f"bundle: range [{start}, {start + count}) exceeds checkpoint size {n_cp}")
    if len(left) != bin(start).count("1"):  # step 4 (empty when start = 0)
        raise Reject("bundle: left_frontier has the wrong length")
    if len(lines) - 1 != count:  # step 5
        raise Reject(f"bundle: {len(lines) - 1} entry lines, header says {count}")
    raws = []
    for i, line in enumerate(lines[1:]):
        if line == "" or "\r" in line:
            raise Reject(f"seq {start + i}: empty line or \\r")
        try:
            raws.append(b64_strict(line))
        except Reject as e:
            raise Reject(f"seq {start + i}: {e}")
    entries, hashes = check_chain(raws, start, origin, signers)  # step 5, with check_chain's order
    frontier, size = left, start
    for h in hashes:
        frontier, size = frontier_append(frontier, size, h), size + 1
    if not verify_consistency(size, n_cp, frontier_root(frontier), cp["root"], proof):  # step 6
        raise Reject(f"seq {size - 1}: consistency proof from {size} to {n_cp} fails")
    if size == n_cp and count > 0 and (hashes[-1] != cp["head"] or entries[-1]["timestamp_ns"]
                                       != cp["timestamp_ns"]):  # step 7
        raise Reject(f"seq {size - 1}: last entry does not match the checkpoint head")
    return start, count, n_cp, own_keys


# ---------------------------------------------------------------- section 9: signer list
SIGNER_MEMBERS = {"principal": str, "keys": list, "required": bool}

def parse_signer_list(text):
    """Section 9: TOML, one [[signer]] table per principal; other tables are ignored.
    Returns {principal: (required, set of 32-byte public keys)}."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise Reject(f"signer list: not TOML ({e})")
    tables = doc.get("signer", [])  # a file without `signer` tables is an empty list
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise Reject("signer list: `signer` is not an array of tables")
    out = {}
    for t in tables:
        # §9: unknown members and wrong types are errors; a missing principal or keys is refused
        # below as an empty one.
        if set(t) - set(SIGNER_MEMBERS):
            raise Reject(f"signer list: unknown member {sorted(set(t) - set(SIGNER_MEMBERS))}")
        if any(not isinstance(t[k], ty) for k, ty in SIGNER_MEMBERS.items() if k in t):
            raise Reject("signer list: a member of the wrong type")
        principal, keys, required = t.get("principal", ""), t.get("keys", []), t.get("required", True)
        if principal == "" or "*" in principal:
            raise Reject("signer list: empty principal or one holding '*'")
        if not keys:
            raise Reject(f"signer list: no keys for {principal}")
        if not all(isinstance(k, str) for k in keys):
            raise Reject("signer list: a key that is not a string")
        try:
            pubs = {parse_verifier_key(k)[2] for k in keys}
        except Reject as e:
            raise Reject(f"signer list: {e}")
        if principal in out:
            raise Reject(f"signer list: two tables for {principal}")
        out[principal] = (required, pubs)
    return out

def check_signer_list(signers, e):
    """Section 9: raises Reject unless entry `e` satisfies the parsed signer list. Only the
    32-byte public key is compared, never a key name."""
    listed, sig = signers.get(e["principal"]), e["signature"]
    if listed is None:
        if sig is not None:
            raise Reject(f"unlisted signer: signed by {sig[0].hex()}, but {e['principal']} is not in the signer list")
        return
    required, pubs = listed
    if sig is None:
        if required:
            raise Reject(f"unsigned: {e['principal']} must sign its events")
        return
    if sig[0] not in pubs:
        raise Reject(f"unregistered key: signed by {sig[0].hex()}, not a key of {e['principal']} in the signer list")


# ---------------------------------------------------------------- the checks
def flip(b, i):
    """`b` with the lowest bit of byte `i` flipped."""
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]

def check_entries(vec):
    """Section 2: encode from fields, decode the canonical bytes, reject every invalid input."""
    check_eq("entry_format_version", vec["entry_format_version"], 1)
    for v in vec["entries"]:
        fields = entry_from_vector(v)
        check_eq(f"entry {v['seq']} encoding", encode_entry(fields).hex(), v["canonical_hex"])
        try:
            check_eq(f"entry {v['seq']} decoding", decode_entry(bytes.fromhex(v["canonical_hex"])), fields)
        except Reject as e:
            check(f"entry {v['seq']} decodes", False, str(e))
    # Each invalid entry must be rejected for the reason its words give (first keyword that matches).
    # vectors.json's 'unknown version byte 2' predates version 2 (FORMAT.md, appendix): under §2.2 as it is
    # now, this input (a version 1 body behind 0x02) is rejected because its signature block is missing.
    expected = [("version byte 2", "input ends inside signature algorithm"),
                ("truncated inside the principal", "input ends inside principal"),
                ("payload runs past", "input ends inside payload"), ("empty input", "input ends inside version"),
                ("trailing", "bytes remain"), ("version", "unknown version"), ("presence tag", "presence tag"),
                ("ascending", "attribute keys not strictly"), ("same attribute key", "attribute keys not strictly"),
                ("actor is not valid UTF-8", "actor is not valid UTF-8"), ("4097 bytes", "actor longer than 4096"),
                ("257 attributes", "more than 256")]
    for bad in vec["invalid_entries"]:
        want = next((r for words, r in expected if words in bad["reason"]), None)
        check_rejects(f"invalid entry '{bad['reason']}'", decode_entry, bytes.fromhex(bad["hex"]), reason=want)
    # Each hard maximum is accepted; one past it is rejected (vectors cover the last two past-max cases).
    base = entry_from_vector(vec["entries"][1])
    def variant(**kw): return encode_entry({**base, **kw})
    for what, field, at_max, past_max, why in [
            ("a 4096/4097-byte string", "actor", "a" * 4096, "a" * 4097, "actor longer"),
            ("a 1 MiB/1 MiB+1 payload", "payload", bytes(MAX_PAYLOAD), bytes(MAX_PAYLOAD + 1), "payload longer"),
            ("256/257 attributes", "attributes", [(f"k{i:03}", "") for i in range(256)],
             [(f"k{i:03}", "") for i in range(257)], "more than 256")]:
        check(f"accepts {what}", decode_entry(variant(**{field: at_max})) is not None)
        check_rejects(f"rejects {what}", decode_entry, variant(**{field: past_max}), reason=why)
    canon0 = bytes.fromhex(vec["entries"][0]["canonical_hex"])
    check_rejects("rejects input over 4 MiB", decode_entry, canon0 + bytes(MAX_ENTRY), reason="input longer")
    check_rejects("rejects a length prefix past the end", decode_entry, canon0[:-4] + u32(1), reason="input ends")
    group_done("entries: canonical encoding and decoding (2.1, 2.2)")

def check_hashes(vec):
    """Section 3: entry/leaf hashes, genesis hash, the chain. Returns the leaf hashes."""
    check_eq("genesis hash", genesis_hash(vec["origin"]).hex(), vec["genesis_hash"])
    canon = [bytes.fromhex(v["canonical_hex"]) for v in vec["entries"]]
    leaves = [entry_hash(c) for c in canon]
    for v, h in zip(vec["entries"], leaves):
        check_eq(f"entry {v['seq']} entry_hash and leaf_hash", (v["entry_hash"], v["leaf_hash"]), (h.hex(), h.hex()))
    try:
        check_eq("chain 0..9", check_chain(canon, 0, vec["origin"])[1], leaves)
    except Reject as e:
        check("chain 0..9 is valid", False, str(e))
    group_done("chain: entry hashes, genesis, prev_hash links, timestamps (3)")
    return leaves

def check_merkle(vec, leaves):
    """Section 4: roots, frontiers, proof generation and verification. Returns roots by size."""
    roots = {r["size"]: hex_hash(r["root"]) for r in vec["roots"]}
    for n in range(len(leaves) + 1):
        check_eq(f"root of size {n}", mth(leaves[:n]), roots.get(n))
    frontier = []
    for f in vec["frontiers"]:
        n, want = f["size"], f["nodes"]
        check_eq(f"frontier {n} (definition)", [x.hex() for x in frontier_by_definition(leaves[:n])], want)
        check_eq(f"frontier {n} (appends)", [x.hex() for x in frontier], want)
        check_eq(f"frontier {n} root", frontier_root(frontier), roots[n])
        if n < len(leaves):
            frontier = frontier_append(frontier, n, leaves[n])
    for p in vec["inclusion_proofs"]:
        i, n, pr = p["index"], p["size"], [hex_hash(x) for x in p["proof"]]
        leaf, root, tag = hex_hash(p["leaf_hash"]), hex_hash(p["root"]), f"inclusion ({i}, {n})"
        check_eq(f"{tag} leaf and root", (leaf, root), (leaves[i], roots[n]))
        check_eq(f"{tag} generated", [x.hex() for x in inclusion_path(i, leaves[:n])], p["proof"])
        check(f"{tag} verifies", verify_inclusion(i, n, leaf, pr, root))
        for k in range(len(pr)):
            bad = pr[:k] + [flip(pr[k], 0)] + pr[k + 1:]
            check(f"{tag} with element {k} flipped fails", not verify_inclusion(i, n, leaf, bad, root))
        if n > 1:
            check(f"{tag} at a wrong index fails", not verify_inclusion((i + 1) % n, n, leaf, pr, root))
        for n2 in (n - 1, n + 1):  # another size, with that size's root
            if i < n2 <= len(leaves):
                check(f"{tag} at size {n2} fails", not verify_inclusion(i, n2, leaf, pr, roots[n2]))
        check(f"{tag} with an extra element fails", not verify_inclusion(i, n, leaf, pr + [leaf], root))
    for p in vec["consistency_proofs"]:
        m, n, pr = p["from_size"], p["to_size"], [hex_hash(x) for x in p["proof"]]
        rm, rn, tag = hex_hash(p["from_root"]), hex_hash(p["to_root"]), f"consistency ({m}, {n})"
        check_eq(f"{tag} roots", (rm, rn), (roots[m], roots[n]))
        check_eq(f"{tag} generated", [x.hex() for x in consistency_proof(m, leaves[:n])], p["proof"])
        check(f"{tag} verifies", verify_consistency(m, n, rm, rn, pr))
        for k in range(len(pr)):
            bad = pr[:k] + [flip(pr[k], 0)] + pr[k + 1:]
            check(f"{tag} with element {k} flipped fails", not verify_consistency(m, n, rm, rn, bad))
        for m2, n2 in ((m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1)):  # other sizes, their roots
            if 0 <= m2 <= n2 <= len(leaves) and (pr or 0 < m2 < n2):  # (an empty proof is valid for m2 = 0 or m2 = n2)
                check(f"{tag} as ({m2}, {n2}) fails", not verify_consistency(m2, n2, roots[m2], roots[n2], pr))
        if 0 < m < n:
            check(f"{tag} with a wrong new root fails", not verify_consistency(m, n, rm, roots[m], pr))
    for what, args in [("(0, 0) with a non-empty old root", (0, 0, leaves[0], leaves[0], [])),
                       ("(0, 5) with a non-empty old root", (0, 5, leaves[0], roots[5], [])),
                       ("(0, 5) with a non-empty proof", (0, 5, roots[0], roots[5], [leaves[0]])),
                       ("(6, 5)", (6, 5, roots[6], roots[5], []))]:
        check(f"consistency {what} fails", not verify_consistency(*args))
    group_done("merkle: roots, frontiers, inclusion and consistency proofs (4)")
    return roots

def sig_line(name, pub, sig):
    return f"{SIG_PREFIX}{name} {b64(key_id(name, pub).to_bytes(4, 'big') + sig)}\n"

def sign_line(name, seed, body):
    return sig_line(name, public_key(seed), Ed25519PrivateKey.from_private_bytes(seed).sign(body.encode()))

def check_notes(vec, leaves, roots):
    """Sections 5 and 6: keys, checkpoint bodies, signatures, strict quorum verification.
    Returns the trusted keys [(name, id, pub)], derived from the seeds alone."""
    origin, quorum, keys, seeds = vec["origin"], vec["quorum"], [], {}
    for k in vec["keys"]:
        seed, name = bytes.fromhex(k["seed_hex"]), k["name"]
        pub = public_key(seed)
        got = (pub.hex(), f"{key_id(name, pub):08x}", verifier_key(name, pub), signer_key(name, seed, pub))
        check_eq(f"{name} public key, key id, verifier key, signer key", got,
                 (k["public_key_hex"], k["key_id"], k["verifier_key"], k["signer_key"]))
        check_eq(f"{name} verifier key parses", parse_verifier_key(k["verifier_key"]), (name, key_id(name, pub), pub))
        check_eq(f"{name} signer key parses", parse_signer_key(k["signer_key"]), (name, key_id(name, pub), seed))
        vk = k["verifier_key"]
        check_eq(f"{name} verifier key with an upper-case id parses",
                 parse_verifier_key(vk.replace(k["key_id"], k["key_id"].upper())), parse_verifier_key(vk))
        for what, bad, why in [("a wrong id", vk.replace(k["key_id"], f"{key_id(name, pub) ^ 1:08x}"), "verifier key id"),
                               ("a no-break space in the name", vk.replace("/", "\xa0", 1), "malformed"),
                               ("a point not on the curve", verifier_key(name, (2).to_bytes(32, "little")),
                                "verifier key is not a valid")]:
            check_rejects(f"{name} verifier key with {what}", parse_verifier_key, bad, reason=why)
        keys.append((name, key_id(name, pub), pub))
        seeds[name] = seed
    check_eq("quorum is the default floor(n/2)+1", quorum, len(keys) // 2 + 1)
    def rejects(what, note, reason=None, keys=keys, quorum=quorum, origin=origin):
        check_rejects(what, open_checkpoint, note, keys, quorum, origin, reason=reason)
    for c in vec["checkpoints"]:
        n, tag = c["size"], f"checkpoint {c['size']}"
        head = leaves[n - 1] if n else genesis_hash(origin)  # the chain head (3.1)
        ts = vec["entries"][n - 1]["timestamp_ns"] if n else 0
        body = checkpoint_body(origin, n, roots[n], head, ts)
        check_eq(f"{tag} body", body, c["body"])
        check_eq(f"{tag} fields", (c["root"], c["head"], c["timestamp_ns"]), (roots[n].hex(), head.hex(), ts))
        lines = [sign_line(s, seeds[s], body) for s in c["signers"]]
        check_eq(f"{tag} re-signed note", body + "\n" + "".join(lines), c["signed_note"])
        try:
            cp = open_checkpoint(c["signed_note"], keys, quorum, origin)
            check_eq(f"{tag} parsed", (cp["size"], cp["root"], cp["head"], cp["timestamp_ns"]), (n, roots[n], head, ts))
        except Reject as e:
            check(f"{tag} verifies", False, str(e))
        for i in range(len(body)):
            rejects(f"{tag} with body byte {i} flipped", flip(c["signed_note"].encode(), i))
        outsider = sign_line(f"{origin}/node-4", bytes([4]) * 32, body)
        try:
            cp = open_checkpoint(body + "\n" + "".join(lines) + outsider, keys, quorum, origin)
            check_eq(f"{tag} with an unknown key's signature skipped", cp["size"], n)
        except Reject as e:
            check(f"{tag} with an unknown key's signature skipped", False, str(e))
        rejects(f"{tag} with only an unknown key's signature beside too few", body + "\n" + "".join(lines[:quorum - 1]) + outsider,
                "quorum not met")
        rejects(f"{tag} with a duplicated line", body + "\n" + lines[0] + "".join(lines), "duplicate signature")
        rejects(f"{tag} below quorum", body + "\n" + "".join(lines[:quorum - 1]), "quorum not met" if quorum > 1 else None)
        name0, seed0 = c["signers"][0], seeds[c["signers"][0]]
        sig0 = Ed25519PrivateKey.from_private_bytes(seed0).sign(body.encode())
        rejects(f"{tag} with a bad signature", body + "\n" + sig_line(name0, public_key(seed0), flip(sig0, 5)),
                "bad signature", quorum=1)
        rejects(f"{tag} for another origin", c["signed_note"], origin=origin + "x")
        rejects(f"{tag} over 65536 bytes", c["signed_note"] + lines[0] * (65536 // len(lines[0])), "note longer")
        rejects(f"{tag} with a duplicate trusted key", c["signed_note"], "duplicate trusted key", keys=keys + keys[:1])
        for q in (0, len(keys) + 1):
            rejects(f"{tag} with quorum {q}", c["signed_note"], "quorum out of range", quorum=q)
        sig64 = lines[0].rstrip("\n").rsplit(" ", 1)[1]  # 68 bytes: one '=', two unused bits
        noncanon = sig64[:-2] + BASE64[BASE64.index(sig64[-2]) ^ 1] + "="
        rejects(f"{tag} with a non-canonical signature line", body + "\n" + lines[0].replace(sig64, noncanon),
                "non-canonical")
        rejects(f"{tag} with DEL in the body (passes the character rule)",  # then fails its signature
                body.replace("\n", "\x7f\n", 1) + "\n" + "".join(lines), "bad signature")
        trusted_signers = [s for s in c["signers"] if s != f"{origin}/node-3"]
        if len(trusted_signers) >= quorum:
            try:
                open_checkpoint(c["signed_note"], keys[:2], quorum, origin)
            except Reject as e:
                check(f"{tag} with node-3 untrusted", False, str(e))
        else:
            rejects(f"{tag} with node-3 untrusted", c["signed_note"], "quorum not met", keys=keys[:2])
    # The body rules of section 5, on the size-10 body.
    good = vec["checkpoints"][0]["body"]
    root64 = good.split("\n")[2]
    for what, bad in [("five lines", good + "extra\n"), ("no final newline", good[:-1]),
                      ("a leading zero", good.replace("\n10\n", "\n010\n")),
                      ("a signed size", good.replace("\n10\n", "\n+10\n")),
                      ("non-canonical base64", good.replace(root64, root64[:-2] + "h=")),
                      ("unpadded base64", good.replace(root64, root64[:-1])),
                      ("another keyword", good.replace("veritrail-head", "veritrail-tail")),
                      ("a double space", good.replace("veritrail-head ", "veritrail-head  "))]:
        check_rejects(f"checkpoint body with {what}", parse_checkpoint, bad)
    # Strict Ed25519: with the identity as key and R, and S = 0, a plain cofactorless check
    # accepts any message. It must be rejected.
    ident = bytes([1]) + bytes(31)
    check("small-order forgery rejected", not ed25519_verify_strict(ident, b"any", ident + bytes(32)))
    # R = [r]B + (a point of order 8), S = r + k*a for the seed 0x01..01: only a cofactored check accepts it.
    pub1 = public_key(bytes([1]) * 32)
    check("mixed-order R rejected (cofactorless equation)", not ed25519_verify_strict(pub1, b"cofactorless", bytes.fromhex(
        "6999d5cb5126005c325892f1c6eab824b310708befff12fbaf45dda050cb12f0"
        "8afcf2b0fe9a9ee4b707c7e3044ef5d1b206f285ae1f4a2f79ba1a65a2edaa07")))
    good_sig = Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).sign(b"m")
    check("S + L rejected (S must be canonical)", ed25519_verify_strict(pub1, b"m", good_sig) and not ed25519_verify_strict(
        pub1, b"m", good_sig[:32] + (int.from_bytes(good_sig[32:], "little") + L).to_bytes(32, "little")))
    group_done("keys and checkpoints: key ids, key strings, bodies, signed notes, quorum (5, 6)")
    return keys

def check_bundle(vec, keys, leaves):
    """Section 7: the bundle verifies with the trusted keys; every tampered variant fails."""
    origin, quorum, b = vec["origin"], vec["quorum"], vec["bundle"]
    text = b["text"]
    def result(text, keys=keys, quorum=quorum):
        try:
            return verify_bundle(text, keys, quorum, origin)
        except Reject as e:
            return f"rejected: {e}"
    want = (b["start"], b["count"], b["checkpoint_size"], False)
    check_eq("bundle verifies", result(text), want)
    check_eq("bundle verifies with its own keys, and says so", result(text, None, None), want[:3] + (True,))
    hdr_line, *lines = text[:-1].split("\n")
    hdr = json.loads(hdr_line)
    check_eq("bundle's own keys are the trusted keys", hdr["keys"], [k["verifier_key"] for k in vec["keys"]])
    def rebuild(h, ls): return json.dumps(h, separators=(",", ":"), ensure_ascii=False) + "\n" + "".join(l + "\n" for l in ls)
    check_eq("bundle re-serializes identically", rebuild(hdr, lines), text)  # so the variants differ only as intended
    def must_fail(what, h, ls, reason=None, keys=keys, quorum=quorum):
        check_rejects(f"bundle with {what}", verify_bundle, rebuild(h, ls), keys, quorum, origin, reason=reason)
    def with_header(hdr_text): return hdr_text + "\n" + "".join(l + "\n" for l in lines)
    for i, line in enumerate(lines):
        raw = base64.b64decode(line)
        for j in range(len(raw)):  # every byte of every entry
            must_fail(f"entry {i} byte {j} flipped", hdr, lines[:i] + [b64(flip(raw, j))] + lines[i + 1:])
        rest = lines[:i] + lines[i + 1:]
        must_fail(f"entry line {i} dropped", hdr, rest)
        must_fail(f"entry line {i} dropped and count fixed", {**hdr, "count": hdr["count"] - 1}, rest)
        for j in range(i + 1, len(lines)):
            swapped = list(lines)
            swapped[i], swapped[j] = lines[j], lines[i]
            must_fail(f"entry lines {i} and {j} swapped", hdr, swapped)
    note = hdr["checkpoint"].encode()
    for j in range(note.index(b"\n\n") + 1):  # every byte of the checkpoint body (ASCII stays ASCII)
        must_fail(f"checkpoint byte {j} flipped", {**hdr, "checkpoint": flip(note, j).decode()}, lines)
    for c in vec["checkpoints"][1:]:
        must_fail(f"the checkpoint of size {c['size']}", {**hdr, "checkpoint": c["signed_note"]}, lines)
    one_sig = hdr["checkpoint"][:hdr["checkpoint"].index("\n\n") + 2] + hdr["checkpoint"].split("\n\n")[1].split("\n")[0] + "\n"
    must_fail("a checkpoint below quorum", {**hdr, "checkpoint": one_sig}, lines)
    must_fail("left_frontier reversed", {**hdr, "left_frontier": hdr["left_frontier"][::-1]}, lines)
    must_fail("another consistency proof", {**hdr, "consistency_proof": [leaves[0].hex()]}, lines)
    must_fail("an unknown member", {**hdr, "extra": 1}, lines)
    must_fail("another origin", {**hdr, "origin": origin + "x"}, lines)
    must_fail("a trailing empty line", hdr, lines + [""])
    must_fail("an empty entry line", hdr, lines[:1] + [""] + lines[2:], "seq 4: empty line")
    must_fail("a \\r in an entry line", hdr, lines[:1] + [lines[1] + "\r"] + lines[2:], "seq 4: empty line or")
    upper = {**hdr, "left_frontier": [h.upper() for h in hdr["left_frontier"]],
             "consistency_proof": [h.upper() for h in hdr["consistency_proof"]]}
    check_eq("bundle with upper-case hex verifies", result(rebuild(upper, lines)), want)
    bad_key = {**hdr, "keys": hdr["keys"][:2] + [hdr["keys"][2].replace("+", " ", 1)]}
    check_eq("bundle's own keys are not read when keys are trusted", result(rebuild(bad_key, lines)), want)
    must_fail("a malformed key of its own, used", bad_key, lines, "malformed verifier key", keys=None)
    must_fail("an invalid quorum of its own, used", {**hdr, "quorum": 4}, lines, "quorum out of range", keys=None)
    start_json = f'"start":{hdr["start"]},'
    for what, number in [("a fraction", "3.0"), ("an exponent", "3e0"), ("minus zero", "-0"), ("2^64", str(1 << 64))]:
        bad = with_header(hdr_line.replace(start_json, f'"start":{number},'))
        check_rejects(f"bundle with {what} as start", verify_bundle, bad, keys, quorum, origin, reason="bundle header: number")
    check_rejects("bundle with a duplicate member", verify_bundle, with_header(hdr_line.replace(start_json, start_json * 2)),
                  keys, quorum, origin, reason="bundle header: duplicate member")
    check_rejects("bundle without final newline", verify_bundle, text[:-1], keys, quorum, origin)
    check_rejects("bundle against another trusted origin", verify_bundle, text, keys, quorum, origin + "x")
    group_done("bundle: section 7 verification and tampered variants (7)")

def check_key_sets(vec, keys):
    """Section 6.1: each key set's body from its keys, its signatures re-made from the seeds,
    and each verified against the keys before it (the first against the vectors' keys)."""
    origin = vec["origin"]
    seeds = {k["name"]: bytes.fromhex(k["seed_hex"]) for k in vec["keys"] + vec["key_set_extra_keys"]}
    for k in vec["key_set_extra_keys"]:
        check_eq(f"{k['name']} verifier key", verifier_key(k["name"], public_key(seeds[k["name"]])), k["verifier_key"])
    trusted, quorum = keys, vec["quorum"]
    for ks in vec["key_sets"]:
        tag = f"key set {ks['epoch']}"
        body = key_set_body(origin, ks["epoch"], ks["keys"])
        check_eq(f"{tag} body", body, ks["body"])
        lines = [sign_line(s, seeds[s], body) for s in ks["signers"]]
        check_eq(f"{tag} re-signed note", body + "\n" + "".join(lines), ks["signed_note"])
        try:
            got_origin, epoch, new_keys = parse_key_set(open_note(ks["signed_note"], trusted, quorum))
            check_eq(f"{tag} parsed", (got_origin, epoch), (origin, ks["epoch"]))
            trusted, quorum = new_keys, len(new_keys) // 2 + 1
        except Reject as e:
            check(f"{tag} verifies against the keys before it", False, str(e))
    first = vec["key_sets"][0]["body"]
    lines = first[:-1].split("\n")
    for what, bad in [("keys out of order", "\n".join(lines[:2] + [lines[3], lines[2]] + lines[4:]) + "\n"),
                      ("a key named twice", first + lines[2] + "\n"),
                      ("an upper-case key id", first.replace(lines[2], lines[2].split("+")[0] + "+"
                                                              + lines[2].split("+")[1].upper() + "+"
                                                              + "+".join(lines[2].split("+")[2:]))),
                      ("a leading zero in the epoch", first.replace("key-set 4\n", "key-set 04\n")),
                      ("no key", "\n".join(lines[:2]) + "\n"),
                      ("a checkpoint body", vec["checkpoints"][0]["body"]),
                      ("no final newline", first[:-1])]:
        check_rejects(f"key set with {what}", parse_key_set, bad)
    check_rejects("a key set read as a checkpoint", parse_checkpoint, first)
    group_done("key sets: bodies, signatures, each vouched for by the keys before it (6.1)")

# ---------------------------------------------------------------- vectors-signed.json
def check_signed_keys(vs, vec):
    """Appendix `vectors-signed.json`: vectors.json's origin; the services' keys (section 6).
    Returns the seeds by key name."""
    check_eq("signed: entry_format_versions", vs["entry_format_versions"], [1, 2])
    check_eq("signed: origin is vectors.json's", vs["origin"], vec["origin"])
    check_eq("signed: genesis hash", genesis_hash(vs["origin"]).hex(), vs["genesis_hash"])
    seeds = {}
    for k in vs["signing_keys"]:
        name, seed = k["name"], bytes.fromhex(k["seed_hex"])
        pub, tag = public_key(seed), f"signing key {k['name']}"
        check_eq(f"{tag}: public key, verifier key, signer key", (pub.hex(), verifier_key(name, pub), signer_key(name, seed, pub)),
                 (k["public_key_hex"], k["verifier_key"], k["signer_key"]))
        try:
            check_eq(f"{tag}: verifier key parses", parse_verifier_key(k["verifier_key"]), (name, key_id(name, pub), pub))
            check_eq(f"{tag}: signer key parses", parse_signer_key(k["signer_key"]), (name, key_id(name, pub), seed))
        except Reject as e:
            check(f"{tag}: key strings parse", False, str(e))
        seeds[name] = seed
    group_done("signed: origin, genesis, the services' keys (3.1, 6)")
    return seeds

def check_signed_entries(vs, seeds):
    """Sections 1.1, 2.2, 2.4: both versions encoded from their fields and decoded; statements and
    signatures re-derived; invalid inputs rejected. Returns the canonical bytes of the entries."""
    origin, raws = vs["origin"], []
    for v in vs["entries"]:
        tag, sig = f"signed entry {v['seq']}", v["signature"]
        fields, raw = entry_from_vector(v), bytes.fromhex(v["canonical_hex"])
        raws.append(raw)
        check_eq(f"{tag} version (2 exactly when signed)", (v["version"], raw[:1]),
                 (1 if sig is None else 2, bytes([1 if sig is None else 2])))
        check_eq(f"{tag} encoding", encode_entry(fields).hex(), v["canonical_hex"])
        try:
            check_eq(f"{tag} decoding", decode_entry(raw), fields)
        except Reject as e:
            check(f"{tag} decodes", False, str(e))
        st = statement(origin, fields)
        check_eq(f"{tag} statement", st.hex(), v["statement_hex"])
        start = 1 + 8 + 8 + 32 + len(string_bytes(fields["principal"]))  # field 6, where the statement's fields begin
        end = len(raw) - (0 if sig is None else 97)
        check_eq(f"{tag} statement ends with the entry's fields 6 to 15", st[-(end - start):], raw[start:end])
        if sig is None:
            check_rejects(f"{tag} followed by a signature block", decode_entry, raw + bytes([1]) + bytes(96),
                          reason="bytes remain after the payload")
            check_rejects(f"{tag} labelled version 2", decode_entry, b"\x02" + raw[1:], reason="input ends inside signature algorithm")
            continue
        seed = seeds.get(sig["key_name"])
        check(f"{tag} key_name names a signing key", seed is not None, sig["key_name"])
        if seed is not None:
            check_eq(f"{tag} public key is {sig['key_name']}'s", sig["public_key_hex"], public_key(seed).hex())
            check_eq(f"{tag} signature re-made from the seed (Ed25519 is deterministic)",
                     Ed25519PrivateKey.from_private_bytes(seed).sign(st).hex(), sig["signature_hex"])
        check(f"{tag} signature verifies for the origin (strict)", event_signature_verifies(origin, fields))
        check(f"{tag} signature does not verify for another origin", not event_signature_verifies(origin + "x", fields))
        check(f"{tag} signature does not verify over the statement without its prefix",
              not ed25519_verify_strict(fields["signature"][0], st[len(STATEMENT_PREFIX):], fields["signature"][1]))
        check_rejects(f"{tag} without its signature block", decode_entry, raw[:-97], reason="input ends inside signature algorithm")
        check_rejects(f"{tag} labelled version 1", decode_entry, b"\x01" + raw[1:], reason="bytes remain after the payload")
        check_rejects(f"{tag} with algorithm 0x00", decode_entry, raw[:-97] + b"\x00" + raw[-96:], reason="unknown signature algorithm")
        check_rejects(f"{tag} cut inside the public key", decode_entry, raw[:-70], reason="input ends inside signature public key")
    expected = [("without its signature block", "input ends inside signature algorithm"),
                ("labelled version 2", "input ends inside signature algorithm"),
                ("byte after the signature", "bytes remain after the signature"),
                ("followed by a signature block", "bytes remain after the payload"),
                ("algorithm 0x", "unknown signature algorithm"),
                ("signature one byte short", "input ends inside signature"),
                ("version 3", "unknown version")]
    for bad in vs["invalid_entries"]:
        want = next((r for words, r in expected if words in bad["reason"]), None)
        check_rejects(f"signed invalid entry '{bad['reason']}'", decode_entry, bytes.fromhex(bad["hex"]), reason=want)
    group_done("signed entries: versions 1 and 2, statements, signatures (1.1, 2.2, 2.4)")
    return raws

def check_signed_chain(vs, raws):
    """Section 3 with signatures, section 4: entry hashes, the chain from genesis, the root."""
    origin = vs["origin"]
    leaves = [entry_hash(r) for r in raws]
    for v, h in zip(vs["entries"], leaves):
        check_eq(f"signed entry {v['seq']} entry_hash", v["entry_hash"], h.hex())
    try:
        check_eq(f"signed chain 0..{len(raws) - 1}", check_chain(raws, 0, origin)[1], leaves)
    except Reject as e:
        check(f"signed chain 0..{len(raws) - 1} is valid", False, str(e))
    check_eq("signed: Merkle root of all entries", mth(leaves).hex(), vs["root"])
    first_signed = next(i for i, r in enumerate(raws) if i > 0 and r[0] == 2)
    check_rejects("signed chain from seq 1 read as another log's", check_chain, raws[1:], 1, origin + "x",
                  reason=f"seq {first_signed}: bad event signature")
    for i, raw in enumerate(raws):  # every byte an event signature covers, and the signature block
        if raw[0] != 2:
            continue
        e = decode_entry(raw)
        start = 1 + 8 + 8 + 32 + len(string_bytes(e["principal"]))
        caught = sum(1 for j in range(start, len(raw)) if rejected(check_chain, raws[:i] + [flip(raw, j)], 0, origin,
                                                                    prefix=f"seq {i}: "))
        check_eq(f"signed entry {i}: chain rejects each flipped byte from source to signature", caught, len(raw) - start)
    group_done("signed chain: entry hashes, links, timestamps, signatures, root (3, 4)")
    return leaves

def rejected(fn, *args, prefix=""):
    try:
        fn(*args)
    except Reject as e:
        return str(e).startswith(prefix)
    return False

def check_bad_signatures(vs):
    """Section 1.1: each bad signature decodes (2.4), but does not verify for the origin (strict, 6)."""
    origin = vs["origin"]
    for b in vs["bad_signatures"]:
        tag, raw = f"bad signature '{b['reason']}'", bytes.fromhex(b["canonical_hex"])
        try:
            e = decode_entry(raw)
        except Reject as err:
            check(f"{tag} decodes", False, str(err))
            continue
        check(f"{tag} is version 2", raw[0] == 2 and e["signature"] is not None)
        check(f"{tag} does not verify", not event_signature_verifies(origin, e))
        check_rejects(f"{tag} fails a chain", check_chain, [raw], e["seq"], origin, reason=f"seq {e['seq']}: bad event signature")
        if "S + L" in b["reason"] or "group order" in b["reason"]:
            pub, sig = e["signature"]
            s_val = int.from_bytes(sig[32:], "little")
            reduced = sig[:32] + (s_val % L).to_bytes(32, "little")
            check(f"{tag}: S >= L", s_val >= L)
            check(f"{tag}: with S mod L it verifies (only the S < L rule refuses it)",
                  ed25519_verify_strict(pub, statement(origin, e), reduced))
    group_done("bad signatures: decode, never verify (1.1, 6)")

def check_signer_lists(vs, vec, keys, raws, leaves, seeds):
    """Section 9, and section 7 step 5 with a signer list."""
    origin, sl = vs["origin"], vs["signer_list"]
    entries = [decode_entry(r) for r in raws]
    try:
        signers = parse_signer_list(sl["toml"])
    except Reject as e:
        check("signer list parses", False, str(e))
        group_done("signer list (9)")
        return
    pub = {name: public_key(seed) for name, seed in seeds.items()}
    check_eq("signer list read (required defaults to true)", signers,
             {"spiffe://example.org/ns/prod/sa/billing": (True, {pub["billing"]}),
              "spiffe://example.org/ns/prod/sa/iam": (False, {pub["iam"]})})
    unsatisfied = {u["seq"]: u["reason"] for u in sl["unsatisfied"]}
    check_eq("signer list: satisfied and unsatisfied name every entry once",
             sorted(sl["satisfied"] + list(unsatisfied)), list(range(len(entries))))
    expected = [("carries no signature", "unsigned"), ("registers no key", "unlisted signer"),
                ("does not register", "unregistered key")]
    for seq, e in enumerate(entries):
        if seq in sl["satisfied"]:
            try:
                check_signer_list(signers, e)
                check(f"seq {seq} satisfies the signer list", True)
            except Reject as err:
                check(f"seq {seq} satisfies the signer list", False, str(err))
        if seq in unsatisfied:
            want = next((r for words, r in expected if words in unsatisfied[seq]), None)
            check_rejects(f"seq {seq} does not satisfy the signer list ('{unsatisfied[seq]}')", check_signer_list, signers, e,
                          reason=want)
    # The list's own rules, on variants of the vectors' list.
    text = sl["toml"]
    billing_p, billing_vk = "spiffe://example.org/ns/prod/sa/billing", verifier_key("billing", pub["billing"])
    grant = '\n[[grant]]\nprincipal = "*"\nmethods = ["Append"]\n'
    check_eq("signer list with a [[grant]] table (ignored)", parse_signer_list(text + grant), signers)
    renamed = text.replace(billing_vk, verifier_key("someone-else", pub["billing"]))
    check_eq("signer list with another key name (names do not matter)", parse_signer_list(renamed), signers)
    for what, bad in [("an empty principal", text.replace(f'"{billing_p}"', '""')),
                      ("a '*' principal", text.replace(f'"{billing_p}"', '"spiffe://example.org/ns/prod/sa/*"')),
                      ("no keys", text.replace(f'["{billing_vk}"]', "[]")),
                      ("a key with a wrong id", text.replace(billing_vk, "+".join(
                          ["billing", f"{key_id('billing', pub['billing']) ^ 1:08x}", billing_vk.split("+", 2)[2]]))),
                      ("a key that is not a verifier key", text.replace(billing_vk, "billing")),
                      ("one principal twice", text + f'\n[[signer]]\nprincipal = "{billing_p}"\nkeys = ["{billing_vk}"]\n'),
                      ("required as a string", text.replace("required = false", 'required = "false"')),
                      ("not TOML", text + "[[signer\n")]:
        check_rejects(f"signer list with {what}", parse_signer_list, bad, reason="signer list")
    # Section 7 step 5: a bundle of the signed entries against a checkpoint the vectors' nodes sign here.
    n, node_seeds = len(raws), {k["name"]: bytes.fromhex(k["seed_hex"]) for k in vec["keys"]}
    body = checkpoint_body(origin, n, mth(leaves), leaves[-1], entries[-1]["timestamp_ns"])
    note = body + "\n" + "".join(sign_line(k["name"], node_seeds[k["name"]], body) for k in vec["keys"][:vec["quorum"]])
    def bundle(lines):
        hdr = {"format": "veritrail-evidence-bundle/1", "origin": origin, "start": 0, "count": len(lines), "checkpoint": note,
               "keys": [k["verifier_key"] for k in vec["keys"]], "quorum": vec["quorum"], "left_frontier": [],
               "consistency_proof": [h.hex() for h in consistency_proof(len(lines), leaves) if len(lines) < n]}
        return json.dumps(hdr, separators=(",", ":")) + "\n" + "".join(b64(r) + "\n" for r in lines)
    def result(text, signers=None):
        try:
            return verify_bundle(text, keys, vec["quorum"], origin, signers)
        except Reject as e:
            return f"rejected: {e}"
    check_eq("bundle of the signed entries verifies", result(bundle(raws)), (0, n, n, False))
    first_bad = min(unsatisfied)
    check(f"bundle of the signed entries with the signer list fails at seq {first_bad}",
          result(bundle(raws), signers).startswith(f"rejected: seq {first_bad}: "), result(bundle(raws), signers))
    check_eq(f"bundle of the signed entries [0, {first_bad}) with the signer list verifies",
             result(bundle(raws[:first_bad]), signers), (0, first_bad, n, False))
    lenient = text.replace(f'["{billing_vk}"]', f'["{billing_vk}", "{verifier_key("iam", pub["iam"])}"]\nrequired = false')
    lenient += f'\n[[signer]]\nprincipal = "spiffe://example.org/ns/prod/sa/storage"\nkeys = ["{verifier_key("stranger", pub["stranger"])}"]\nrequired = false\n'
    check_eq("bundle of the signed entries with a list they all satisfy verifies", result(bundle(raws), parse_signer_list(lenient)),
             (0, n, n, False))
    bad0 = bytes.fromhex(vs["bad_signatures"][0]["canonical_hex"])
    check(f"bundle with a bad signature at seq 0 fails there",
          result(bundle([bad0] + raws[1:])).startswith("rejected: seq 0: bad event signature"), result(bundle([bad0] + raws[1:])))
    group_done("signer list: section 9 rules, satisfied and unsatisfied seqs, bundles (7 step 5, 9)")

def main(path, signed_path=None):
    with open(path, encoding="utf-8") as f:
        vec = json.load(f)
    check_entries(vec)
    leaves = check_hashes(vec)
    roots = check_merkle(vec, leaves)
    keys = check_notes(vec, leaves, roots)
    check_key_sets(vec, keys)
    check_bundle(vec, keys, leaves)
    if signed_path is not None:
        with open(signed_path, encoding="utf-8") as f:
            vs = json.load(f)
        seeds = check_signed_keys(vs, vec)
        raws = check_signed_entries(vs, seeds)
        signed_leaves = check_signed_chain(vs, raws)
        check_bad_signatures(vs)
        check_signer_lists(vs, vec, keys, raws, signed_leaves, seeds)
    if FAILURES:
        print(f"format check: FAILED ({FAILURES} mismatches)")
        return 1
    print(f"format check: OK ({CHECKS} checks, written from docs/FORMAT.md alone)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: verify_vectors.py <vectors.json> [<vectors-signed.json>]")
    sys.exit(main(*sys.argv[1:]))

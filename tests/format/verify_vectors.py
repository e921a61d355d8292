#!/usr/bin/env python3
"""Independent verifier for Veritrail's byte formats, written from docs/FORMAT.md alone.

Usage: python3 tests/format/verify_vectors.py crates/core/testdata/vectors.json

It re-derives every value in the golden vectors (entry encodings, hashes, Merkle roots,
frontiers, proofs, keys, checkpoints, signatures, the evidence bundle) and checks that
tampered inputs are rejected. Section numbers below refer to docs/FORMAT.md.
Dependencies: Python 3.11 standard library and the `cryptography` package (Ed25519).
"""
import base64, binascii, functools, hashlib, json, re, sys
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
    """Standard padded base64; only the canonical spelling is accepted.
    ASSUMPTION: FORMAT.md demands canonical base64 only for checkpoint hashes (section 5);
    we apply it to signature lines, key strings and bundle entry lines too."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Reject("bad base64")
    if base64.b64encode(raw).decode() != s or (want_len is not None and len(raw) != want_len):
        raise Reject("non-canonical base64")
    return raw

def hex_hash(s):
    """JSON hashes are exactly 64 lowercase hex characters."""
    if not isinstance(s, str) or not re.fullmatch(r"[0-9a-f]{64}", s):
        raise Reject(f"not a lowercase hex hash: {s!r}")
    return bytes.fromhex(s)


# ---------------------------------------------------------------- section 2: entries
MAX_ENTRY, MAX_STRING, MAX_ATTRS, MAX_PAYLOAD = 4 << 20, 4096, 256, 1 << 20
STRING_FIELDS = ("principal", "source", "event_id", "actor", "action", "resource", "outcome")

def encode_entry(e):
    """Section 2.1. `e` is a dict; attributes is a list of (key, value) pairs (sorted here)."""
    out = bytearray(b"\x01" + u64(e["seq"]) + u64(e["timestamp_ns"]) + e["prev_hash"])
    def string(s):
        b = s.encode("utf-8")
        out.extend(u32(len(b)) + b)
    for f in STRING_FIELDS:
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
    def take(self, n):
        if n > len(self.data) - self.pos:
            raise Reject("input ends inside a field")
        self.pos += n
        return self.data[self.pos - n:self.pos]
    def int(self, size): return int.from_bytes(self.take(size), "big")
    def blob(self, limit, what):
        n = self.int(4)
        if n > limit:
            raise Reject(f"{what} longer than {limit} bytes")
        return self.take(n)
    def string(self, what):
        try:
            return self.blob(MAX_STRING, what).decode("utf-8")  # strict: no surrogates, no overlongs
        except UnicodeDecodeError:
            raise Reject(f"{what} is not valid UTF-8")
    def presence(self, what):
        tag = self.int(1)
        if tag > 1:
            raise Reject(f"presence tag {tag} for {what}")
        return tag == 1

def decode_entry(data):
    """Section 2.2: structural decoding only (character rules and policy limits are not checked)."""
    if len(data) > MAX_ENTRY:
        raise Reject("input longer than 4 MiB")
    r = Reader(data)
    if r.int(1) != 0x01:
        raise Reject("unknown version byte")
    e = {"seq": r.int(8), "timestamp_ns": r.int(8), "prev_hash": r.take(32)}
    for f in STRING_FIELDS:
        e[f] = r.string(f)
    e["event_time_ns"] = r.int(8) if r.presence("event_time_ns") else None
    e["trace_id"] = r.string("trace_id") if r.presence("trace_id") else None
    count = r.int(4)
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
    if r.pos != len(data):
        raise Reject("bytes remain after the payload")
    return e

def entry_from_vector(v):
    """Build the structured entry from a vector's top-level fields and its `event`."""
    ev = v["event"]
    e = {"seq": v["seq"], "timestamp_ns": v["timestamp_ns"], "prev_hash": hex_hash(v["prev_hash"]),
         "principal": v["principal"], "event_time_ns": ev["event_time_ns"], "trace_id": ev["trace_id"],
         "attributes": sorted(ev["attributes"].items(), key=lambda kv: kv[0].encode()),
         "payload": bytes.fromhex(ev["payload_hex"])}
    for f in STRING_FIELDS[1:]:
        e[f] = ev[f]
    return e


# ---------------------------------------------------------------- section 3: hashes and chain
def entry_hash(canonical): return sha256(b"\x00" + canonical)
def genesis_hash(origin): return sha256(b"veritrail/genesis/v1\n" + origin.encode("utf-8"))

def check_chain(raw_entries, start, genesis):
    """Section 3: canonical entries must decode and form a valid chain from seq `start`.
    `genesis` is the expected prev_hash of entry 0, checked only when start == 0.
    Returns (decoded entries, entry hashes). Raises Reject naming the seq concerned."""
    entries, hashes = [], []
    for i, raw in enumerate(raw_entries):
        seq = start + i
        try:
            e = decode_entry(raw)
        except Reject as err:
            raise Reject(f"seq {seq}: {err}")
        if e["seq"] != seq:
            raise Reject(f"seq {seq}: entry carries seq {e['seq']}")
        if i == 0 and seq == 0 and e["prev_hash"] != genesis:
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
    """RFC 9162 section 2.1.4.2 plus the two extra rules of section 4 (m = n, m = 0)."""
    if m > n:
        return False
    if m == n:  # ASSUMPTION (here and for m = 0): a non-empty proof is rejected, not ignored
        return not proof and root_m == root_n
    if m == 0:
        return not proof and root_m == EMPTY_ROOT  # ASSUMPTION: the size-0 root must be SHA-256("")
    if not proof:
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

def valid_key_name(name):
    # ASSUMPTION: "white space" means Unicode white space (Python str.isspace).
    return name != "" and "+" not in name and not any(c.isspace() for c in name)

def parse_verifier_key(s):
    """<name>+<8 hex>+<base64(0x01 || pub)>; split on the first two '+' only."""
    parts = s.split("+", 2)
    if len(parts) != 3 or not valid_key_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise Reject(f"malformed verifier key {s!r}")
    raw = b64_strict(parts[2])
    if len(raw) != 33 or raw[0] != 0x01:
        raise Reject("verifier key is not an Ed25519 key")
    name, kid, pub = parts[0], int(parts[1], 16), raw[1:]
    if key_id(name, pub) != kid:  # ASSUMPTION: the stated id must match the computed one
        raise Reject("verifier key id does not match its name and key")
    return name, kid, pub

# Minimal RFC 8032 point decoding, only to reject small-order points as `verify_strict` does.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P

def decode_point(enc):
    y = int.from_bytes(enc, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None  # ASSUMPTION: non-canonical point encodings (y >= p) are rejected too
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
    if len(sig) != 64 or int.from_bytes(sig[32:], "little") >= L:
        return False  # wrong length, or S not canonical
    if not strict_point(pub) or not strict_point(sig[:32]):
        return False  # OpenSSL alone accepts small-order forgeries, so this check is needed
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
    # ASSUMPTION: size and timestamp must also fit in a u64.
    if not DECIMAL_RE.fullmatch(s) or int(s) >= 1 << 64:
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

def open_checkpoint(note, keys, quorum, origin):
    """Parse a signed note, verify it strictly against `keys` [(name, id, pub)] and `quorum`,
    then parse its text as a checkpoint of `origin`. Returns the parsed checkpoint."""
    if not 1 <= quorum <= len(keys):  # ASSUMPTION: an out-of-range quorum is an error, not clamped
        raise Reject("quorum out of range")
    raw = note.encode("utf-8") if isinstance(note, str) else note
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("note is not valid UTF-8")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
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
            raise Reject(f"unknown key: {name}")
        if (name, kid) in signed:
            raise Reject(f"duplicate signature: {name}")
        if not ed25519_verify_strict(trusted[(name, kid)], body.encode(), sig):
            raise Reject(f"bad signature: {name}")
        signed.add((name, kid))
    if len(signed) < quorum:
        raise Reject(f"quorum not met: {len(signed)} of {quorum}")
    cp = parse_checkpoint(body)
    if cp["origin"] != origin:
        raise Reject("checkpoint origin is not the expected one")
    return cp


# ---------------------------------------------------------------- section 7: evidence bundle
BUNDLE_MEMBERS = {"format": str, "origin": str, "start": int, "count": int, "checkpoint": str,
                  "keys": list, "quorum": int, "left_frontier": list, "consistency_proof": list}

def no_duplicate_members(pairs):
    if len({k for k, _ in pairs}) != len(pairs):
        raise Reject("bundle header: duplicate member")  # ASSUMPTION: duplicate members are an error
    return dict(pairs)

def verify_bundle(text, keys, quorum, origin):
    """Section 7, steps 1 to 7. Returns (start, count, N) or raises Reject."""
    if not text.endswith("\n"):
        raise Reject("bundle: last line does not end in a newline")
    lines = text[:-1].split("\n")
    try:  # step 1
        hdr = json.loads(lines[0], object_pairs_hook=no_duplicate_members)
    except ValueError:
        raise Reject("bundle header: not JSON")
    if not isinstance(hdr, dict) or set(hdr) != set(BUNDLE_MEMBERS):
        raise Reject("bundle header: wrong members")
    for k, t in BUNDLE_MEMBERS.items():  # ASSUMPTION: numbers are non-negative integers (not 3.0)
        if not isinstance(hdr[k], t) or isinstance(hdr[k], bool) or (t is int and hdr[k] < 0):
            raise Reject(f"bundle header: bad type for {k}")
    if hdr["format"] != "veritrail-evidence-bundle/1" or hdr["origin"] != origin:
        raise Reject("bundle header: wrong format or origin")
    start, count = hdr["start"], hdr["count"]
    left = [hex_hash(h) for h in hdr["left_frontier"]]
    proof = [hex_hash(h) for h in hdr["consistency_proof"]]
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
        try:
            raws.append(b64_strict(line))
        except Reject as e:
            raise Reject(f"seq {start + i}: {e}")
    entries, hashes = check_chain(raws, start, genesis_hash(origin))
    frontier, size = left, start
    for h in hashes:
        frontier, size = frontier_append(frontier, size, h), size + 1
    if not verify_consistency(size, n_cp, frontier_root(frontier), cp["root"], proof):  # step 6
        raise Reject(f"seq {size - 1}: consistency proof from {size} to {n_cp} fails")
    if size == n_cp and count > 0 and (hashes[-1] != cp["head"] or entries[-1]["timestamp_ns"]
                                       != cp["timestamp_ns"]):  # step 7
        raise Reject(f"seq {size - 1}: last entry does not match the checkpoint head")
    return start, count, n_cp


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
    for bad in vec["invalid_entries"]:
        check_rejects(f"invalid entry '{bad['reason']}'", decode_entry, bytes.fromhex(bad["hex"]))
    # Rules no vector exercises: inputs at, and just past, each hard maximum.
    base = entry_from_vector(vec["entries"][1])
    def variant(**kw): return encode_entry({**base, **kw})
    for what, field, at_max, past_max in [
            ("a 4096/4097-byte string", "actor", "a" * 4096, "a" * 4097),
            ("a 1 MiB/1 MiB+1 payload", "payload", bytes(MAX_PAYLOAD), bytes(MAX_PAYLOAD + 1)),
            ("256/257 attributes", "attributes", [(f"k{i:03}", "") for i in range(256)],
             [(f"k{i:03}", "") for i in range(257)])]:
        check(f"accepts {what}", decode_entry(variant(**{field: at_max})) is not None)
        check_rejects(f"rejects {what}", decode_entry, variant(**{field: past_max}))
    # encode_entry sorts stably, so two equal keys stay adjacent: a duplicate.
    check_rejects("rejects duplicate attribute keys", decode_entry, variant(attributes=[("env", "a"), ("env", "b")]))
    canon0 = bytes.fromhex(vec["entries"][0]["canonical_hex"])
    check_rejects("rejects input over 4 MiB", decode_entry, canon0 + bytes(MAX_ENTRY))
    check_rejects("rejects a length prefix past the end", decode_entry, canon0[:-4] + u32(1))
    group_done("entries: canonical encoding and decoding (2.1, 2.2)")

def check_hashes(vec):
    """Section 3: entry/leaf hashes, genesis hash, the chain. Returns the leaf hashes."""
    check_eq("genesis hash", genesis_hash(vec["origin"]).hex(), vec["genesis_hash"])
    canon = [bytes.fromhex(v["canonical_hex"]) for v in vec["entries"]]
    leaves = [entry_hash(c) for c in canon]
    for v, h in zip(vec["entries"], leaves):
        check_eq(f"entry {v['seq']} entry_hash and leaf_hash", (v["entry_hash"], v["leaf_hash"]), (h.hex(), h.hex()))
    try:
        check_eq("chain 0..9", check_chain(canon, 0, genesis_hash(vec["origin"]))[1], leaves)
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
        rejects(f"{tag} signed by an unknown key", body + "\n" + "".join(lines) + outsider, "unknown key")
        rejects(f"{tag} with a duplicated line", body + "\n" + lines[0] + "".join(lines), "duplicate signature")
        rejects(f"{tag} below quorum", body + "\n" + "".join(lines[:quorum - 1]), "quorum not met" if quorum > 1 else None)
        name0, seed0 = c["signers"][0], seeds[c["signers"][0]]
        sig0 = Ed25519PrivateKey.from_private_bytes(seed0).sign(body.encode())
        rejects(f"{tag} with a bad signature", body + "\n" + sig_line(name0, public_key(seed0), flip(sig0, 5)),
                "bad signature", quorum=1)
        rejects(f"{tag} for another origin", c["signed_note"], origin=origin + "x")
        rejects(f"{tag} with node-3 untrusted", c["signed_note"], keys=keys[:2],
                reason="unknown key" if f"{origin}/node-3" in c["signers"] else "quorum not met")
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
    group_done("keys and checkpoints: key ids, key strings, bodies, signed notes, quorum (5, 6)")
    return keys

def check_bundle(vec, keys, leaves):
    """Section 7: the bundle verifies with the trusted keys; every tampered variant fails."""
    origin, quorum, b = vec["origin"], vec["quorum"], vec["bundle"]
    text = b["text"]
    try:
        got = verify_bundle(text, keys, quorum, origin)
        check_eq("bundle verifies", got, (b["start"], b["count"], b["checkpoint_size"]))
    except Reject as e:
        check("bundle verifies", False, str(e))
    hdr_line, *lines = text[:-1].split("\n")
    hdr = json.loads(hdr_line)
    check_eq("bundle's own keys are the trusted keys", hdr["keys"], [k["verifier_key"] for k in vec["keys"]])
    def rebuild(h, ls): return json.dumps(h, separators=(",", ":"), ensure_ascii=False) + "\n" + "".join(l + "\n" for l in ls)
    check_eq("bundle re-serializes identically", rebuild(hdr, lines), text)  # so the variants differ only as intended
    def must_fail(what, h, ls):
        check_rejects(f"bundle with {what}", verify_bundle, rebuild(h, ls), keys, quorum, origin)
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
    check_rejects("bundle without final newline", verify_bundle, text[:-1], keys, quorum, origin)
    check_rejects("bundle against another trusted origin", verify_bundle, text, keys, quorum, origin + "x")
    group_done("bundle: section 7 verification and tampered variants (7)")

def main(path):
    with open(path, encoding="utf-8") as f:
        vec = json.load(f)
    check_entries(vec)
    leaves = check_hashes(vec)
    roots = check_merkle(vec, leaves)
    keys = check_notes(vec, leaves, roots)
    check_bundle(vec, keys, leaves)
    if FAILURES:
        print(f"format check: FAILED ({FAILURES} mismatches)")
        return 1
    print(f"format check: OK ({CHECKS} checks, written from docs/FORMAT.md alone)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: verify_vectors.py <vectors.json>")
    sys.exit(main(sys.argv[1]))

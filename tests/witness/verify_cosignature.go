// verify_cosignature checks a checkpoint that carries a witness's
// cosignature, with Go's golang.org/x/mod/sumdb/note and a cosignature/v1
// verifier written here from C2SP tlog-cosignature alone (Go's note package
// knows Ed25519 note keys, type 0x01, not cosignatures, type 0x04).
//
//	verify_cosignature -note FILE -log-keys FILE -log-quorum N -witness VKEY
//
// It prints "OK: <log signatures> log signatures, cosigned by <name> at <time>"
// and exits 0, or prints "FAIL: <why>" and exits 1.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// cosigner verifies tlog-cosignature/v1 signatures of one witness.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PublicKey
	// The timestamp of the last signature that verified.
	time uint64
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }

// Verify checks sig = u64 timestamp || Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" followed by the note text.
func (c *cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	signed := append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), msg...)
	if !ed25519.Verify(c.key, signed, sig[8:]) {
		return false
	}
	c.time = t
	return true
}

// parseWitnessKey reads "<name>+<hex key hash>+<base64(0x04 || key)>".
func parseWitnessKey(vkey string) (*cosigner, error) {
	name, rest, ok := strings.Cut(vkey, "+")
	if !ok {
		return nil, errors.New("expected name+hash+key")
	}
	hashHex, keyB64, ok := strings.Cut(rest, "+")
	if !ok {
		return nil, errors.New("expected name+hash+key")
	}
	raw, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return nil, errors.New("the key must be base64 of 0x04 and 32 bytes")
	}
	sum := sha256.Sum256(append([]byte(name+"\n"), raw...))
	hash := binary.BigEndian.Uint32(sum[:4])
	if fmt.Sprintf("%08x", hash) != hashHex {
		return nil, errors.New("the key hash does not match the name and key")
	}
	return &cosigner{name: name, hash: hash, key: ed25519.PublicKey(raw[1:])}, nil
}

func main() {
	notePath := flag.String("note", "", "the checkpoint with its signatures and cosignatures")
	logKeys := flag.String("log-keys", "", "the log's verifier keys, one per line")
	quorum := flag.Int("log-quorum", 1, "log signatures the checkpoint needs")
	witnessKey := flag.String("witness", "", "the witness's verifier key")
	flag.Parse()

	msg, err := os.ReadFile(*notePath)
	if err != nil {
		fail("%v", err)
	}
	keysText, err := os.ReadFile(*logKeys)
	if err != nil {
		fail("%v", err)
	}
	var verifiers []note.Verifier
	logNames := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(keysText)), "\n") {
		v, err := note.NewVerifier(strings.TrimSpace(line))
		if err != nil {
			fail("log key %q: %v", line, err)
		}
		verifiers = append(verifiers, v)
		logNames[v.Name()] = true
	}
	witness, err := parseWitnessKey(*witnessKey)
	if err != nil {
		fail("witness key: %v", err)
	}
	verifiers = append(verifiers, witness)

	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("note.Open: %v", err)
	}
	logSigs, cosigned := 0, false
	for _, sig := range n.Sigs {
		switch {
		case sig.Name == witness.name && sig.Hash == witness.hash:
			cosigned = true
		case logNames[sig.Name]:
			logSigs++
		}
	}
	if logSigs < *quorum {
		fail("%d log signatures verified; the quorum is %d", logSigs, *quorum)
	}
	if !cosigned {
		fail("no cosignature by %s verified", witness.name)
	}
	fmt.Printf("OK: %d log signatures, cosigned by %s at %d\n", logSigs, witness.name, witness.time)
}

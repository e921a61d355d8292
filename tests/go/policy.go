// policy.go: what the Go checks of Veritrail's outputs share, written from
// the C2SP specs alone: a tlog-cosignature/v1 verifier for Go's
// golang.org/x/mod/sumdb/note, and a tlog-policy reader with Veritrail's
// reading of it (docs/FORMAT.md section 13: the log lines are one log's
// voters, `log-quorum` of whom must sign; `origin` names the log). Built
// together with verify_cosignature.go or verify_tiles.go.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

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

// trustPolicy is a parsed policy file.
type trustPolicy struct {
	logs      []note.Verifier
	logQuorum int
	witnesses map[string]*cosigner
	// groups: name -> threshold and members (witness or group names)
	groups map[string]group
	quorum string // "none", a witness or a group
}

type group struct {
	k       int
	members []string
}

// readPolicy parses a policy file: log, log-quorum, origin, witness, group
// and quorum lines, names defined before use.
func readPolicy(path string) (*trustPolicy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &trustPolicy{witnesses: map[string]*cosigner{}, groups: map[string]group{}}
	defined := func(name string) bool {
		_, w := p.witnesses[name]
		_, g := p.groups[name]
		return w || g
	}
	for i, line := range strings.Split(string(data), "\n") {
		words := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		bad := func(why string) error { return fmt.Errorf("policy line %d: %s", i+1, why) }
		switch words[0] {
		case "log":
			if len(words) < 2 || len(words) > 3 {
				return nil, bad("log <vkey> [url]")
			}
			v, err := note.NewVerifier(words[1])
			if err != nil {
				return nil, bad(err.Error())
			}
			p.logs = append(p.logs, v)
		case "log-quorum":
			k, err := strconv.Atoi(words[len(words)-1])
			if len(words) != 2 || err != nil || k < 1 {
				return nil, bad("log-quorum <k>")
			}
			p.logQuorum = k
		case "origin":
		case "witness":
			if len(words) < 3 || len(words) > 4 || defined(words[1]) || words[1] == "none" {
				return nil, bad("witness <new name> <vkey> [url]")
			}
			c, err := parseWitnessKey(words[2])
			if err != nil {
				return nil, bad(err.Error())
			}
			p.witnesses[words[1]] = c
		case "group":
			if len(words) < 4 || defined(words[1]) || words[1] == "none" {
				return nil, bad("group <new name> <all|any|k> <name>...")
			}
			members := words[3:]
			k := 0
			switch words[2] {
			case "all":
				k = len(members)
			case "any":
				k = 1
			default:
				k, err = strconv.Atoi(words[2])
				if err != nil || k < 1 || k > len(members) {
					return nil, bad("threshold " + words[2])
				}
			}
			for _, m := range members {
				if !defined(m) {
					return nil, bad(m + " is not defined above")
				}
			}
			p.groups[words[1]] = group{k: k, members: members}
		case "quorum":
			if len(words) != 2 || p.quorum != "" || (words[1] != "none" && !defined(words[1])) {
				return nil, bad("one quorum <name|none>, the name defined above")
			}
			p.quorum = words[1]
		default:
			return nil, bad("unknown keyword " + words[0])
		}
	}
	if p.quorum == "" || len(p.logs) == 0 {
		return nil, errors.New("a policy needs log lines and a quorum line")
	}
	if p.logQuorum == 0 {
		p.logQuorum = len(p.logs)/2 + 1
	}
	if p.logQuorum > len(p.logs) {
		return nil, errors.New("log-quorum exceeds the log keys")
	}
	return p, nil
}

// verifiers are the log's and the witnesses' keys, for note.Open.
func (p *trustPolicy) verifiers() []note.Verifier {
	vs := append([]note.Verifier{}, p.logs...)
	for _, c := range p.witnesses {
		vs = append(vs, c)
	}
	return vs
}

// check demands, of a note opened with p.verifiers(), log-quorum voter
// signatures and the witness quorum; it returns how many voters signed.
func (p *trustPolicy) check(n *note.Note) (int, error) {
	voters, cosigned := 0, map[string]bool{}
	for _, sig := range n.Sigs {
		for _, v := range p.logs {
			if v.Name() == sig.Name && v.KeyHash() == sig.Hash {
				voters++
			}
		}
		for name, c := range p.witnesses {
			if c.name == sig.Name && c.hash == sig.Hash {
				cosigned[name] = true
			}
		}
	}
	if voters < p.logQuorum {
		return voters, fmt.Errorf("%d voter signatures, log-quorum %d", voters, p.logQuorum)
	}
	var witnessed func(name string) bool
	witnessed = func(name string) bool {
		if _, ok := p.witnesses[name]; ok {
			return cosigned[name]
		}
		g := p.groups[name]
		met := 0
		for _, m := range g.members {
			if witnessed(m) {
				met++
			}
		}
		return met >= g.k
	}
	if p.quorum != "none" && !witnessed(p.quorum) {
		return voters, fmt.Errorf("the witness quorum %s is not met", p.quorum)
	}
	return voters, nil
}

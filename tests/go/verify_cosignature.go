// verify_cosignature checks a checkpoint that carries a witness's
// cosignature, with Go's golang.org/x/mod/sumdb/note and the cosignature/v1
// verifier of policy.go, written from C2SP tlog-cosignature alone (Go's note
// package knows Ed25519 note keys, type 0x01, not cosignatures, type 0x04).
// Built together with policy.go.
//
//	verify_cosignature -note FILE -log-keys FILE -log-quorum N -witness VKEY
//
// It prints "OK: <log signatures> log signatures, cosigned by <name> at <time>"
// and exits 0, or prints "FAIL: <why>" and exits 1.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...any) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
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

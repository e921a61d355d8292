// verify_tiles checks a Veritrail node's tlog-tiles read path with Go's own
// transparency-log code (golang.org/x/mod/sumdb/tlog and sumdb/note), as an
// outside auditor would: nothing here is Veritrail's.
//
// It fetches the checkpoint, opens it with the nodes' verifier keys (a
// quorum must have signed), reads hash tiles through tlog.TileHashReader
// (which checks every tile against the signed root), recomputes the root,
// proves and checks inclusion of the given entries (their leaf hashes
// recomputed from the canonical bytes) and consistency with an older
// checkpoint, reads entry bundles and checks every entry in them against its
// leaf, and probes paths for the HTTP status they must get.
//
// Build: GO111MODULE=off GOPATH=/usr/share/gocode go build verify_tiles.go
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type tileReader struct {
	client *http.Client
	base   string
	static bool
}

func (r *tileReader) Height() int { return 8 }

// C2SP tlog-tiles paths have no height element: tile/<L>/<N>[.p/<W>].
func c2spPath(t tlog.Tile) string {
	return strings.Replace(t.Path(), "tile/8/", "tile/", 1)
}

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		body, resp, err := get(r.client, r.base+"/"+c2spPath(t))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: HTTP %d: %s", c2spPath(t), resp.StatusCode, body)
		}
		if t.W == 256 && !r.static && !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			return nil, fmt.Errorf("%s: a full tile not marked immutable", c2spPath(t))
		}
		out[i] = body
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func get(client *http.Client, url string) ([]byte, *http.Response, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return body, resp, err
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	base := flag.String("url", "", "the tiles base URL")
	caFile := flag.String("ca", "", "CA certificate (PEM)")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	keysFile := flag.String("keys", "", "verifier keys, one per line")
	quorum := flag.Int("quorum", 2, "signatures needed")
	origin := flag.String("origin", "", "the log's origin")
	entries := flag.String("entries", "", "index:canonical-hex,... entries to prove")
	old := flag.String("old", "", "size:root-base64 of an older checkpoint")
	probes := flag.String("probes", "", "path=status,... paths to probe")
	bundles := flag.String("bundles", "", "index,... entries to read from entry bundles and prove")
	proofFile := flag.String("tlog-proof", "", "a c2sp.org/tlog-proof@v1 file to check offline")
	policyFile := flag.String("policy", "", "a trust policy (tlog-policy, policy.go) instead of -keys and -quorum")
	flag.Parse()

	config := &tls.Config{}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fail("%v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		config.RootCAs = pool
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fail("%v", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	transport := &http.Transport{TLSClientConfig: config, ForceAttemptHTTP2: true}
	// -url=file:///DIR reads a directory written by `veritrail export-tiles`,
	// as a static web server would serve it.
	transport.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
	client := &http.Client{Transport: transport}
	static := strings.HasPrefix(*base, "file:")

	for _, probe := range splitList(*probes) {
		path, want, _ := strings.Cut(probe, "=")
		body, resp, err := get(client, *base+"/"+path)
		if err != nil {
			fail("probe %s: %v", path, err)
		}
		if strconv.Itoa(resp.StatusCode) != want {
			fail("probe %s: HTTP %d, want %s: %s", path, resp.StatusCode, want, body)
		}
		fmt.Printf("probe %s: HTTP %s\n", path, want)
	}
	if *keysFile == "" && *policyFile == "" {
		return
	}

	var verifiers []note.Verifier
	if *policyFile != "" {
		p, err := readPolicy(*policyFile)
		if err != nil {
			fail("%v", err)
		}
		activePolicy = p
		verifiers = p.verifiers()
	} else {
		keyText, err := os.ReadFile(*keysFile)
		if err != nil {
			fail("%v", err)
		}
		for _, line := range splitLines(string(keyText)) {
			v, err := note.NewVerifier(line)
			if err != nil {
				fail("verifier key %q: %v", line, err)
			}
			verifiers = append(verifiers, v)
		}
	}
	if *proofFile != "" {
		checkTlogProof(*proofFile, verifiers, *quorum, *origin)
		return
	}
	msg, resp, err := get(client, *base+"/checkpoint")
	if err != nil || resp.StatusCode != 200 {
		fail("checkpoint: %v %v %s", err, resp, msg)
	}
	size, root, signers := openCheckpoint(msg, verifiers, *quorum, *origin)
	fmt.Printf("checkpoint: size %d signed by %d keys\n", size, signers)

	tree := tlog.Tree{N: size, Hash: root}
	hashes := tlog.TileHashReader(tree, &tileReader{client: client, base: *base, static: static})
	computed, err := tlog.TreeHash(size, hashes)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if computed != root {
		fail("tree hash %v, the checkpoint signs %v", computed, root)
	}
	fmt.Printf("root: recomputed from tiles\n")

	for _, item := range splitList(*entries) {
		idx, data, _ := strings.Cut(item, ":")
		index, err := strconv.ParseInt(idx, 10, 64)
		if err != nil {
			fail("entry index %q", idx)
		}
		canonical, err := hex.DecodeString(data)
		if err != nil {
			fail("entry %d: %v", index, err)
		}
		proof, err := tlog.ProveRecord(size, index, hashes)
		if err != nil {
			fail("prove entry %d: %v", index, err)
		}
		if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(canonical)); err != nil {
			fail("entry %d not in the tree: %v", index, err)
		}
		fmt.Printf("inclusion: entry %d\n", index)
	}
	// Entries from entry bundles: every entry of the bundle must hash to its
	// leaf in the level-0 tile (read through TileHashReader, so checked
	// against the signed root), and the wanted one is proved as well.
	for _, item := range splitList(*bundles) {
		index, err := strconv.ParseInt(item, 10, 64)
		if err != nil || index < 0 || index >= size {
			fail("bundle entry %q of a tree of %d", item, size)
		}
		tile := tlog.Tile{H: 8, L: 0, N: index / 256, W: 256}
		if left := size - tile.N*256; left < 256 {
			tile.W = int(left)
		}
		path := strings.Replace(tile.Path(), "tile/8/0/", "tile/entries/", 1)
		body, resp, err := get(client, *base+"/"+path)
		if err != nil || resp.StatusCode != 200 {
			fail("%s: %v %v %s", path, err, resp, body)
		}
		if tile.W == 256 && !static && !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			fail("%s: a full bundle not marked immutable", path)
		}
		// Go's transport asks for gzip and undoes it; the spec asks logs to
		// compress bundles.
		if !static && !resp.Uncompressed {
			fail("%s: the bundle was not sent compressed", path)
		}
		var records [][]byte
		for len(body) > 0 {
			if len(body) < 2 {
				fail("%s: a length prefix cut short", path)
			}
			n := int(body[0])<<8 | int(body[1])
			if len(body) < 2+n {
				fail("%s: entry %d cut short", path, len(records))
			}
			records = append(records, body[2:2+n])
			body = body[2+n:]
		}
		if len(records) != tile.W {
			fail("%s: %d entries, want %d", path, len(records), tile.W)
		}
		for k, record := range records {
			at := tile.N*256 + int64(k)
			leaf, err := hashes.ReadHashes([]int64{tlog.StoredHashIndex(0, at)})
			if err != nil {
				fail("%s: leaf %d: %v", path, at, err)
			}
			if tlog.RecordHash(record) != leaf[0] {
				fail("%s: entry %d does not hash to its leaf", path, at)
			}
		}
		proof, err := tlog.ProveRecord(size, index, hashes)
		if err != nil {
			fail("prove entry %d: %v", index, err)
		}
		if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(records[index-tile.N*256])); err != nil {
			fail("bundle entry %d not in the tree: %v", index, err)
		}
		fmt.Printf("bundle: %s, %d entries on their leaves; entry %d proved\n", path, len(records), index)
	}
	if *old != "" {
		oldSize, oldRoot, _ := strings.Cut(*old, ":")
		m, err := strconv.ParseInt(oldSize, 10, 64)
		if err != nil {
			fail("old size %q", oldSize)
		}
		raw, err := base64.StdEncoding.DecodeString(oldRoot)
		if err != nil || len(raw) != 32 {
			fail("old root %q", oldRoot)
		}
		var oldHash tlog.Hash
		copy(oldHash[:], raw)
		proof, err := tlog.ProveTree(size, m, hashes)
		if err != nil {
			fail("prove consistency: %v", err)
		}
		if err := tlog.CheckTree(proof, size, root, m, oldHash); err != nil {
			fail("size %d is not consistent with size %d: %v", size, m, err)
		}
		fmt.Printf("consistency: %d -> %d\n", m, size)
	}
	fmt.Println("OK")
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func splitLines(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// checkTlogProof checks a tlog-proof as its specification (c2sp.org/tlog-proof)
// lays it out, offline: the checkpoint opened with the given keys, and the
// inclusion of the record hash of the extra data (Veritrail puts the entry's
// canonical bytes there) at the index.
func checkTlogProof(path string, verifiers []note.Verifier, quorum int, origin string) {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	head, checkpoint, ok := strings.Cut(string(data), "\n\n")
	if !ok {
		fail("tlog-proof: no empty line before the checkpoint")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		fail("tlog-proof: first line %q", lines[0])
	}
	lines = lines[1:]
	var extra []byte
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err = base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil {
			fail("tlog-proof: extra: %v", err)
		}
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("tlog-proof: no index line")
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil {
		fail("tlog-proof: index: %v", err)
	}
	var proof tlog.RecordProof
	for _, line := range lines[1:] {
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(raw) != 32 {
			fail("tlog-proof: proof line %q", line)
		}
		var h tlog.Hash
		copy(h[:], raw)
		proof = append(proof, h)
	}
	size, root, signers := openCheckpoint([]byte(checkpoint), verifiers, quorum, origin)
	if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(extra)); err != nil {
		fail("tlog-proof: entry %d not in the tree of size %d: %v", index, size, err)
	}
	fmt.Printf("tlog-proof: entry %d in the tree of size %d, signed by %d keys\n", index, size, signers)
	fmt.Println("OK")
}

// openCheckpoint opens a signed checkpoint with the given keys, demands a
// quorum of them and the origin, and returns its size, its root and how
// many known keys signed it.
func openCheckpoint(msg []byte, verifiers []note.Verifier, quorum int, origin string) (int64, tlog.Hash, int) {
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("checkpoint signatures: %v", err)
	}
	signers := len(n.Sigs)
	if activePolicy != nil {
		signers, err = activePolicy.check(n)
		if err != nil {
			fail("checkpoint: %v", err)
		}
	} else if signers < quorum {
		fail("checkpoint signed by %d known keys, quorum %d", signers, quorum)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != origin {
		fail("checkpoint text %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size %q", lines[1])
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != 32 {
		fail("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	return size, root, signers
}

// activePolicy, when -policy is given, decides which signatures a checkpoint
// needs.
var activePolicy *trustPolicy

//! The tlog-tiles read path, checked by an outside implementation: Go's
//! `golang.org/x/mod/sumdb/tlog` and `sumdb/note` (`tests/go/verify_tiles.go`,
//! built here with Debian's Go and `golang-golang-x-mod-dev`) fetch the
//! checkpoint, hash tiles and entry bundles from a running node over TLS,
//! open the checkpoint with the nodes' keys, recompute the root, check every
//! bundled entry against its leaf, and check inclusion and consistency proofs
//! built from the tiles alone; the same client reads a directory written by
//! `veritrail export-tiles` and checks a C2SP tlog-proof file offline
//! (issue #19).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use veritrail_tests::{Cluster, ClusterOptions, ORIGIN, sdk_event, wait_for};

/// Builds the Go verifier into `dir`; `None` (said loudly) where there is no
/// Go toolchain with `golang.org/x/mod`.
fn build_go_verifier(dir: &Path) -> Option<PathBuf> {
    veritrail_tests::build_go_program(&["go/verify_tiles.go", "go/policy.go"], dir)
}

/// Runs the verifier: whether it passed, and what it said.
fn run_verifier(binary: &Path, args: &[String]) -> (bool, String) {
    let out = Command::new(binary).args(args).output().expect("run");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// Runs the verifier; its output, or a panic with it when it failed.
fn run(binary: &Path, args: &[String]) -> String {
    let (passed, said) = run_verifier(binary, args);
    assert!(passed, "verify_tiles {args:?}:\n{said}");
    said
}

/// Runs the verifier, which must fail; its output.
fn run_expecting_failure(binary: &Path, args: &[String]) -> String {
    let (passed, said) = run_verifier(binary, args);
    assert!(!passed, "verify_tiles {args:?} passed:\n{said}");
    said
}

/// Appends `n` events, in batches, and waits for a checkpoint covering
/// them all; returns that checkpoint's size and root (base64).
async fn grow(cluster: &Cluster, from: usize, n: usize) -> (u64, String) {
    let client = cluster.sdk();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(100) {
        let events = chunk
            .iter()
            .map(|i| sdk_event("tiles", &format!("e-{i}")))
            .collect();
        client.append_batch(events).await.expect("append");
    }
    let size = (from + n) as u64;
    wait_for(
        Duration::from_secs(30),
        "a checkpoint over the log",
        || async {
            let checkpoint = client.checkpoint(None).await.ok()?;
            (checkpoint.tree_size == size).then(|| (size, checkpoint.root.to_base64()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_s_tlog_client_verifies_the_tiles_a_node_serves() {
    let dir = tempfile::TempDir::new().expect("dir");
    let Some(verifier) = build_go_verifier(dir.path()) else {
        return;
    };
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            tiles: Some(false),
            ..ClusterOptions::default()
        },
    )
    .await;
    // 300 entries, then 700 more: full and partial tiles at level 0, a
    // partial one at level 1, and a proof between two checkpoints.
    let (old_size, old_root) = grow(&cluster, 0, 300).await;
    let keys = cluster.voter_keys().await;
    let keys_file = dir.path().join("keys.txt");
    std::fs::write(&keys_file, keys.join("\n")).expect("keys");
    // `veritrail export-tiles` writes the same tree to a directory: first at
    // 300 entries, then brought up to 1000 below.
    let exported = dir.path().join("export");
    let said = export_tiles(&cluster, &exported, &keys_file).await;
    assert!(said.contains("exported 300 entries"), "{said}");
    let (size, root) = grow(&cluster, 300, 700).await;
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.client("auditor");
    let client = cluster.sdk();
    let mut entries = Vec::new();
    for seq in [0, 255, 256, 511, 999] {
        let entry = client.get(seq).await.expect("entry");
        let hex: String = entry.canonical.iter().map(|b| format!("{b:02x}")).collect();
        entries.push(format!("{seq}:{hex}"));
    }
    let url = format!(
        "https://{}",
        cluster.nodes[1].tiles_addr.as_ref().expect("tiles")
    );
    let path = |p: &Path| p.display().to_string();
    let credentials = vec![
        format!("-url={url}"),
        format!("-ca={}", path(&pki.ca())),
        format!("-cert={}", path(&cert)),
        format!("-key={}", path(&key)),
    ];
    // What the Go client checks, from the node and from an exported
    // directory alike.
    let checks = vec![
        format!("-keys={}", path(&keys_file)),
        "-quorum=2".into(),
        format!("-origin={ORIGIN}"),
        format!("-entries={}", entries.join(",")),
        "-bundles=0,300,999".into(),
        format!("-old={old_size}:{old_root}"),
    ];
    let said = run(&verifier, &[credentials.clone(), checks.clone()].concat());
    for line in [
        &format!("checkpoint: size {size} signed by 3 keys") as &str,
        "root: recomputed from tiles",
        "inclusion: entry 999",
        "bundle: tile/entries/000, 256 entries on their leaves; entry 0 proved",
        "bundle: tile/entries/001, 256 entries on their leaves; entry 300 proved",
        "bundle: tile/entries/003.p/232, 232 entries on their leaves; entry 999 proved",
        &format!("consistency: {old_size} -> {size}"),
        "OK",
    ] {
        assert!(said.contains(line), "{line:?} missing:\n{said}");
    }

    // What is not there, or not spelt the spec's way, or not asked by a
    // known caller, is refused with the status that says so.
    run(
        &verifier,
        &[
            credentials.clone(),
            vec![format!(
                "-probes={}",
                [
                    "tile/0/002=200",
                    "tile/0/003=404", // entries 768 to 1023: 1000 are held
                    "tile/0/003.p/232=200",
                    "tile/0/003.p/233=404",
                    "tile/0/004=404",
                    "tile/1/000.p/3=200",
                    "tile/1/000=404",
                    "tile/0/3=400",
                    "tile/0/x000/003=400",
                    "tile/entries/003=404",
                    "tile/entries/003.p/233=404",
                    "tile/entries/3=400",
                    "tile/entries/003.p/0=400",
                ]
                .join(",")
            )],
        ]
        .concat(),
    );
    run(
        &verifier,
        &[
            format!("-url={url}"),
            format!("-ca={}", path(&pki.ca())),
            "-probes=checkpoint=401,tile/0/000=401,tile/entries/000=401".into(),
        ],
    );

    // The directory, brought up to date, read by the same Go client as a
    // static web server would serve it.
    let said = export_tiles(&cluster, &exported, &keys_file).await;
    assert!(
        said.contains(&format!("exported {size} entries")) && said.contains("(300 before;"),
        "{said}"
    );
    let from_dir = [vec![format!("-url=file://{}", path(&exported))], checks].concat();
    let said = run(&verifier, &from_dir);
    for line in [
        &format!("checkpoint: size {size} signed by 3 keys") as &str,
        "root: recomputed from tiles",
        "bundle: tile/entries/003.p/232, 232 entries on their leaves; entry 999 proved",
        &format!("consistency: {old_size} -> {size}"),
        "OK",
    ] {
        assert!(said.contains(line), "export: {line:?} missing:\n{said}");
    }
    // A directory whose checkpoint the trusted keys did not sign (here, one
    // with its root altered) is refused, and left as it was.
    let forged = dir.path().join("forged");
    std::fs::create_dir_all(&forged).expect("dir");
    let note = std::fs::read_to_string(exported.join("checkpoint")).expect("checkpoint");
    let mut lines: Vec<&str> = note.lines().collect();
    let other_root = veritrail_core::Hash::default().to_base64();
    lines[2] = &other_root;
    let forged_note = lines.join("\n") + "\n";
    std::fs::write(forged.join("checkpoint"), &forged_note).expect("write");
    let refused = export_tiles_output(&cluster, &forged, &keys_file).await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("does not verify"), "{why}");
    assert_eq!(
        std::fs::read_to_string(forged.join("checkpoint")).expect("read"),
        forged_note
    );
    assert!(
        !forged.join("tile").exists(),
        "tiles written into a refused directory"
    );

    // One entry's proof as a C2SP tlog-proof file: checked offline by Go's
    // sumdb code (from the specification's layout) and by `verify-proof`;
    // with its entry altered, refused by both.
    let proof_file = dir.path().join("entry-256.tlog-proof");
    let keys_arg = format!("--keys=@{}", path(&keys_file));
    let wrote = cli(
        &cluster,
        &[
            "proof".into(),
            "inclusion".into(),
            "--seq=256".into(),
            keys_arg.clone(),
            format!("--tlog-proof={}", path(&proof_file)),
        ],
    )
    .await;
    assert!(wrote.status.success(), "{wrote:?}");
    let text = std::fs::read_to_string(&proof_file).expect("the proof file");
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let offline = [
        format!("-keys={}", path(&keys_file)),
        "-quorum=2".into(),
        format!("-origin={ORIGIN}"),
    ];
    let said = run(
        &verifier,
        &[
            offline.to_vec(),
            vec![format!("-tlog-proof={}", path(&proof_file))],
        ]
        .concat(),
    );
    assert!(
        said.contains(&format!(
            "tlog-proof: entry 256 in the tree of size {size}, signed by 3 keys"
        )),
        "{said}"
    );
    let checked = cli(
        &cluster,
        &["verify-proof".into(), path(&proof_file), keys_arg.clone()],
    )
    .await;
    assert!(checked.status.success(), "{checked:?}");
    // The entry altered: its event id e-256 becomes e-257, base64 and all.
    let altered_file = dir.path().join("altered.tlog-proof");
    let (head, rest) = text.split_once("\nindex").expect("layout");
    let extra = head
        .strip_prefix("c2sp.org/tlog-proof@v1\nextra ")
        .expect("extra");
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut canonical = engine.decode(extra).expect("base64");
    let at = canonical
        .windows(5)
        .position(|w| w == b"e-256")
        .expect("the event id in the entry");
    canonical[at + 4] = b'7';
    std::fs::write(
        &altered_file,
        format!(
            "c2sp.org/tlog-proof@v1\nextra {}\nindex{rest}",
            engine.encode(&canonical)
        ),
    )
    .expect("write");
    let refused = run_expecting_failure(
        &verifier,
        &[
            offline.to_vec(),
            vec![format!("-tlog-proof={}", path(&altered_file))],
        ]
        .concat(),
    );
    assert!(refused.contains("not in the tree"), "{refused}");
    let refused = cli(
        &cluster,
        &["verify-proof".into(), path(&altered_file), keys_arg],
    )
    .await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not in the signed tree"),
        "{refused:?}"
    );

    // An entry too long for the bundle's 16-bit length prefix: its bundle is
    // refused by name rather than cut short (a cut entry would not hash to
    // its leaf); the bundle before it is still served.
    let mut long = sdk_event("tiles", "long");
    long.payload = vec![b'x'; 65_536];
    let seq = client.append(long).await.expect("append a long entry").seq;
    assert_eq!(seq, 1000);
    // Acknowledged means a majority holds it: the node probed may still be
    // applying it.
    cluster.wait_for_size(1001).await;
    run(
        &verifier,
        &[
            credentials,
            vec![format!(
                "-probes={}",
                [
                    "tile/entries/003.p/233=501",
                    "tile/entries/003.p/232=200",
                    "tile/0/003.p/233=200",
                ]
                .join(",")
            )],
        ]
        .concat(),
    );
    // The export leaves that bundle out and says so; the rest still checks.
    wait_for(
        Duration::from_secs(30),
        "a checkpoint over the long entry",
        || async { (client.checkpoint(None).await.ok()?.tree_size == 1001).then_some(()) },
    )
    .await;
    let said = export_tiles(&cluster, &exported, &keys_file).await;
    assert!(
        said.contains("entry bundle 3 not written: entry 1000 is"),
        "{said}"
    );
    assert!(exported.join("tile/0/003.p/233").exists());
    assert!(!exported.join("tile/entries/003.p/233").exists());
    let said = run(
        &verifier,
        &[
            from_dir[..4].to_vec(),
            vec!["-bundles=0,300".into(), format!("-old={size}:{root}")],
        ]
        .concat(),
    );
    assert!(
        said.contains("checkpoint: size 1001 signed by 3 keys"),
        "{said}"
    );
}

/// Runs `veritrail export-tiles DIR --keys @KEYS` against the cluster.
async fn export_tiles_output(cluster: &Cluster, dir: &Path, keys: &Path) -> std::process::Output {
    cli(
        cluster,
        &[
            "export-tiles".into(),
            dir.display().to_string(),
            format!("--keys=@{}", keys.display()),
        ],
    )
    .await
}

/// Runs the `veritrail` CLI with `args` against the cluster.
async fn cli(cluster: &Cluster, args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    veritrail_tests::run_cli(&cluster.cli_env(), &args, None).await
}

/// As [`export_tiles_output`], which must succeed: its stdout and stderr.
async fn export_tiles(cluster: &Cluster, dir: &Path, keys: &Path) -> String {
    let output = export_tiles_output(cluster, dir, keys).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "export-tiles failed: {said}");
    said
}

/// A TLS connection to node `i`'s tiles port speaking HTTP/1.1, without a
/// client certificate (the port is anonymous here).
async fn tiles_connection(
    cluster: &Cluster,
    i: usize,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = cluster
        .pki
        .as_ref()
        .expect("TLS")
        .raw_tls_connector(b"http/1.1");
    let addr = cluster.nodes[i].tiles_addr.as_ref().expect("tiles");
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    connector.connect(name, tcp).await
}

/// Reads from `conn` until the peer ends it; `false` when it is still open
/// after `within`.
async fn closed_within(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    within: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;

    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        // End of stream, or an error for a close without close_notify.
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok()
}

/// The tiles port holds at most `tiles.max_connections` connections: one
/// more is closed at once, before its TLS handshake. A connection with no
/// request open for `grpc.idle_timeout_ms` is closed, so that idle
/// keep-alive connections give their places back (the tiles port had
/// neither: issue #19's notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tiles_port_caps_its_connections_and_closes_idle_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cluster = Cluster::start(
        1,
        ClusterOptions {
            tiles: Some(true),
            // The first line lands in the `[tiles]` table the harness writes
            // last.
            extra_toml: "max_connections = 4\n[grpc]\nidle_timeout_ms = 1500\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    grow(&cluster, 0, 1).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = tiles_connection(&cluster, 0).await.expect("a connection");
        conn.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: tiles\r\n\r\n")
            .await
            .expect("request");
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
        held.push(conn);
    }
    // A fifth is not served while the four are open.
    let fifth = tiles_connection(&cluster, 0).await;
    assert!(
        fifth.is_err(),
        "a fifth connection was taken beyond tiles.max_connections = 4"
    );
    // Idle, the four are closed within the idle timeout (and a little).
    let started = std::time::Instant::now();
    for (i, conn) in held.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(4)).await,
            "idle connection {i} still open {:?} after a 1.5 s idle timeout",
            started.elapsed()
        );
    }
    // Their places are free again.
    let mut conn = wait_for(
        Duration::from_secs(10),
        "a connection once the idle ones went",
        || async { tiles_connection(&cluster, 0).await.ok() },
    )
    .await;
    conn.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: tiles\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Entry bundles hold the events themselves: an anonymous port does not
    // open them to anyone.
    let mut conn = tiles_connection(&cluster, 0).await.expect("a connection");
    conn.write_all(
        b"GET /tile/entries/000.p/1 HTTP/1.1\r\nHost: tiles\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("request");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}

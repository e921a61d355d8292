//! The shared fixture of Veritrail's integration tests: a cluster of real
//! `veritraild` processes on loopback ports, each with its own data directory
//! and log file, driven through the public gRPC API.
//!
//! The binary comes from the same target directory as the test (`make test`
//! builds it first), or from `VERITRAILD_BIN`.
//!
//! Clusters run with TLS, as in production: each has its own CA, made with
//! `veritraild certs`, node certificates for the addresses its nodes listen
//! on, and a client certificate for the tests (principal
//! [`TEST_PRINCIPAL`]) that the SDK, the CLI and raw gRPC channels present.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use veritrail_proto::v1::admin_client::AdminClient;
use veritrail_proto::v1::audit_log_client::AuditLogClient;
use veritrail_proto::v1::{Event, StatusRequest, StatusResponse};

pub mod chaos;
pub mod load;
pub mod netns;
pub mod witness;

pub const ORIGIN: &str = "it.veritrail.test/log";
/// The trust domain of the test clusters' identities.
pub const TRUST_DOMAIN: &str = "veritrail.test";
/// The client certificate the fixture's clients present.
pub const TEST_CLIENT: &str = "tester";
/// Its principal, as the cluster records it.
pub const TEST_PRINCIPAL: &str = "spiffe://veritrail.test/service/tester";

/// The `veritraild` binary under test.
pub fn veritraild() -> PathBuf {
    binary("veritraild", "VERITRAILD_BIN")
}

/// The `veritrail` CLI binary under test.
pub fn veritrail() -> PathBuf {
    binary("veritrail", "VERITRAIL_BIN")
}

/// The `veritrail-witness` binary under test.
pub fn veritrail_witness() -> PathBuf {
    binary("veritrail-witness", "VERITRAIL_WITNESS_BIN")
}

/// A binary of the workspace, from `env` or beside the test binary.
fn binary(name: &str, env: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    // Tests run from target/<profile>/deps/, the load generator from
    // target/<profile>/: the binary is in target/<profile>/ either way.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary dir");
    let path = [dir.join(name), dir.parent().unwrap_or(dir).join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join(name));
    assert!(
        path.exists(),
        "{} is missing: run `make test`, or `cargo build --bins` first, or set {env}",
        path.display()
    );
    path
}

/// A TCP port on 127.0.0.1 that is free now and that this process has not
/// handed out before.
///
/// Picked at random below Linux's ephemeral range (32768 and up), not by
/// binding port 0: the kernel takes that port from the range every outgoing
/// connection's local port comes from too, so any process's next connection
/// could take it before the node binds it. Test processes picking at random
/// from 12,000 ports collide only if two pick the same port within the moment
/// between the check and a node's bind.
/// The value of the first sample of metric `name` whose labels contain
/// `labels`, in Prometheus text.
pub fn metric_sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name) && l[name.len()..].starts_with([' ', '{']) && l.contains(labels)
        })?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// Runs the `veritrail` CLI with `args` (and `stdin`, if given) in `env`,
/// without the configuration file of whoever runs the tests; within 120 s.
pub async fn run_cli(env: &CliEnv, args: &[&str], stdin: Option<String>) -> std::process::Output {
    let mut child = tokio::process::Command::new(veritrail())
        .args(args)
        // No configuration file of the person running the tests.
        .env("VERITRAIL_CLI_CONFIG", "/nonexistent/veritrail/config.toml")
        .envs(env.0.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn veritrail");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes())
            .await
            .expect("write stdin");
    }
    drop(input);
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the CLI finishes")
    .expect("output")
}

/// The shell lines of a Markdown document's `sh` blocks, in order (only
/// those under the heading `section` to the next `## ` heading, when given),
/// continuation lines joined and comments dropped: what a reader would type.
pub fn shell_lines(markdown: &str, section: Option<&str>) -> Vec<String> {
    let (start, end) = match section {
        Some(heading) => {
            let start = markdown.find(heading).expect("the section");
            let end = markdown[start..]
                .find("\n## ")
                .map_or(markdown.len(), |e| start + e);
            (start, end)
        }
        None => (0, markdown.len()),
    };
    let mut lines = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in markdown[start..end].lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = match line.find(" #") {
            Some(i) => &line[..i],
            None => line,
        };
        let code = code.trim_end();
        if let Some(head) = code.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(code.trim_start_matches(' '));
        let full = std::mem::take(&mut pending);
        let full = full.split_whitespace().collect::<Vec<_>>().join(" ");
        if !full.is_empty() {
            lines.push(full);
        }
    }
    lines
}

/// `line` as a reader would type it: run by `bash -euo pipefail` in `cwd`,
/// with the workspace's binaries first on `PATH`, `env` (the cluster's
/// endpoints and credentials) and no CLI configuration file of whoever runs
/// the tests; output piped, the process killed when dropped.
pub fn bash_line(line: &str, cwd: &Path, env: &CliEnv) -> tokio::process::Command {
    let bin_dir = veritrail().parent().expect("bin dir").to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = tokio::process::Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", line])
        .current_dir(cwd)
        .env("PATH", path)
        .env("VERITRAIL_CLI_CONFIG", "/nonexistent/veritrail/config.toml")
        .envs(env.0.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Waits up to 120 s for a [`bash_line`] to finish; panics with its output
/// unless it succeeded.
pub async fn expect_success(child: tokio::process::Child, line: &str) {
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{line}` did not finish"))
        .expect("output");
    assert!(
        output.status.success(),
        "`{line}` failed with {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An HTTP/1.1 answer as the tests read it.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// POSTs `body` to `http://addr/path` on a connection of its own, within 10 s.
pub async fn http_post(addr: &str, path: &str, body: &str) -> HttpAnswer {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.expect("answer");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer within 10 s");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Debian's Go path, where `golang-golang-x-mod-dev` puts `golang.org/x/mod`.
const GOPATH: &str = "/usr/share/gocode";

/// Builds the Go program made of `sources` (relative to `tests/`, the one
/// with `main` first, which names the binary) into `dir`, against Debian's
/// `golang.org/x/mod` (`GO111MODULE=off`). `None`, said loudly, where there
/// is no Go toolchain (`.ci/install-deps` installs golang-go and
/// golang-golang-x-mod-dev); a program that does not build fails the test.
pub fn build_go_program(sources: &[&str], dir: &Path) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sources: Vec<PathBuf> = sources.iter().map(|s| root.join(s)).collect();
    let name = sources[0].file_stem().expect("a file name").to_owned();
    let binary = dir.join(name);
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .args(&sources)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("gocache"))
        .output();
    match built {
        Ok(out) if out.status.success() => Some(binary),
        Ok(out) => panic!(
            "{} does not build: {}",
            sources[0].display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!(
                "SKIPPED: no Go toolchain ({e}); `.ci/install-deps` installs golang-go and \
                 golang-golang-x-mod-dev"
            );
            None
        }
    }
}

pub fn free_port() -> u16 {
    use rand::Rng as _;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`
/// naming what was awaited.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_for_opt(timeout, check).await {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or gives `None` after
/// `timeout`.
pub async fn wait_for_opt<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Where it serves `/metrics`, with [`ClusterOptions::metrics`].
    pub metrics_addr: Option<String>,
    /// Where it serves tlog-tiles, with [`ClusterOptions::tiles`].
    pub tiles_addr: Option<String>,
    /// Runs the binary inside the node's network namespace, when it has one.
    exec_prefix: Vec<String>,
    child: Option<Child>,
    /// Its data directory is a tmpfs mounted for it ([`ClusterOptions::disk_mib`]).
    own_disk: bool,
    /// Its data directory is a fault file system ([`ClusterOptions::fault_disks`]).
    fault_disk: Option<veritrail_faultfs::Mount>,
    /// The file libfaketime reads its clock offset from.
    clock_file: Option<PathBuf>,
}

impl NodeProcess {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// True when the process has exited by itself (a node that refused to
    /// start, or stopped).
    pub fn has_exited(&mut self) -> bool {
        self.exit_status().is_some()
    }

    /// How the process ended, once it has exited by itself.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// Settings the fixture writes into every node's configuration.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra keys for the `[raft]` table.
    pub raft_toml: String,
    /// Extra TOML appended to every node's file (whole tables).
    pub extra_toml: String,
    /// Give every node its own network namespace on a private bridge, so that
    /// partitions can be made ([`Cluster::partition`]). Falls back to loopback
    /// where namespaces cannot be made (not root).
    pub netns: bool,
    /// Development nodes without TLS (`tls.insecure_dev`), on loopback only.
    pub insecure: bool,
    /// Every node serves `/metrics` on a loopback port of its own
    /// ([`Cluster::scrape`]).
    pub metrics: bool,
    /// Every node serves tlog-tiles on a loopback port of its own
    /// ([`NodeProcess::tiles_addr`]); `Some(true)` to anyone, `Some(false)`
    /// to authenticated callers with the `proofs` grant.
    pub tiles: Option<bool>,
    /// Every node reads the CA's revocation list (`tls.crl_file`), empty at
    /// the start ([`Pki::revoke`]).
    pub crl: bool,
    /// Every node's data directory is a tmpfs of this many MiB of its own, so
    /// that a test can fill a node's disk (root only: without it the nodes
    /// use the plain directory, and [`Cluster::has_small_disks`] says so).
    pub disk_mib: Option<u64>,
    /// Every node's wall clock runs through libfaketime, offset by what
    /// [`Cluster::set_clock`] writes (its monotonic clock is left alone).
    /// Where libfaketime is missing, [`Cluster::has_fake_clocks`] says so.
    pub fake_clocks: bool,
    /// Every node's data directory is mounted through the fault file system
    /// (`tests/faultfs`), so that a test can cut the power
    /// ([`Cluster::power_cut`]) or inject disk faults ([`Cluster::fault_disk`]).
    /// Needs `/dev/fuse` and root; the cluster fails to start without them.
    pub fault_disks: bool,
}

/// Debian's libfaketime, for [`ClusterOptions::fake_clocks`].
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A cluster's certificates: a CA made by `veritraild certs`, with node and
/// client certificates issued on demand.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    fn certs(&self, args: &[&str]) {
        let out = Command::new(veritraild())
            .arg("certs")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("run veritraild certs");
        assert!(
            out.status.success(),
            "veritraild certs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new CA in `dir`.
    pub fn create(dir: PathBuf) -> Pki {
        let pki = Pki { dir };
        pki.certs(&["ca", "--trust-domain", TRUST_DOMAIN, "--days", "2"]);
        pki.client(TEST_CLIENT);
        pki
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A raw TLS client trusting this CA, presenting no certificate and
    /// offering `alpn`: for tests that speak below gRPC's client.
    pub fn raw_tls_connector(&self, alpn: &[u8]) -> tokio_rustls::TlsConnector {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;

        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.ca()).expect("CA file") {
            roots.add(ca.expect("CA")).expect("a CA rustls takes");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
    }

    /// Node `id`'s certificate and key, valid for `host`; issued once.
    pub fn node(&self, id: u64, host: &str) -> (PathBuf, PathBuf) {
        self.node_of(ORIGIN, id, host)
    }

    /// Node `id`'s certificate and key for the cluster of `origin`, issued by
    /// this CA; issued once (in a directory of that cluster's own unless
    /// `origin` is [`ORIGIN`]).
    pub fn node_of(&self, origin: &str, id: u64, host: &str) -> (PathBuf, PathBuf) {
        if origin == ORIGIN {
            self.issue_node(origin, id, host)
        } else {
            self.with_same_ca(&format!("cluster-{}", origin.replace('/', "_")))
                .issue_node(origin, id, host)
        }
    }

    fn issue_node(&self, origin: &str, id: u64, host: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.pair(&format!("node-{id}"));
        if !cert.exists() {
            self.certs(&[
                "node",
                "--id",
                &id.to_string(),
                "--origin",
                origin,
                "--hosts",
                host,
                "--days",
                "2",
            ]);
        }
        (cert, key)
    }

    /// A certificate of this CA for node `id` as node certificates were issued
    /// before they named the cluster's origin:
    /// `spiffe://<trust domain>/veritrail/node/<id>`.
    pub fn node_without_origin(&self, id: u64) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};

        let (cert, key) = self.pair(&format!("no-origin-node-{id}"));
        if cert.exists() {
            return (cert, key);
        }
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).expect("CA file");
        let ca_key = KeyPair::from_pem(&read("ca.key")).expect("CA key");
        let issuer = Issuer::from_ca_cert_pem(&read("ca.pem"), ca_key).expect("CA");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("veritrail node {id}"));
        params.subject_alt_names = vec![
            SanType::URI(
                format!("spiffe://{TRUST_DOMAIN}/veritrail/node/{id}")
                    .try_into()
                    .expect("URI"),
            ),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let pair = KeyPair::generate().expect("key");
        let signed = params.signed_by(&pair, &issuer).expect("sign");
        std::fs::write(&key, pair.serialize_pem()).expect("write the key");
        std::fs::write(&cert, signed.pem()).expect("write the certificate");
        (cert, key)
    }

    /// A directory `name` beside the CA's files, holding a copy of them.
    fn with_same_ca(&self, name: &str) -> Pki {
        let other = Pki {
            dir: self.dir.join(name),
        };
        if !other.dir.exists() {
            std::fs::create_dir_all(&other.dir).expect("mkdir");
            for file in ["ca.pem", "ca.key"] {
                std::fs::copy(self.dir.join(file), other.dir.join(file)).expect("copy the CA");
            }
        }
        other
    }

    /// Issues node `id` a new certificate and key (same CA, same identity)
    /// and moves them over the old files, as a rotation would.
    pub fn reissue_node(&self, id: u64, host: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.node(id, host);
        let fresh = self.with_same_ca(&format!("reissue-{}", uuid::Uuid::now_v7()));
        let (new_cert, new_key) = fresh.node(id, host);
        std::fs::rename(new_key, &key).expect("replace the key");
        std::fs::rename(new_cert, &cert).expect("replace the certificate");
        (cert, key)
    }

    /// The CA's revocation list, which `revoke` writes.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Adds `certs` to the CA's revocation list (`veritraild certs revoke`).
    pub fn revoke(&self, certs: &[&Path]) {
        let mut args = vec!["revoke".to_owned()];
        args.extend(certs.iter().map(|c| c.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.certs(&args);
    }

    /// Service `name`'s client certificate and key; issued once.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.pair(&format!("client-{name}"));
        if !cert.exists() {
            self.certs(&["client", "--name", name, "--days", "2"]);
        }
        (cert, key)
    }

    fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// SDK TLS settings presenting `identity` (cert, key), or no certificate.
    pub fn sdk_tls(&self, identity: Option<(&Path, &Path)>) -> veritrail_client::TlsSettings {
        veritrail_client::TlsSettings::from_files(&self.ca(), identity).expect("TLS files")
    }

    /// tonic TLS settings presenting `identity`, or no certificate.
    pub fn tonic_tls(&self, identity: Option<(&Path, &Path)>) -> ClientTlsConfig {
        let read = |p: &Path| std::fs::read(p).expect("PEM file");
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca())));
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(read(cert), read(key)));
        }
        tls
    }
}

/// The environment that points the `veritrail` CLI at a cluster.
#[derive(Debug, Clone)]
pub struct CliEnv(pub Vec<(String, String)>);

impl CliEnv {
    /// Plain endpoints, no credentials.
    pub fn endpoints(endpoints: &str) -> CliEnv {
        CliEnv(vec![("VERITRAIL_ENDPOINTS".into(), endpoints.into())])
    }
}

/// A cluster of `veritraild` processes. Dropping it kills them all.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProcess>,
    options: ClusterOptions,
    /// `None` for development clusters without TLS.
    pub pki: Option<Pki>,
    /// Declared after `nodes`: dropped after the processes are killed.
    network: Option<netns::Network>,
}

impl Cluster {
    /// Starts `n` voters that bootstrap themselves, and waits for a leader that
    /// sees all of them as voters.
    pub async fn start(n: usize, options: ClusterOptions) -> Cluster {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let network = if options.netns {
            netns::Network::create(n)
        } else {
            None
        };
        let pki = (!options.insecure).then(|| Pki::create(dir.path().join("pki")));
        if let Some(pki) = pki.as_ref().filter(|_| options.crl) {
            pki.revoke(&[]);
        }
        let mut cluster = Cluster {
            dir,
            nodes: Vec::new(),
            options,
            pki,
            network,
        };
        let ids: Vec<u64> = (1..=n as u64).collect();
        let addrs: Vec<String> = match &cluster.network {
            Some(net) => (0..n).map(|i| format!("{}:7000", net.ip(i))).collect(),
            None => ids
                .iter()
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
        };
        let members: Vec<String> = ids
            .iter()
            .zip(&addrs)
            .map(|(id, a)| format!("\"{id}={a}\""))
            .collect();
        for (id, addr) in ids.iter().zip(&addrs) {
            let initial = format!("initial_members = [{}]\n", members.join(", "));
            cluster.spawn_node(*id, addr.clone(), &initial);
        }
        cluster.wait_for_voters(n).await;
        cluster
    }

    fn spawn_node(&mut self, id: u64, addr: String, initial: &str) -> usize {
        let exec_prefix = match &self.network {
            Some(net) if self.nodes.len() < net.nodes() => net.exec_prefix(self.nodes.len()),
            _ => Vec::new(),
        };
        let mut node = self.configure_node(id, addr, initial, exec_prefix);
        start_process(&mut node);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Writes a node's configuration file; does not start it.
    fn configure_node(
        &self,
        id: u64,
        addr: String,
        initial: &str,
        exec_prefix: Vec<String>,
    ) -> NodeProcess {
        let data_dir = self.dir.path().join(format!("node{id}"));
        let own_disk = self
            .options
            .disk_mib
            .is_some_and(|mib| mount_tmpfs(&data_dir, mib));
        let fault_disk = self.options.fault_disks.then(|| {
            let backing = self.dir.path().join(format!("node{id}.disk"));
            std::fs::create_dir_all(&backing).expect("mkdir");
            std::fs::create_dir_all(&data_dir).expect("mkdir");
            veritrail_faultfs::Mount::new(&backing, &data_dir)
                .expect("mount the fault file system (needs /dev/fuse and root)")
        });
        let clock_file = (self.options.fake_clocks && Path::new(LIBFAKETIME).exists()).then(|| {
            let file = self.dir.path().join(format!("node{id}.clock"));
            std::fs::write(&file, "+0\n").expect("clock file");
            file
        });
        let config_path = self.dir.path().join(format!("node{id}.toml"));
        let log_path = self.dir.path().join(format!("node{id}.log"));
        let tls = match &self.pki {
            Some(pki) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let (cert, key) = pki.node(id, host);
                let crl = if self.options.crl {
                    format!("crl_file = \"{}\"\n", pki.crl().display())
                } else {
                    String::new()
                };
                format!(
                    "[tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{crl}",
                    pki.ca().display(),
                    cert.display(),
                    key.display()
                )
            }
            None => "[tls]\ninsecure_dev = true\n".into(),
        };
        let metrics_addr = self
            .options
            .metrics
            .then(|| format!("127.0.0.1:{}", free_port()));
        let metrics_line = metrics_addr
            .as_ref()
            .map_or(String::new(), |a| format!("metrics_addr = \"{a}\"\n"));
        let tiles_addr = self
            .options
            .tiles
            .map(|_| format!("127.0.0.1:{}", free_port()));
        let tiles_table = match (&tiles_addr, self.options.tiles) {
            (Some(a), Some(anonymous)) => {
                format!("[tiles]\nlisten_addr = \"{a}\"\nanonymous = {anonymous}\n")
            }
            _ => String::new(),
        };
        let toml = format!(
            "node_id = {id}\nlisten_addr = \"{addr}\"\ndata_dir = \"{}\"\norigin = \"{ORIGIN}\"\n{metrics_line}{initial}\n\
             [raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n{}\
             [checkpoint]\ninterval_ms = 200\n{tls}{tiles_table}{}",
            data_dir.display(),
            self.options.raft_toml,
            self.options.extra_toml
        );
        std::fs::write(&config_path, toml).expect("write config");
        NodeProcess {
            id,
            addr,
            data_dir,
            config_path,
            log_path,
            metrics_addr,
            tiles_addr,
            exec_prefix,
            child: None,
            own_disk,
            fault_disk,
            clock_file,
        }
    }

    /// Replaces node `i` by a new, empty node with id `new_id` at the same
    /// address (in the same network namespace): the old process is killed and
    /// its data left where it was; the new one starts with no data and no
    /// initial members, ready for `AddLearner`.
    pub fn replace(&mut self, i: usize, new_id: u64) {
        self.kill(i);
        let addr = self.nodes[i].addr.clone();
        let prefix = self.nodes[i].exec_prefix.clone();
        let mut node = self.configure_node(new_id, addr, "", prefix);
        start_process(&mut node);
        self.nodes[i] = node;
    }

    /// Starts `n` voters each in its own network namespace, or returns `None`,
    /// saying why, where namespaces cannot be made (the test should then skip).
    pub async fn start_partitionable(n: usize) -> Option<Cluster> {
        let cluster = Cluster::start(
            n,
            ClusterOptions {
                netns: true,
                ..ClusterOptions::default()
            },
        )
        .await;
        if cluster.can_partition() {
            Some(cluster)
        } else {
            eprintln!("SKIPPED: network namespaces need root (CAP_NET_ADMIN), ip and iptables");
            None
        }
    }

    /// Adds a node that is not yet a member (for `AddLearner`). Returns its index.
    pub fn spawn_extra(&mut self, id: u64) -> usize {
        let addr = format!("127.0.0.1:{}", free_port());
        self.spawn_node(id, addr, "")
    }

    /// Every node's address, in node order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// SDK settings for `endpoints`, with the test client's certificate.
    pub fn client_config(
        &self,
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> veritrail_client::ClientConfig {
        let mut config = veritrail_client::ClientConfig::new(endpoints);
        if let Some(pki) = &self.pki {
            let (cert, key) = pki.client(TEST_CLIENT);
            config.tls = Some(pki.sdk_tls(Some((&cert, &key))));
        }
        config
    }

    /// An SDK client that knows every node.
    pub fn sdk(&self) -> veritrail_client::Client {
        veritrail_client::Client::with_config(self.client_config(self.endpoints()))
            .expect("sdk client")
    }

    /// The environment for the `veritrail` CLI: endpoints and credentials.
    pub fn cli_env(&self) -> CliEnv {
        let mut env = CliEnv::endpoints(&self.endpoints().join(","));
        if let Some(pki) = &self.pki {
            let (cert, key) = pki.client(TEST_CLIENT);
            for (name, path) in [
                ("VERITRAIL_CA", pki.ca()),
                ("VERITRAIL_CERT", cert),
                ("VERITRAIL_KEY", key),
            ] {
                env.0.push((name.into(), path.display().to_string()));
            }
        }
        env
    }

    /// The endpoint of node `i`, with TLS presenting `identity` (or no
    /// certificate) when the cluster has TLS.
    fn endpoint(&self, i: usize, identity: Option<(&Path, &Path)>) -> tonic::transport::Endpoint {
        let addr = &self.nodes[i].addr;
        match &self.pki {
            Some(pki) => Channel::from_shared(format!("https://{addr}"))
                .expect("endpoint")
                .tls_config(pki.tonic_tls(identity))
                .expect("TLS settings"),
            None => Channel::from_shared(format!("http://{addr}")).expect("endpoint"),
        }
    }

    /// A channel to node `i` as the test client, retried until it listens.
    pub async fn channel(&self, i: usize) -> Channel {
        let pki_client = self.pki.as_ref().map(|p| p.client(TEST_CLIENT));
        let identity = pki_client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        connect(self.endpoint(i, identity), &self.nodes[i].addr).await
    }

    /// A channel to node `i` presenting `identity` (cert, key), or no
    /// certificate at all.
    pub async fn channel_as(&self, i: usize, identity: Option<(&Path, &Path)>) -> Channel {
        connect(self.endpoint(i, identity), &self.nodes[i].addr).await
    }

    pub async fn client(&self, i: usize) -> AuditLogClient<Channel> {
        AuditLogClient::new(self.channel(i).await).max_decoding_message_size(64 << 20)
    }

    pub async fn admin(&self, i: usize) -> AdminClient<Channel> {
        AdminClient::new(self.channel(i).await)
    }

    /// Removes a follower from the membership (it is not told, and keeps
    /// running). Returns its index and the voters that remain.
    pub async fn remove_a_follower(&self) -> (usize, Vec<u64>) {
        let leader = self.leader().await;
        let removed = (leader + 1) % self.nodes.len();
        let removed_id = self.nodes[removed].id;
        let voters: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|id| *id != removed_id)
            .collect();
        self.admin(leader)
            .await
            .change_membership(veritrail_proto::v1::ChangeMembershipRequest {
                voters: voters.clone(),
                retain_removed: false,
            })
            .await
            .unwrap_or_else(|s| panic!("remove node {removed_id}: {s}"));
        (removed, voters)
    }

    /// The node's status, or `None` when it does not answer within 2 s (it is
    /// down, paused, or starting).
    pub async fn status(&self, i: usize) -> Option<StatusResponse> {
        let pki_client = self.pki.as_ref().map(|p| p.client(TEST_CLIENT));
        let identity = pki_client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let mut admin = AdminClient::new(
            self.endpoint(i, identity)
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?,
        );
        admin
            .status(StatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Stops every node, empties its data directory but for its signing key
    /// (`node.key`), and starts them all again: the cluster bootstraps a new
    /// history under the same keys, as if every voter had been rewritten.
    /// Returns once all of them are voters again.
    pub async fn wipe_all_but_keys(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        for node in &self.nodes {
            for item in std::fs::read_dir(&node.data_dir).expect("data dir") {
                let path = item.expect("entry").path();
                if path.file_name().is_some_and(|n| n != "node.key") {
                    if path.is_dir() {
                        std::fs::remove_dir_all(&path).expect("wipe");
                    } else {
                        std::fs::remove_file(&path).expect("wipe");
                    }
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        self.wait_for_voters(self.nodes.len()).await;
    }

    /// The voters' verifier keys, as node 0 reports them (a three-voter
    /// cluster).
    pub async fn voter_keys(&self) -> Vec<String> {
        let status = self.status(0).await.expect("status");
        let keys: Vec<String> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.public_key.clone())
            .collect();
        assert_eq!(keys.len(), 3, "{status:?}");
        keys
    }

    /// The index of the leader, once the running nodes agree on one.
    /// Panics after 20 s with what each node says and the end of its log.
    pub async fn leader(&self) -> usize {
        let found = wait_for_opt(Duration::from_secs(20), || async {
            let mut seen = None;
            for (i, node) in self.nodes.iter().enumerate() {
                if !node.is_running() {
                    continue;
                }
                let status = self.status(i).await?;
                let leader = status.leader_id?;
                if seen.is_some_and(|s| s != leader) {
                    return None;
                }
                seen = Some(leader);
            }
            let leader = seen?;
            self.nodes
                .iter()
                .position(|n| n.id == leader && n.is_running())
        })
        .await;
        match found {
            Some(i) => i,
            None => panic!(
                "timed out after 20s waiting for an agreed leader\n{}",
                self.describe().await
            ),
        }
    }

    /// Each node's own view and the last lines of its log, for a failure
    /// message.
    pub async fn describe(&self) -> String {
        let mut text = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let view = match self.status(i).await {
                Some(s) => format!(
                    "role {}, term {}, leader {:?}, applied {:?}, size {}, voters {:?}",
                    s.role,
                    s.term,
                    s.leader_id,
                    s.applied_index,
                    s.tree_size,
                    s.members
                        .iter()
                        .filter(|m| m.voter)
                        .map(|m| m.node_id)
                        .collect::<Vec<_>>()
                ),
                None => "no status".into(),
            };
            text.push_str(&format!(
                "--- node {} at {} (running: {}): {view}\n{}\n",
                node.id,
                node.addr,
                node.is_running(),
                self.log_tail(i)
            ));
        }
        text
    }

    /// Waits until the leader reports `n` voters.
    pub async fn wait_for_voters(&self, n: usize) {
        let leader = self.leader().await;
        wait_for(Duration::from_secs(20), "all voters", || async {
            let status = self.status(leader).await?;
            (status.members.iter().filter(|m| m.voter).count() == n).then_some(())
        })
        .await;
    }

    /// Waits until every running node has applied `size` entries.
    pub async fn wait_for_size(&self, size: u64) {
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                continue;
            }
            wait_for(
                Duration::from_secs(30),
                &format!("node {} to reach size {size}", node.id),
                || async { (self.status(i).await?.tree_size >= size).then_some(()) },
            )
            .await;
        }
    }

    /// The distinct Merkle roots the nodes report (one when they agree).
    pub async fn roots(&self) -> std::collections::BTreeSet<Vec<u8>> {
        let mut roots = std::collections::BTreeSet::new();
        for i in 0..self.nodes.len() {
            roots.insert(self.status(i).await.expect("status").root_hash);
        }
        roots
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: the node stops as an operator or systemd stops it.
    pub fn terminate(&mut self, i: usize) {
        self.signal(i, "TERM");
    }

    /// Waits up to `timeout` for node `i`'s process to exit by itself; true
    /// when it did (it then counts as stopped, and can be restarted).
    pub async fn wait_exited(&mut self, i: usize, timeout: Duration) -> bool {
        let exited = wait_for_opt(timeout, || {
            let done = self.nodes[i].has_exited();
            async move { done.then_some(()) }
        })
        .await
        .is_some();
        if exited {
            self.nodes[i].child = None;
        }
        exited
    }

    /// Starts a killed node again, with its data.
    pub fn restart(&mut self, i: usize) {
        start_process(&mut self.nodes[i]);
    }

    /// Cuts the power of the nodes `which`, all at once: each is killed, its
    /// disk loses what it had not made durable as `cut` says, and it starts
    /// again ([`ClusterOptions::fault_disks`]).
    pub fn power_cut(
        &mut self,
        which: &[usize],
        cut: veritrail_faultfs::Cut,
    ) -> Vec<veritrail_faultfs::CutReport> {
        let reports = self.power_off(which, cut);
        for &i in which {
            self.restart(i);
        }
        reports
    }

    /// [`Cluster::power_cut`] without the restart: the nodes stay down
    /// ([`Cluster::restart`] starts them).
    pub fn power_off(
        &mut self,
        which: &[usize],
        cut: veritrail_faultfs::Cut,
    ) -> Vec<veritrail_faultfs::CutReport> {
        for &i in which {
            self.kill(i);
        }
        which
            .iter()
            .map(|&i| {
                self.nodes[i]
                    .fault_disk
                    .as_mut()
                    .expect("a cluster started with fault_disks")
                    .power_cut(cut)
                    .expect("cut the power")
            })
            .collect()
    }

    /// Node `i`'s fault file system, to inject disk faults while it runs.
    pub fn fault_disk(&self, i: usize) -> &veritrail_faultfs::Mount {
        self.nodes[i]
            .fault_disk
            .as_ref()
            .expect("a cluster started with fault_disks")
    }

    /// True when every node's wall clock can be set ([`ClusterOptions::fake_clocks`]).
    pub fn has_fake_clocks(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| n.clock_file.is_some())
    }

    /// Sets node `i`'s wall clock to the real time plus `offset`, in
    /// libfaketime's words (`+0`, `-1h`, `+1h`); it reads it within a second.
    pub fn set_clock(&self, i: usize, offset: &str) {
        let file = self.nodes[i].clock_file.as_ref().expect("a fake clock");
        let tmp = file.with_extension("clock.tmp");
        std::fs::write(&tmp, format!("{offset}\n")).expect("write the clock");
        std::fs::rename(&tmp, file).expect("set the clock");
    }

    /// True when every node's data directory is a small disk of its own
    /// ([`ClusterOptions::disk_mib`]).
    pub fn has_small_disks(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.iter().all(|n| n.own_disk)
    }

    /// True when the nodes have a private network and can be partitioned.
    pub fn can_partition(&self) -> bool {
        self.network.is_some()
    }

    /// Cuts every link between the nodes of `side` and the others.
    pub fn partition(&mut self, side: &[usize]) {
        self.network
            .as_mut()
            .expect("a cluster started with netns")
            .partition(side);
    }

    /// Cuts the link between nodes `i` and `j`.
    pub fn cut(&mut self, i: usize, j: usize) {
        self.network
            .as_mut()
            .expect("a cluster started with netns")
            .cut(i, j);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        if let Some(net) = &mut self.network {
            net.heal();
        }
    }

    /// SIGSTOP: the process freezes with its sockets open, as in a long GC pause
    /// or a VM stall. Peers see silence, not a closed connection.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "STOP");
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "CONT");
    }

    /// SIGHUP: the node reads its TLS files, policy and tokens again.
    pub fn hangup(&self, i: usize) {
        self.signal(i, "HUP");
    }

    fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.nodes[i].child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{signal} node {}", self.nodes[i].id);
        }
    }

    /// Node `i`'s `/metrics` text, or `None` when it does not answer (or
    /// serves no metrics).
    pub async fn scrape(&self, i: usize) -> Option<String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.nodes[i].metrics_addr.as_ref()?;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut response))
            .await
            .ok()?
            .ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
    }

    /// The last lines of a node's log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        // VERITRAIL_TEST_KEEP_LOGS=DIR keeps the nodes' logs of a test that
        // failed while its cluster was up (of every test, with
        // VERITRAIL_TEST_KEEP_ALL_LOGS set too) in DIR/<pid>-<ns>/node-<id>.log:
        // the temporary directory goes.
        if (std::thread::panicking() || std::env::var_os("VERITRAIL_TEST_KEEP_ALL_LOGS").is_some())
            && let Some(dir) = std::env::var_os("VERITRAIL_TEST_KEEP_LOGS")
        {
            let ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = PathBuf::from(dir).join(format!("{}-{ns}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            for node in &self.nodes {
                let _ = std::fs::copy(&node.log_path, dir.join(format!("node-{}.log", node.id)));
            }
        }
        // Before the temporary directory goes, which holds the mount points.
        for node in &mut self.nodes {
            drop(node.fault_disk.take());
        }
        for node in self.nodes.iter().filter(|n| n.own_disk) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&node.data_dir)
                .status();
        }
    }
}

/// Mounts a tmpfs of `mib` MiB at `dir`; false where that cannot be done.
fn mount_tmpfs(dir: &Path, mib: u64) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs at {} (not root?)", dir.display());
    }
    mounted
}

fn start_process(node: &mut NodeProcess) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log_path)
        .expect("log file");
    let mut command = match node.exec_prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(veritraild());
            c
        }
        None => Command::new(veritraild()),
    };
    if let Some(clock) = &node.clock_file {
        // The wall clock only: tokio's timers and Raft's leases run on the
        // monotonic clock, as on a machine whose NTP steps its time.
        command
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", clock)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    let child = command
        .arg("--config")
        .arg(&node.config_path)
        // VERITRAIL_TEST_NODE_LOG sets the nodes' log filter for a closer look.
        .env(
            "VERITRAIL_LOG",
            std::env::var("VERITRAIL_TEST_NODE_LOG")
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn veritraild");
    node.child = Some(child);
}

/// A channel through `endpoint`, retried until the process listens (bounded).
async fn connect(endpoint: tonic::transport::Endpoint, addr: &str) -> Channel {
    let endpoint = endpoint.timeout(Duration::from_secs(20));
    wait_for(
        Duration::from_secs(20),
        &format!("{addr} to accept connections"),
        || {
            let endpoint = endpoint.clone();
            async move { endpoint.connect().await.ok() }
        },
    )
    .await
}

/// A valid event, as the SDK takes it.
pub fn sdk_event(source: &str, event_id: &str) -> veritrail_client::Event {
    veritrail_client::Event {
        source: source.into(),
        event_id: event_id.into(),
        actor: "alice@example.com".into(),
        action: "invoice.refund".into(),
        resource: format!("invoice/{event_id}"),
        outcome: "success".into(),
        payload: b"{\"amount\":42}".to_vec(),
        ..veritrail_client::Event::default()
    }
}

/// Damages the WAL of a stopped node's data directory before its last synced
/// write, as a disk that flips bits does (not a power cut): a byte in every
/// 4 KiB of the second eighth of its largest WAL file, which holds synced
/// Raft appends with more after them. The node refuses to open it, or with
/// `repair.auto` repairs.
pub fn damage_wal(data_dir: &Path) {
    let db = data_dir.join("db");
    let wal = std::fs::read_dir(&db)
        .expect("db")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .expect("a WAL");
    let mut bytes = std::fs::read(&wal).expect("read the WAL");
    assert!(bytes.len() > 64 * 1024, "a WAL of {} bytes", bytes.len());
    for at in (bytes.len() / 8..bytes.len() / 4).step_by(4096) {
        bytes[at] ^= 0x5a;
    }
    std::fs::write(&wal, bytes).expect("damage the WAL");
}

/// A valid event, as the wire carries it.
pub fn event(source: &str, event_id: &str) -> Event {
    Event::from(&sdk_event(source, event_id))
}

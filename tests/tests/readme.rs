//! The README's five-minute tour, run line by line against a real cluster, so
//! the commands a new user copies keep working.
//!
//! Every line of every `sh` block of the tour is run by bash, in order, in a
//! scratch directory, with the workspace's binaries first on `PATH` and
//! `VERITRAIL_ENDPOINTS` naming the test cluster. The cluster listens on free
//! ports rather than 7001-7003, so the tour's `127.0.0.1:7001` and `data/node1`
//! are replaced by node 1's address and data directory. Two lines need more
//! than running: `fsck` runs on a stopped node (node 1 is stopped first), and a
//! `--follow` tail passes once it prints an entry. Lines that only run a
//! repository script (`python3 tests/...`) run from the repository root.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use veritrail_tests::{Cluster, ClusterOptions, bash_line, expect_success, shell_lines, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_of_the_readme_tour_works() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root");
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README");
    let lines = shell_lines(&readme, Some("## Five-minute tour"));
    assert!(lines.len() >= 15, "the tour lost its commands: {lines:?}");

    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let cluster_env = cluster.cli_env();
    let node1 = cluster.nodes[0].addr.clone();
    let node1_data = cluster.nodes[0].data_dir.display().to_string();

    for line in &lines {
        let command = line
            .replace("127.0.0.1:7001", &node1)
            .replace("data/node1", &node1_data);
        if line.starts_with("veritrail checkpoint") {
            // Auditors come after appends: wait until a co-signed checkpoint
            // covers them, as a person would by reading `cluster status`.
            let client = cluster.sdk();
            wait_for(
                Duration::from_secs(30),
                "a checkpoint of the whole log",
                || async {
                    let size = client.status().await.ok()?.tree_size;
                    (client.checkpoint(None).await.ok()?.tree_size == size).then_some(())
                },
            )
            .await;
        }
        if line.contains("fsck") {
            cluster.kill(0);
        }
        let cwd = if line.starts_with("python3 ") {
            repo
        } else {
            scratch.path()
        };
        let mut child = bash_line(&command, cwd, &cluster_env)
            .spawn()
            .expect("bash");
        if line.contains("--follow") {
            let stdout = child.stdout.take().expect("stdout");
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            let first = tokio::time::timeout(Duration::from_secs(30), reader.next_line())
                .await
                .unwrap_or_else(|_| panic!("`{line}` printed nothing"))
                .expect("read");
            assert!(
                first.is_some_and(|l| !l.is_empty()),
                "`{line}` printed nothing"
            );
            child.kill().await.expect("stop the tail");
            continue;
        }
        expect_success(child, &command).await;
    }
    // The tour's files are what it says they are.
    let keys = std::fs::read_to_string(scratch.path().join("keys.txt")).expect("keys.txt");
    assert_eq!(keys.lines().count(), 3, "{keys}");
    assert!(scratch.path().join("evidence.vtb").exists());
    assert!(scratch.path().join("audit.json").exists());
}

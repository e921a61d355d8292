//! A disk that fails (issue #18, items 3 and 4): every node's data directory
//! is mounted through the fault file system (`tests/faultfs`), which can fail
//! syncs, fail reads of chosen files and run out of space.
//!
//! What must hold: a failed fsync stops the node (never retried as if the data
//! were safe) and it comes back from what was synced; a failed read is an
//! error, never a wrong or shorter answer; a follower short of disk takes no
//! entries and catches up once space is freed. In every case the others go on
//! and nothing acknowledged is lost.

use std::sync::Arc;
use std::time::Duration;

use veritrail_proto::v1::get_entry_request::Key;
use veritrail_proto::v1::{GetEntryRequest, ReadConsistency, ScanRequest};
use veritrail_tests::load::{
    Acked, Load, appends_go_on, every_node_back_and_in_step, nothing_acknowledged_is_lost,
    on_fault_disks,
};
use veritrail_tests::{Cluster, ClusterOptions, sdk_event, wait_for, wait_for_opt};

/// Exit status of a node whose storage failed under Raft (EX_IOERR).
const EXIT_STORAGE_FAILED: i32 = 74;

/// Every sync of one node's disk fails from one moment on, as a disk that
/// has gone bad, under load: a follower first, then the leader. The node
/// stops by itself with EX_IOERR, saying why; the others go on; started again
/// on a sound disk it catches up, and nothing acknowledged is lost. (Before,
/// openraft stopped on the failed write and the process ran on: a member
/// that could neither vote nor take entries, answering reads from memory the
/// disk did not hold.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_node_which_comes_back_with_nothing_lost() {
    let mut cluster = on_fault_disks().await;
    let client = cluster.sdk();
    let acked: Acked = Arc::default();
    for who in ["a follower", "the leader"] {
        let load = Load::start(&client, &acked, who).await;
        let leader = cluster.leader().await;
        let victim = if who == "the leader" {
            leader
        } else {
            (leader + 1) % 3
        };
        cluster.fault_disk(victim).faults(|f| f.sync_errors = true);
        let node = &mut cluster.nodes[victim];
        let status = wait_for_opt(Duration::from_secs(30), || {
            let status = node.exit_status();
            async move { status }
        })
        .await;
        let Some(status) = status else {
            panic!(
                "{who}: still running 30 s after its syncs began to fail\n{}",
                cluster.log_tail(victim)
            );
        };
        let log = cluster.log_tail(victim);
        assert_eq!(status.code(), Some(EXIT_STORAGE_FAILED), "{who}: {log}");
        assert!(
            log.contains("raft stopped on a fatal error"),
            "{who} does not say why it stopped: {log}"
        );
        appends_go_on(&cluster, &acked, 20, &format!("{who} stopped")).await;
        load.stop().await;

        cluster.fault_disk(victim).faults(|f| f.sync_errors = false);
        cluster.restart(victim);
        every_node_back_and_in_step(&cluster, who).await;
        nothing_acknowledged_is_lost(&client, &acked, who).await;
    }
}

/// A follower's free space falls below its reserve under load: it takes no
/// more entries from the leader (long before its disk is full), says so in
/// status and metrics, keeps running and stands for no election; the leader
/// commits with the other follower. Once space is freed the follower catches up by itself. (Before,
/// it wrote on until the disk was full, and a write that failed there would
/// have stopped it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_short_of_disk_takes_no_entries_and_catches_up_once_space_is_freed() {
    const RESERVE: u64 = 64 << 20;
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            fault_disks: true,
            metrics: true,
            extra_toml: format!("[disk]\nreserve_bytes = {RESERVE}\n"),
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = cluster.sdk();
    let acked: Acked = Arc::default();
    let load = Load::start(&client, &acked, "before").await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;

    cluster
        .fault_disk(follower)
        .faults(|f| f.space_left = Some(RESERVE - (16 << 20)));
    let status = wait_for(
        Duration::from_secs(20),
        "the follower to report its disk short",
        || async {
            let s = cluster.status(follower).await?;
            (!s.disk.is_empty()).then_some(s)
        },
    )
    .await;
    assert!(status.disk.contains("reserve"), "{}", status.disk);
    let held = status.tree_size;
    let ahead = wait_for_opt(Duration::from_secs(60), || async {
        let size = cluster.status(leader).await?.tree_size;
        (size >= held + 100).then_some(size)
    })
    .await;
    let Some(ahead) = ahead else {
        panic!(
            "the leader did not get 100 entries past the follower short of disk (at {held})\n{}",
            cluster.describe().await
        );
    };
    let behind = cluster.status(follower).await.expect("status").tree_size;
    assert!(
        behind + 50 < ahead,
        "the follower short of disk took entries: {behind} of the leader's {ahead}"
    );
    let metrics = cluster.scrape(follower).await.expect("metrics");
    assert!(
        metrics.contains("veritrail_disk_reserve_reached 1"),
        "the follower's metrics do not show the reserve reached"
    );
    // It stood for no election while it missed heartbeats: its term is not
    // past the leader's (a candidate's would be, and would depose the
    // leader once the follower took entries again).
    let (f_term, l_term) = (
        cluster.status(follower).await.expect("status").term,
        cluster.status(leader).await.expect("status").term,
    );
    assert!(
        f_term <= l_term,
        "the follower short of disk stood for election: term {f_term}, the leader's {l_term}"
    );
    let mut left = None;
    cluster.fault_disk(follower).faults(|f| left = f.space_left);
    eprintln!("the follower held {behind} of {ahead} entries, {left:?} bytes of space left");
    assert!(
        !cluster.nodes[follower].has_exited(),
        "the follower stopped"
    );

    cluster.fault_disk(follower).faults(|f| f.space_left = None);
    wait_for(
        Duration::from_secs(20),
        "the follower to report room again",
        || async {
            cluster
                .status(follower)
                .await?
                .disk
                .is_empty()
                .then_some(())
        },
    )
    .await;
    appends_go_on(&cluster, &acked, 20, "space freed").await;
    load.stop().await;
    every_node_back_and_in_step(&cluster, "space freed").await;
    nothing_acknowledged_is_lost(&client, &acked, "space freed").await;
}

/// Bytes that do not compress, so that entries fill many table blocks.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One scan of node `i`'s own state: the entries it answered (seq and hash),
/// and the code of the error that ended it, if one did.
async fn scan_of(
    cluster: &Cluster,
    i: usize,
    request: ScanRequest,
) -> (Vec<(u64, Vec<u8>)>, Option<tonic::Code>) {
    let mut client = cluster.client(i).await;
    let mut stream = match client.scan(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => return (Vec::new(), Some(status.code())),
    };
    let mut got = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(r)) => {
                let e = r.entry.expect("entry");
                got.push((e.seq, e.entry_hash));
            }
            Ok(None) => return (got, None),
            Err(status) => return (got, Some(status.code())),
        }
    }
}

/// Reads of a follower's table files fail (EIO) once its log is in them and
/// its caches are cold: every read it answers is the leader's answer, and
/// every other read is an error (`INTERNAL`, "storage"); no scan ends early
/// as if the log were shorter. (Before, a scan filtered on two indexed
/// fields took the read error for the end of the index and answered fewer
/// entries than the log holds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_table_read_is_an_error_never_a_wrong_answer() {
    const EVENTS: u64 = 1200;
    let mut cluster = Cluster::start(
        3,
        ClusterOptions {
            fault_disks: true,
            metrics: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = cluster.sdk();
    for batch in 0..EVENTS / 100 {
        let events = (0..100)
            .map(|n| {
                let id = format!("e{}", batch * 100 + n);
                let mut event = sdk_event("tables", &id);
                event.payload = noise(batch * 100 + n, 4096);
                event
            })
            .collect();
        client.append_batch(events).await.expect("append");
    }
    let size = every_node_back_and_in_step(&cluster, "written").await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let local = ReadConsistency::Local as i32;
    let all = ScanRequest {
        consistency: local,
        ..ScanRequest::default()
    };
    // Two indexed fields: the node leapfrogs two index iterators.
    let filtered = ScanRequest {
        source: Some("tables".into()),
        action: Some("invoice.refund".into()),
        consistency: local,
        ..ScanRequest::default()
    };
    let (want_all, failed) = scan_of(&cluster, leader, all.clone()).await;
    assert!(
        failed.is_none() && want_all.len() as u64 == size,
        "the leader's scan"
    );
    let (want_filtered, failed) = scan_of(&cluster, leader, filtered.clone()).await;
    assert!(
        failed.is_none() && want_filtered.len() as u64 == EVENTS,
        "the leader's filtered scan"
    );

    // Twice restarted: the first start moves what its WAL held into table
    // files, the second leaves every data block cold, in no cache.
    for _ in 0..2 {
        cluster.kill(follower);
        cluster.restart(follower);
        every_node_back_and_in_step(&cluster, "restarted").await;
    }
    // The first 100 entries read once: in the follower's block cache, they
    // can still be answered from memory, and rightly.
    let mut reader = cluster.client(follower).await;
    for seq in 0..100 {
        reader
            .get_entry(GetEntryRequest {
                key: Some(Key::Seq(seq)),
                consistency: local,
            })
            .await
            .expect("read before the fault");
    }
    cluster
        .fault_disk(follower)
        .faults(|f| f.read_errors = vec![".sst".into()]);

    let mut errors = 0;
    let mut answered = 0;
    let mut codes = std::collections::BTreeSet::new();
    // A node that stopped (a failed read in a compaction stops its writes,
    // and Raft's next write stops the node) answers UNAVAILABLE; a running
    // one, INTERNAL (checked below, once it is known which).
    let refused =
        |code: tonic::Code| matches!(code, tonic::Code::Internal | tonic::Code::Unavailable);
    for (what, request, want) in [
        ("scan", all, &want_all),
        ("filtered scan", filtered, &want_filtered),
    ] {
        let (got, failed) = scan_of(&cluster, follower, request).await;
        assert_eq!(
            got[..],
            want[..got.len().min(want.len())],
            "{what}: an answer differs from the leader's"
        );
        // Both read table blocks no cache holds: each must fail, saying so.
        match failed {
            Some(code) => {
                assert!(refused(code), "{what}: {code:?}");
                codes.insert(format!("{code:?}"));
            }
            None => panic!(
                "{what}: ended after {} of {} entries without an error",
                got.len(),
                want.len()
            ),
        }
        errors += 1;
        answered += got.len();
    }
    for (seq, hash) in want_all.iter().step_by(7) {
        let got = reader
            .get_entry(GetEntryRequest {
                key: Some(Key::Seq(*seq)),
                consistency: local,
            })
            .await;
        match got {
            Ok(r) => {
                assert_eq!(
                    r.into_inner().entry.map(|e| e.entry_hash).as_ref(),
                    Some(hash),
                    "entry {seq} differs from the leader's"
                );
                answered += 1;
            }
            Err(status) => {
                assert!(refused(status.code()), "entry {seq}: {status}");
                codes.insert(format!("{:?}", status.code()));
                errors += 1;
            }
        }
    }
    eprintln!(
        "{answered} answers, all the leader's; {errors} reads refused; the follower {}",
        if cluster.nodes[follower].has_exited() {
            "stopped"
        } else {
            "still runs"
        }
    );
    assert!(errors > 0, "no read met the fault: the test tested nothing");
    if !cluster.nodes[follower].has_exited() {
        assert_eq!(
            codes.into_iter().collect::<Vec<_>>(),
            ["Internal"],
            "a running node refuses a read its disk failed with INTERNAL"
        );
    }
    assert!(
        answered > 0,
        "the entries in the block cache were not answered"
    );
    // Counted, unless the node stopped (a failed read in a compaction stops
    // its writes, and Raft's next write stops the node).
    match cluster.scrape(follower).await {
        Some(metrics) => assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("veritrail_storage_errors_total ") && !l.ends_with(" 0")),
            "the failed reads are not counted"
        ),
        None => assert!(cluster.nodes[follower].has_exited(), "no metrics"),
    }

    cluster
        .fault_disk(follower)
        .faults(|f| f.read_errors.clear());
    if cluster.nodes[follower].has_exited() {
        cluster.restart(follower);
    }
    client
        .append(sdk_event("tables", "after"))
        .await
        .expect("append after");
    every_node_back_and_in_step(&cluster, "read errors over").await;
}

/// One follower's disk turns slow (every sync takes 1.5 s, longer than the
/// election timeout plus the leader's lease) under load. The follower falls
/// far behind, but the cluster does not notice beyond that: the leader keeps
/// its term (the follower stands for no election: its syncs run beside
/// openraft's core, which keeps taking heartbeats, and its log lacks entries
/// the leader announced committed), appends go on with the other follower, and
/// once the disk is fast again the slow one catches up with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_slow_disk_deposes_no_leader() {
    const SLOW: Duration = Duration::from_millis(1500);
    const WATCHED: Duration = Duration::from_secs(20);
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            fault_disks: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let client = cluster.sdk();
    let acked: Acked = Arc::default();
    let load = Load::start(&client, &acked, "slow disk").await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let term = cluster.status(leader).await.expect("status").term;

    cluster.fault_disk(follower).faults(|f| f.sync_delay = SLOW);
    let started = std::time::Instant::now();
    let mut terms_seen = vec![term];
    while started.elapsed() < WATCHED {
        for i in 0..3 {
            if let Some(s) = cluster.status(i).await
                && !terms_seen.contains(&s.term)
            {
                terms_seen.push(s.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let behind = cluster.status(follower).await.expect("status").tree_size;
    let ahead = cluster.status(leader).await.expect("status").tree_size;
    eprintln!(
        "slow disk: in {WATCHED:?} the follower held {behind} of the leader's {ahead} entries; \
         terms seen {terms_seen:?}"
    );
    assert!(
        behind < ahead,
        "the slow follower kept up ({behind} of {ahead}): the test did not slow it"
    );
    assert_eq!(
        terms_seen,
        vec![term],
        "a follower with a slow disk raised the term: elections deposed the leader"
    );
    appends_go_on(&cluster, &acked, 20, "slow disk").await;

    cluster
        .fault_disk(follower)
        .faults(|f| f.sync_delay = Duration::ZERO);
    load.stop().await;
    every_node_back_and_in_step(&cluster, "disk fast again").await;
    nothing_acknowledged_is_lost(&client, &acked, "slow disk").await;
}

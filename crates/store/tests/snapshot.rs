//! Snapshots: recorded as a point of the log, written to a file only when read,
//! installed by streaming; an installing node ends with the same entries and
//! root, byte for byte, in bounded memory.

mod common;

use common::{Harness, event};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use veritrail_store::{RequestOutcome, TypeConfig};

async fn build(h: &Harness) -> Snapshot<TypeConfig> {
    let mut sm = h.store().state_machine.clone();
    let mut builder = sm.get_snapshot_builder().await;
    builder.build_snapshot().await.expect("snapshot builds")
}

async fn install(
    h: &Harness,
    snapshot: Snapshot<TypeConfig>,
) -> Result<(), openraft::StorageError<u64>> {
    let mut sm = h.store().state_machine.clone();
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await
}

fn same_log(a: &Harness, b: &Harness) {
    let (ta, tb) = (a.store().reader.tail(), b.store().reader.tail());
    assert_eq!(ta, tb);
    for seq in 0..ta.size {
        let x = a.store().reader.entry(seq).expect("read").expect("present");
        let y = b.store().reader.entry(seq).expect("read").expect("present");
        assert_eq!(x.canonical, y.canonical, "entry {seq}");
    }
}

#[tokio::test]
async fn install_into_an_empty_node_gives_the_same_log() {
    let mut a = Harness::new();
    a.install_membership_with_keys().await;
    a.fill("svc", 300, 37).await;
    let snapshot = build(&a).await;
    let meta = snapshot.meta.clone();
    let b = Harness::new();
    install(&b, snapshot).await.expect("installs");
    same_log(&a, &b);
    // The installed snapshot is b's current one, and its state is the snapshot's.
    let mut sm = b.store().state_machine.clone();
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, meta);
    assert_eq!(sm.applied_state().await.expect("state").0, meta.last_log_id);
    // Indexes were rebuilt: deduplication and lookups work on b.
    assert_eq!(
        b.store().reader.seq_of("svc", "e123").expect("read"),
        Some(123)
    );
}

#[tokio::test]
async fn install_extends_a_node_that_holds_a_prefix() {
    let mut a = Harness::new();
    let mut b = Harness::new();
    for h in [&mut a, &mut b] {
        h.fill("svc", 50, 10).await;
    }
    a.fill("late", 70, 10).await;
    install(&b, build(&a).await).await.expect("installs");
    same_log(&a, &b);
    b.reopen();
    same_log(&a, &b);
}

#[tokio::test]
async fn install_refuses_a_different_history() {
    let mut a = Harness::new();
    a.fill("svc", 30, 10).await;
    let mut b = Harness::new();
    b.fill("other", 10, 10).await;
    let before = b.store().reader.tail();
    let error = install(&b, build(&a).await).await.expect_err("must refuse");
    assert!(error.to_string().contains("different history"), "{error}");
    assert_eq!(b.store().reader.tail(), before);
}

#[tokio::test]
async fn install_refuses_a_corrupted_file_and_writes_nothing() {
    use std::io::{Seek, SeekFrom, Write};
    let mut a = Harness::new();
    a.fill("svc", 40, 10).await;
    let snapshot = build(&a).await;
    // Corrupt a copy of the file in the middle.
    let mut file = snapshot.snapshot.into_std().await.expect("written");
    let mut copy = tempfile::tempfile().expect("temp file");
    file.seek(SeekFrom::Start(0)).expect("seek");
    std::io::copy(&mut file, &mut copy).expect("copy");
    let len = copy.seek(SeekFrom::End(0)).expect("len");
    copy.seek(SeekFrom::Start(len / 2)).expect("seek");
    copy.write_all(&[0x5a]).expect("write");
    let b = Harness::new();
    let corrupted = Snapshot {
        meta: snapshot.meta,
        snapshot: Box::new(tokio::fs::File::from_std(copy).into()),
    };
    let error = install(&b, corrupted).await.expect_err("must refuse");
    assert!(error.to_string().contains("digest"), "{error}");
    assert_eq!(b.store().reader.tail().size, 0);
}

/// Peak resident memory of this process in KiB, and a reset of it (Linux).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset peak RSS");
}

/// 200,000 entries of about 1.3 KB each: a snapshot of some 270 MB. Loading it
/// whole would push the peak far over the bound; streaming stays under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_entry_snapshot_round_trips_in_bounded_memory() {
    const ENTRIES: u64 = 200_000;
    let mut a = Harness::new();
    let mut i = 0;
    while i < ENTRIES {
        let events = (i..(i + 2000).min(ENTRIES))
            .map(|k| {
                let mut e = event("bulk", &format!("e{k}"));
                e.payload = vec![(k % 251) as u8; 1024];
                e
            })
            .collect();
        assert!(matches!(
            a.append("bulk", events).await,
            RequestOutcome::Accepted(_)
        ));
        i += 2000;
    }
    let snapshot = build(&a).await;
    let b = Harness::new();
    reset_peak_rss();
    let baseline = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    install(&b, snapshot).await.expect("installs");
    let growth_mib = peak_rss_kib().saturating_sub(baseline) / 1024;
    println!("install of {ENTRIES} entries: peak RSS grew by {growth_mib} MiB");
    assert!(
        growth_mib < 160,
        "install grew the peak RSS by {growth_mib} MiB"
    );
    assert_eq!(a.store().reader.tail(), b.store().reader.tail());
    for seq in [0, 1, 99_999, 131_071, 131_072, ENTRIES - 1] {
        assert_eq!(
            a.store()
                .reader
                .entry(seq)
                .expect("read")
                .map(|e| e.canonical),
            b.store()
                .reader
                .entry(seq)
                .expect("read")
                .map(|e| e.canonical)
        );
    }
}

/// A snapshot received the way openraft receives one (into a file from
/// `begin_receiving_snapshot`) leaves nothing behind once installed, and an
/// interrupted transfer's file is removed when the store opens again. fsck
/// checks the current snapshot's digest.
#[tokio::test]
async fn received_files_do_not_accumulate() {
    use tokio::io::AsyncWriteExt as _;
    let mut a = Harness::new();
    a.install_membership_with_keys().await;
    a.fill("svc", 200, 17).await;
    let mut snapshot = build(&a).await;
    let bytes = read_all(&mut snapshot).await;

    let mut b = Harness::new();
    let snapshots = b.dir.path().join("snapshots");
    let leftovers = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .expect("snapshot dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("incoming-"))
            .count()
    };
    let mut sm = b.store().state_machine.clone();
    let mut received = sm.begin_receiving_snapshot().await.expect("begin");
    received.write_all(&bytes).await.expect("write");
    received.flush().await.expect("flush");
    assert_eq!(leftovers(&snapshots), 1);
    sm.install_snapshot(&snapshot.meta, received)
        .await
        .expect("installs");
    drop(sm);
    assert_eq!(
        leftovers(&snapshots),
        0,
        "the received file is removed after install"
    );
    same_log(&a, &b);

    // A transfer cut short by a crash: its file is gone after reopening.
    let mut sm = b.store().state_machine.clone();
    let mut partial = sm.begin_receiving_snapshot().await.expect("begin");
    partial.write_all(&bytes[..100]).await.expect("write");
    drop(partial);
    drop(sm);
    b.reopen();
    assert_eq!(
        leftovers(&snapshots),
        0,
        "an interrupted transfer is cleaned up on open"
    );

    // The installed snapshot is b's current one. Reading it writes its file,
    // and fsck checks that file's digest.
    let mut current = b
        .store()
        .state_machine
        .clone()
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(
        read_all(&mut current).await,
        bytes,
        "b's snapshot is the same bytes as a's"
    );
    drop(current);
    b.close();
    let report = veritrail_store::fsck(b.dir.path()).expect("fsck");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let current = std::fs::read_dir(&snapshots)
        .expect("dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .expect("a current snapshot")
        .path();
    let mut bytes = std::fs::read(&current).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&current, bytes).expect("write");
    let report = veritrail_store::fsck(b.dir.path()).expect("fsck");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == veritrail_store::ProblemKind::SnapshotCorrupt),
        "{:?}",
        report.problems
    );
}

fn snapshot_files(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.dir.path().join("snapshots"))
        .expect("snapshot dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn read_all(snapshot: &mut Snapshot<TypeConfig>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    snapshot
        .snapshot
        .seek(std::io::SeekFrom::Start(0))
        .await
        .expect("seek");
    let mut bytes = Vec::new();
    snapshot
        .snapshot
        .read_to_end(&mut bytes)
        .await
        .expect("read");
    bytes
}

/// Building a snapshot records a point and copies nothing. The file is written
/// when the data is first read, shared by later readers, and removed once a
/// newer snapshot is recorded.
#[tokio::test]
async fn a_snapshot_is_written_only_when_read_and_once() {
    let mut a = Harness::new();
    a.install_membership_with_keys().await;
    a.fill("svc", 120, 9).await;
    let mut first = build(&a).await;
    assert!(
        snapshot_files(&a).is_empty(),
        "building wrote a file: {:?}",
        snapshot_files(&a)
    );
    let bytes = read_all(&mut first).await;
    let written = snapshot_files(&a);
    assert_eq!(written, vec![format!("{}.snap", first.meta.snapshot_id)]);

    // A second reader (another lagging follower) gets the same file.
    let mut sm = a.store().state_machine.clone();
    let mut current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, first.meta);
    assert_eq!(read_all(&mut current).await, bytes);
    assert_eq!(snapshot_files(&a), written);

    // A newer snapshot replaces the point and removes the older file. A reader
    // that asked for the older snapshot before still reads it whole: its file
    // is written again for that reader alone, and leaves no name behind.
    a.fill("more", 30, 9).await;
    let mut held = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    let second = build(&a).await;
    assert!(snapshot_files(&a).is_empty(), "{:?}", snapshot_files(&a));
    assert_eq!(read_all(&mut held).await, bytes);
    assert!(snapshot_files(&a).is_empty(), "{:?}", snapshot_files(&a));
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("present");
    assert_eq!(current.meta, second.meta);
}

/// The log goes on growing after a snapshot is recorded. Read later, the
/// snapshot still holds exactly the entries it was taken at, and a node that
/// installs it ends at that point of the log.
#[tokio::test]
async fn a_snapshot_read_later_holds_its_own_point() {
    let mut a = Harness::new();
    a.install_membership_with_keys().await;
    a.fill("svc", 100, 11).await;
    let snapshot = build(&a).await;
    let at = a.store().reader.tail();
    a.fill("later", 60, 11).await;
    assert_eq!(a.store().reader.tail().size, at.size + 60);

    let b = Harness::new();
    install(&b, snapshot).await.expect("installs");
    assert_eq!(b.store().reader.tail(), at);
    assert_eq!(
        b.store().reader.root_at(at.size).expect("root"),
        a.store().reader.root_at(at.size).expect("root")
    );
    assert_eq!(b.store().reader.entry(at.size).expect("read"), None);
}

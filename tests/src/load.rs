//! Load for fault tests: writers that append until stopped, each event
//! retried under its own id until acknowledged, and the checks that follow a
//! fault: every node back and in step, nothing acknowledged lost or doubled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use veritrail_client::{Client, ScanQuery};
use veritrail_core::Hash;

use crate::{Cluster, ClusterOptions, sdk_event, wait_for};

/// The source of every event the writers append.
pub const SOURCE: &str = "load";

/// Every acknowledged event id, with the seq and hash it was acknowledged with.
pub type Acked = Arc<Mutex<BTreeMap<String, (u64, Hash)>>>;

/// Appends events one after another, each retried under its own id until it
/// is acknowledged or `stop` is set.
async fn writer(w: usize, client: Client, stop: Arc<AtomicBool>, acked: Acked) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("w{w}-{n}");
        // One event in four is large, so that what a node writes between two
        // syncs spans many pages, and a torn cut can tear inside it.
        let mut event = sdk_event(SOURCE, &id);
        if n % 4 == 3 {
            event.payload = id.bytes().cycle().take(16 * 1024).collect();
        }
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(10), client.append(event.clone())).await;
            if let Ok(Ok(receipt)) = attempt {
                acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), (receipt.seq, receipt.entry_hash));
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n += 1;
    }
}

/// Every node answers, they agree on a leader, and every node holds the
/// leader's whole log: the sizes and roots match.
pub async fn every_node_back_and_in_step(cluster: &Cluster, what: &str) -> u64 {
    let leader = wait_for(
        Duration::from_secs(60),
        &format!("{what}: a leader"),
        || async {
            let mut leaders = Vec::new();
            for i in 0..cluster.nodes.len() {
                leaders.push(cluster.status(i).await?.leader_id?);
            }
            leaders.windows(2).all(|w| w[0] == w[1]).then(|| leaders[0])
        },
    )
    .await;
    let leader = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("the leader is a node");
    wait_for(
        Duration::from_secs(60),
        &format!("{what}: every node in step with the leader"),
        || async {
            let want = cluster.status(leader).await?;
            for i in 0..cluster.nodes.len() {
                let status = cluster.status(i).await?;
                if status.tree_size != want.tree_size || status.root_hash != want.root_hash {
                    return None;
                }
            }
            Some(want.tree_size)
        },
    )
    .await
}

/// Every acknowledged event is in the log exactly once, where it was
/// acknowledged, with the hash it was acknowledged with.
pub async fn nothing_acknowledged_is_lost(client: &Client, acked: &Acked, what: &str) {
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut found: BTreeMap<String, Vec<(u64, Hash)>> = BTreeMap::new();
    let mut scan = client.scan(ScanQuery {
        source: Some(SOURCE.into()),
        ..ScanQuery::default()
    });
    while let Some(entry) = scan.next().await {
        let entry = entry.expect("scan");
        found
            .entry(entry.entry.event.event_id.clone())
            .or_default()
            .push((entry.seq(), entry.hash));
    }
    for (id, (seq, hash)) in &acked {
        assert_eq!(
            found.get(id).map(Vec::as_slice),
            Some(&[(*seq, *hash)][..]),
            "{what}: {id} was acknowledged at seq {seq}"
        );
    }
    for (id, copies) in &found {
        assert_eq!(
            copies.len(),
            1,
            "{what}: {id} is in the log {} times",
            copies.len()
        );
    }
}

/// Four writers appending until stopped, each event under an id of its own.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the writers and waits until 40 more events are acknowledged.
    pub async fn start(client: &Client, acked: &Acked, what: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let before = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
        // Writer numbers no earlier load used: ids stay unique.
        let writers = (0..4)
            .map(|w| {
                tokio::spawn(writer(
                    w + 10 * before,
                    client.clone(),
                    Arc::clone(&stop),
                    Arc::clone(acked),
                ))
            })
            .collect();
        wait_for(
            Duration::from_secs(30),
            &format!("{what}: appends under way"),
            || async {
                (acked.lock().unwrap_or_else(|p| p.into_inner()).len() >= before + 40).then_some(())
            },
        )
        .await;
        Load { stop, writers }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            let _ = w.await;
        }
    }
}

/// Three nodes, each with its data directory on the fault file system.
pub async fn on_fault_disks() -> Cluster {
    Cluster::start(
        3,
        ClusterOptions {
            fault_disks: true,
            ..ClusterOptions::default()
        },
    )
    .await
}

/// How many events have been acknowledged so far.
pub fn acked_count(acked: &Acked) -> usize {
    acked.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// Waits until `more` events beyond those acknowledged now are acknowledged.
pub async fn appends_go_on(cluster: &Cluster, acked: &Acked, more: usize, what: &str) {
    let from = acked_count(acked);
    if crate::wait_for_opt(Duration::from_secs(60), || async {
        (acked_count(acked) >= from + more).then_some(())
    })
    .await
    .is_none()
    {
        panic!(
            "{what}: {more} appends not acknowledged within 60 s\n{}",
            cluster.describe().await
        );
    }
}

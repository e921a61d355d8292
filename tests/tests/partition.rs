//! Partitions made of real packet loss (network namespaces, see
//! `tests/src/netns.rs`): a leader cut off in a minority cannot acknowledge
//! anything, the majority elects a new leader and goes on, and after healing
//! the old leader rejoins with the majority's history.

use std::time::Duration;

use tonic::Code;
use veritrail_proto::v1::AppendRequest;
use veritrail_tests::{Cluster, event, sdk_event, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_rejoins_after_healing() {
    let Some(mut cluster) = Cluster::start_partitionable(3).await else {
        return;
    };
    let client = cluster.sdk();
    client
        .append(sdk_event("p", "before"))
        .await
        .expect("append before the partition");
    let old = cluster.leader().await;
    cluster.partition(&[old]);

    // Straight to the cut-off leader: it cannot reach a majority, so the
    // append must not be acknowledged.
    let mut isolated = cluster.client(old).await;
    let mut request = tonic::Request::new(AppendRequest {
        event: Some(event("p", "to-the-minority")),
    });
    request.set_timeout(Duration::from_secs(3));
    let refused = isolated
        .append(request)
        .await
        .expect_err("no quorum, no receipt");
    assert!(
        matches!(
            refused.code(),
            Code::DeadlineExceeded | Code::Unavailable | Code::Cancelled
        ),
        "{refused:?}"
    );

    // The majority elects another leader and keeps appending.
    let new = wait_for(
        Duration::from_secs(20),
        "a leader on the majority side",
        || async {
            for i in (0..3).filter(|i| *i != old) {
                let status = cluster.status(i).await?;
                let leader = status.leader_id?;
                if leader != cluster.nodes[old].id {
                    return Some(leader);
                }
            }
            None
        },
    )
    .await;
    assert_ne!(new, cluster.nodes[old].id);
    for n in 0..20 {
        client
            .append(sdk_event("p", &format!("after-{n}")))
            .await
            .expect("append on the majority side");
    }

    cluster.heal();
    let target = cluster
        .status((old + 1) % 3)
        .await
        .expect("status")
        .tree_size;
    cluster.wait_for_size(target).await;
    let roots = cluster.roots().await;
    assert_eq!(
        roots.len(),
        1,
        "every node holds the same log after healing"
    );
    // The minority's append either committed later under the new leader (the
    // old leader may have replicated it before being cut off) or never did;
    // it is at most once in the log.
    let entries = client
        .get_by_event_id("p", "to-the-minority")
        .await
        .map(|_| 1)
        .unwrap_or(0);
    assert!(entries <= 1);
}

/// A follower's disk is damaged: `fsck` flags it, and the node is replaced by
/// an empty one with a new id at the same address, which catches up; nothing
/// acknowledged is lost and every node ends with the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_node_is_flagged_and_replaced_under_a_new_id() {
    use rand::SeedableRng;
    // Replacing a node at its address needs its own network namespace.
    let Some(mut cluster) = Cluster::start_partitionable(3).await else {
        return;
    };
    let client = cluster.sdk();
    let receipts = client
        .append_batch(
            (0..500)
                .map(|n| sdk_event("disk", &format!("d{n}")))
                .collect(),
        )
        .await
        .expect("append");
    cluster.wait_for_size(500).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (problems, refused) =
        veritrail_tests::chaos::corrupt_and_replace(&mut cluster, &mut rng, 42).await;
    assert!(problems.is_empty(), "{problems:#?}");
    // With this seed the flipped byte is in the middle of the WAL, which
    // the node reads at open: it must refuse to start rather than replay
    // around it.
    assert!(refused, "the node started on a damaged WAL");
    let status = client.status().await.expect("status");
    let voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    assert!(voters.contains(&42), "{voters:?}");
    assert_eq!(voters.len(), 3, "{voters:?}");
    cluster.wait_for_size(500).await;
    let roots = cluster.roots().await;
    assert_eq!(roots.len(), 1);
    for r in receipts.iter().step_by(50) {
        assert_eq!(client.get(r.seq).await.expect("entry").hash, r.entry_hash);
    }
}

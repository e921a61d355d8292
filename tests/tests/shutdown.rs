//! A node stops in bounded time whatever its clients keep open (issue #23).
//!
//! A `Tail` follower and an SDK producer's `AppendStream` never end by
//! themselves, and tonic's graceful shutdown waits for every open call: a
//! node asked to stop used to run on for as long as any consumer stayed
//! connected. Now SIGTERM sends the streams elsewhere (`UNAVAILABLE`, the
//! tail naming the seq to continue from), and the node exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use veritrail_client::{Producer, ProducerConfig};
use veritrail_proto::v1::TailRequest;
use veritrail_tests::{Cluster, ClusterOptions, sdk_event, wait_for};

/// Well past the default grace period (5 s): a node that still waits for its
/// streams to end by themselves fails.
const STOP_BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_sends_open_tails_and_producers_elsewhere_and_stops() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    for n in 0..5 {
        client
            .append(sdk_event("stop", &format!("before-{n}")))
            .await
            .expect("append");
    }
    let leader = cluster.leader().await;

    // A follower of the log on the leader, caught up and waiting for more.
    let mut tail = cluster
        .client(leader)
        .await
        .tail(TailRequest::default())
        .await
        .expect("tail")
        .into_inner();
    for _ in 0..5 {
        tail.message().await.expect("an entry").expect("not ended");
    }

    // A producer streaming appends to the leader, still sending.
    let producer = Arc::new(Producer::new(&client, ProducerConfig::default()).expect("producer"));
    producer
        .send(sdk_event("stop", "streamed-0"))
        .await
        .expect("send")
        .await
        .expect("the first streamed event");

    let asked = Instant::now();
    cluster.terminate(leader);
    let stopped = cluster.wait_exited(leader, STOP_BOUND).await;
    assert!(
        stopped,
        "node {} still runs {STOP_BOUND:?} after SIGTERM with a tail and a producer open:\n{}",
        cluster.nodes[leader].id,
        cluster.log_tail(leader)
    );
    eprintln!(
        "shutdown: the node exited {:?} after SIGTERM",
        asked.elapsed()
    );

    // The tail was told to go elsewhere, and from where: after what it sent.
    let mut next = 5;
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tail.message().await {
                Ok(Some(message)) => next = message.entry.expect("an entry").seq + 1,
                Ok(None) => panic!("the tail ended silently"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the tail ends");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("continue from seq {next} ")),
        "{status:?}"
    );

    // The producer goes on with the new leader.
    let receipt = wait_for(
        Duration::from_secs(30),
        "a streamed append after the stop",
        || {
            let producer = Arc::clone(&producer);
            async move {
                producer
                    .send(sdk_event("stop", "streamed-after"))
                    .await
                    .ok()?
                    .await
                    .ok()
            }
        },
    )
    .await;
    assert!(receipt.seq >= 6, "{receipt:?}");
}

//! Security (issue #9), against real nodes over real TLS: who may connect, who
//! may speak Raft, what principal an entry records, what a policy denies, and
//! what oversized or malformed input leaves behind (nothing).

use std::path::Path;
use std::time::Duration;

use tonic::Code;
use veritrail_client::{Client, Error, RetryPolicy};
use veritrail_proto::raft::raft_peer_client::RaftPeerClient;
use veritrail_proto::raft::{ForwardAppendRequest, RaftPayload};
use veritrail_proto::v1::get_entry_request::Key;
use veritrail_proto::v1::{
    AppendBatchRequest, AppendRequest, GetEntryRequest, ScanRequest, StatusRequest,
};
use veritrail_tests::{
    Cluster, ClusterOptions, ORIGIN, Pki, TEST_PRINCIPAL, event, sdk_event, veritraild, wait_for,
};

/// An SDK client presenting service `name`'s certificate, without retries.
fn sdk_as(cluster: &Cluster, name: &str) -> Client {
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.client(name);
    client_with(cluster, pki, (&cert, &key))
}

/// A client that trusts `trusted`'s CA and presents `identity`, without retries.
fn client_with(cluster: &Cluster, trusted: &Pki, identity: (&Path, &Path)) -> Client {
    let mut config = cluster.client_config(cluster.endpoints());
    let mut tls = trusted.sdk_tls(None);
    tls.identity = Some((
        std::fs::read(identity.0).expect("cert"),
        std::fs::read(identity.1).expect("key"),
    ));
    config.tls = Some(tls);
    config.retry = RetryPolicy::none();
    Client::with_config(config).expect("client")
}

fn code(error: &Error) -> Option<Code> {
    match error {
        Error::Status { code, .. } => Some(*code),
        Error::RetriesExhausted { last, .. } => code(last),
        _ => None,
    }
}

/// A raise in `payroll` that no service asked for, under `event_id`.
fn forged_event(event_id: &str) -> veritrail_core::Event {
    veritrail_core::Event {
        source: "payroll".into(),
        event_id: event_id.into(),
        actor: "mallory".into(),
        action: "salary.raise".into(),
        resource: "employee/7".into(),
        outcome: "success".into(),
        ..veritrail_core::Event::default()
    }
}

/// A TLS cluster of three holding one entry; its leader and the leader's
/// status then.
async fn cluster_with_one_entry() -> (Cluster, usize, veritrail_proto::v1::StatusResponse) {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    cluster
        .sdk()
        .append(sdk_event("tests", "before"))
        .await
        .expect("append");
    let leader = cluster.leader().await;
    let before = cluster.status(leader).await.expect("status");
    (cluster, leader, before)
}

/// A TLS cluster of three whose nodes read the CA's revocation list.
async fn with_revocation_list() -> Cluster {
    Cluster::start(
        3,
        ClusterOptions {
            crl: true,
            ..ClusterOptions::default()
        },
    )
    .await
}

async fn tree_size(cluster: &Cluster) -> u64 {
    let leader = cluster.leader().await;
    cluster.status(leader).await.expect("status").tree_size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_unknown_ca_clients_are_rejected_and_write_nothing() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let before = tree_size(&cluster).await;

    // TLS, but neither a certificate nor a token.
    let mut anonymous = veritrail_proto::v1::audit_log_client::AuditLogClient::new(
        cluster.channel_as(0, None).await,
    );
    let refused = anonymous
        .append(AppendRequest {
            event: Some(event("billing", "anon-1")),
        })
        .await
        .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("client certificate"),
        "{refused:?}"
    );
    let read = anonymous
        .get_entry(GetEntryRequest {
            key: Some(Key::Seq(0)),
            consistency: 0,
        })
        .await
        .expect_err("no credentials");
    assert_eq!(read.code(), Code::Unauthenticated);
    // Authentication comes before the body is read: a message over the limit
    // gets UNAUTHENTICATED, not a decoding error.
    let mut huge = event("billing", "anon-huge");
    huge.payload = vec![b'x'; 17 << 20];
    let refused = anonymous
        .append(AppendRequest { event: Some(huge) })
        .await
        .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut admin =
        veritrail_proto::v1::admin_client::AdminClient::new(cluster.channel_as(0, None).await);
    let status = admin
        .status(StatusRequest {})
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Plain HTTP/2 to a TLS node gets no gRPC answer at all.
    let plain = tonic::transport::Channel::from_shared(format!("http://{}", cluster.nodes[0].addr))
        .expect("endpoint")
        .timeout(Duration::from_secs(5))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let answer = veritrail_proto::v1::audit_log_client::AuditLogClient::new(channel)
            .append(AppendRequest {
                event: Some(event("billing", "plain-1")),
            })
            .await;
        // Refused by the transport, not by a handler that read the request.
        let refused = answer.expect_err("a plaintext append was answered");
        assert_ne!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }

    // A certificate from another CA, with the same SPIFFE ID as a real service.
    let other = tempfile::TempDir::new().expect("dir");
    let rogue = Pki::create(other.path().join("pki"));
    let (cert, key) = rogue.client("billing");
    let pki = cluster.pki.as_ref().expect("TLS");
    let impostor = client_with(&cluster, pki, (&cert, &key));
    let refused = impostor
        .append(sdk_event("billing", "rogue-1"))
        .await
        .expect_err("unknown CA");
    assert!(
        matches!(
            code(&refused),
            // TLS 1.3 finishes the client's side of the handshake before the
            // server checks the client's certificate: the refusal then arrives
            // as the connection closing under the first call.
            Some(Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Unauthenticated)
        ),
        "{refused:?}"
    );
    // And a client that trusts only the other CA does not accept our nodes,
    // even when it presents a certificate our nodes would accept.
    let (good_cert, good_key) = pki.client("billing");
    let fooled = client_with(&cluster, &rogue, (&good_cert, &good_key));
    assert!(
        fooled.status().await.is_err(),
        "a node passed for the rogue CA's"
    );

    assert_eq!(tree_size(&cluster).await, before, "something was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_speak_raft_and_the_principal_comes_from_the_certificate() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let pki = cluster.pki.as_ref().expect("TLS");

    // A valid client certificate is not a member's.
    let client_identity = pki.client("billing");
    let id = (client_identity.0.as_path(), client_identity.1.as_path());
    let mut peer = RaftPeerClient::new(cluster.channel_as(0, Some(id)).await);
    let vote = peer
        .vote(RaftPayload {
            postcard: vec![1, 2, 3],
            to_node_id: cluster.nodes[0].id,
            ..Default::default()
        })
        .await
        .expect_err("not a member");
    assert_eq!(vote.code(), Code::PermissionDenied, "{vote:?}");
    // Forwarding is how a follower passes on a principal: a client must not
    // be able to use it to write in another service's name.
    let events = vec![forged_event("forged-1")];
    let forged = peer
        .forward_append(ForwardAppendRequest {
            principal: "spiffe://veritrail.test/service/payroll".into(),
            events: postcard::to_stdvec(&events).expect("encode"),
            ..Default::default()
        })
        .await
        .expect_err("not a member");
    assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");

    // A node certificate speaks only for its own node: node 9 cannot ask for
    // votes, or send appends, as node 3.
    let (cert, key) = pki.node(9, "127.0.0.1");
    let mut stranger = RaftPeerClient::new(cluster.channel_as(0, Some((&cert, &key))).await);
    let as_node_3 = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(99, 3), None);
    let vote = stranger
        .vote(RaftPayload {
            postcard: postcard::to_stdvec(&as_node_3).expect("encode"),
            to_node_id: cluster.nodes[0].id,
            ..Default::default()
        })
        .await
        .expect_err("in another node's name");
    assert_eq!(vote.code(), Code::PermissionDenied, "{vote:?}");
    assert!(
        vote.message()
            .contains("node 9 may not send Raft messages in the name of node 3"),
        "{vote:?}"
    );

    // The principal is the certificate's, whatever the request carries: the
    // wire has no principal field, and a header or attribute claiming one is
    // just data.
    let billing = sdk_as(&cluster, "billing");
    let mut claiming = sdk_event("billing", "claim-1");
    claiming.attributes.insert(
        "principal".into(),
        "spiffe://veritrail.test/service/payroll".into(),
    );
    let receipt = billing.append(claiming).await.expect("append");
    let mut raw = veritrail_proto::v1::audit_log_client::AuditLogClient::new(
        cluster
            .channel_as((cluster.leader().await + 1) % 3, Some(id))
            .await,
    );
    let mut request = tonic::Request::new(AppendRequest {
        event: Some(event("billing", "claim-2")),
    });
    request.metadata_mut().insert(
        "x-veritrail-principal",
        "spiffe://veritrail.test/service/payroll"
            .parse()
            .expect("value"),
    );
    // Through a follower: the principal survives forwarding unchanged.
    let second = raw.append(request).await.expect("append").into_inner();
    let second_seq = second.receipt.expect("receipt").seq;
    for seq in [receipt.seq, second_seq] {
        let entry = billing.get(seq).await.expect("entry");
        assert_eq!(
            entry.entry.principal,
            "spiffe://veritrail.test/service/billing"
        );
    }
    // The nodes' own source is theirs: a client cannot forge their records.
    let forged = billing
        .append(sdk_event("veritrail.security", "fake-denial"))
        .await
        .expect_err("a reserved source");
    assert_eq!(code(&forged), Some(Code::PermissionDenied), "{forged:?}");
    // The fixture's own client is recorded as itself.
    let own = cluster
        .sdk()
        .append(sdk_event("tests", "own-1"))
        .await
        .expect("append");
    assert_eq!(
        cluster
            .sdk()
            .get(own.seq)
            .await
            .expect("entry")
            .entry
            .principal,
        TEST_PRINCIPAL
    );
    let size = tree_size(&cluster).await;
    assert_eq!(size, 3, "only the three legitimate appends were written");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

/// `veritraild token`: the token, and the TOML entry for the tokens file.
fn make_token(principal: &str) -> (String, String) {
    let out = std::process::Command::new(veritraild())
        .args(["token", "--principal", principal])
        .output()
        .expect("veritraild token");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let token = text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("token line")
        .to_owned();
    let toml = text
        .lines()
        .skip_while(|l| !l.starts_with("[[token]]"))
        .collect::<Vec<_>>()
        .join("\n");
    (token, toml + "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_keeps_each_service_to_its_own_source_and_records_denials() {
    let config_dir = tempfile::TempDir::new().expect("dir");
    let policy = write(
        config_dir.path(),
        "policy.toml",
        "[[grant]]\nprincipals = [\"spiffe://veritrail.test/service/*\"]\nappend = [\"{name}\"]\n\
         [[grant]]\nprincipals = [\"spiffe://veritrail.test/service/auditor\", \"reporting-job\"]\nread = true\nproofs = true\n\
         [[grant]]\nprincipals = [\"spiffe://veritrail.test/service/tester\"]\nread = true\nproofs = true\nadmin = true\n",
    );
    let (token, token_toml) = make_token("reporting-job");
    let tokens = write(config_dir.path(), "tokens.toml", &token_toml);
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: format!("[auth]\npolicy_file = \"{policy}\"\ntokens_file = \"{tokens}\"\n"),
            ..ClusterOptions::default()
        },
    )
    .await;

    let billing = sdk_as(&cluster, "billing");
    billing
        .append(sdk_event("billing", "ok-1"))
        .await
        .expect("its own source");
    let denied = billing
        .append(sdk_event("payroll", "steal-1"))
        .await
        .expect_err("another service's source");
    assert_eq!(code(&denied), Some(Code::PermissionDenied), "{denied:?}");
    assert!(denied.to_string().contains("payroll"), "{denied}");
    // A batch with one foreign event is refused whole.
    let mut batch = veritrail_proto::v1::audit_log_client::AuditLogClient::new({
        let pki = cluster.pki.as_ref().expect("TLS");
        let (cert, key) = pki.client("billing");
        cluster.channel_as(0, Some((&cert, &key))).await
    });
    let mixed = batch
        .append_batch(AppendBatchRequest {
            events: vec![event("billing", "ok-2"), event("payroll", "steal-2")],
        })
        .await
        .expect_err("one foreign event");
    assert_eq!(mixed.code(), Code::PermissionDenied);
    // Appending does not grant reading.
    let read = billing.get(0).await.expect_err("may not read");
    assert_eq!(code(&read), Some(Code::PermissionDenied), "{read:?}");
    // Nor administering.
    let mut admin = veritrail_proto::v1::admin_client::AdminClient::new({
        let pki = cluster.pki.as_ref().expect("TLS");
        let (cert, key) = pki.client("billing");
        cluster.channel_as(0, Some((&cert, &key))).await
    });
    let backup = admin
        .backup(veritrail_proto::v1::BackupRequest {})
        .await
        .expect_err("may not take a backup");
    assert_eq!(backup.code(), Code::PermissionDenied);

    // The auditor reads and proves, and may not append, even to its own name.
    let auditor = sdk_as(&cluster, "auditor");
    assert_eq!(
        auditor.get(0).await.expect("read").entry.event.event_id,
        "ok-1"
    );
    let refused = auditor
        .append(sdk_event("billing", "auditor-1"))
        .await
        .expect_err("auditors do not append");
    assert_eq!(code(&refused), Some(Code::PermissionDenied));

    // A bearer token authenticates as its principal; a wrong one does not.
    let mut config = cluster.client_config(cluster.endpoints());
    if let Some(tls) = &mut config.tls {
        tls.identity = None;
    }
    config.token = Some(token.clone());
    config.retry = RetryPolicy::none();
    let job = Client::with_config(config.clone()).expect("client");
    job.get(0).await.expect("the token's principal may read");
    config.token = Some(format!("{token}x"));
    let wrong = Client::with_config(config).expect("client");
    let refused = wrong.get(0).await.expect_err("wrong token");
    assert_eq!(code(&refused), Some(Code::Unauthenticated), "{refused:?}");

    // Each denied append is in the log, recorded by a node in its own name.
    let tester = cluster.sdk();
    let denials = wait_for(
        Duration::from_secs(20),
        "the denials in the log",
        || async {
            let mut scan = tester.scan(veritrail_client::ScanQuery {
                source: Some("veritrail.security".into()),
                ..veritrail_client::ScanQuery::default()
            });
            let mut found = Vec::new();
            while let Some(entry) = futures::StreamExt::next(&mut scan).await {
                found.push(entry.ok()?.entry);
            }
            (found.len() >= 3).then_some(found)
        },
    )
    .await;
    for entry in &denials {
        assert_eq!(entry.event.action, "append.denied");
        assert_eq!(entry.event.outcome, "denied");
        assert!(
            entry
                .principal
                .starts_with(&format!("spiffe://veritrail.test/veritrail/{ORIGIN}/node/")),
            "{}",
            entry.principal
        );
    }
    let billing_denials: Vec<_> = denials
        .iter()
        .filter(|e| e.event.actor == "spiffe://veritrail.test/service/billing")
        .collect();
    assert_eq!(billing_denials.len(), 2, "{denials:?}");
    assert!(
        billing_denials
            .iter()
            .all(|e| e.event.resource == "source/payroll")
    );
    // Nothing of payroll's was written.
    let mut raw = cluster.client(0).await;
    let mut scan = raw
        .scan(ScanRequest {
            source: Some("payroll".into()),
            ..ScanRequest::default()
        })
        .await
        .expect("scan")
        .into_inner();
    assert!(
        scan.message().await.expect("scan").is_none(),
        "payroll has entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_oversized_and_excessive_input_with_nothing_written() {
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: "[grpc]\nmessage_max_bytes = 2097152\nrequest_max_events = 64\n\
                         [batch]\nmax_bytes = 1048576\n\
                         [rate_limit]\nevents_per_s = 100\nevents_burst = 200\n"
                .into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    let mut client = cluster.client(0).await;
    let before = tree_size(&cluster).await;

    // A message over grpc.message_max_bytes is refused before it is decoded.
    let mut huge = event("billing", "huge-1");
    huge.payload = vec![b'x'; 3 << 20];
    let refused = client
        .append(AppendRequest { event: Some(huge) })
        .await
        .expect_err("oversized message");
    assert!(
        matches!(
            refused.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{refused:?}"
    );
    // An event over the payload limit, in a message under the message limit.
    let mut big = event("billing", "big-1");
    big.payload = vec![b'x'; 1 << 20];
    let refused = client
        .append(AppendRequest { event: Some(big) })
        .await
        .expect_err("oversized payload");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // More events than grpc.request_max_events.
    let many: Vec<_> = (0..65)
        .map(|i| event("billing", &format!("many-{i}")))
        .collect();
    let refused = client
        .append_batch(AppendBatchRequest { events: many })
        .await
        .expect_err("too many events");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("request_max_events"),
        "{refused:?}"
    );
    // Malformed: a control character in a field; no event at all.
    let mut bad = event("billing", "bad-1");
    bad.actor = "alice\u{0}".into();
    let refused = client
        .append(AppendRequest { event: Some(bad) })
        .await
        .expect_err("control character");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // A right-to-left override or a line separator would reorder or break
    // the line an entry is shown in.
    for hazard in ['\u{202E}', '\u{2028}'] {
        let mut bad = event("billing", "bad-2");
        bad.resource = format!("invoice/{hazard}24");
        let refused = client
            .append(AppendRequest { event: Some(bad) })
            .await
            .expect_err("a display hazard");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("`resource`"), "{refused:?}");
    }
    let refused = client
        .append(AppendRequest { event: None })
        .await
        .expect_err("no event");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    // Bytes that are not an AppendRequest: its field 1 is a message, and
    // these carry a number there. The caller's mistake, not the node's
    // failure (INTERNAL is for storage and Raft, docs/ERRORS.md).
    let mut raw = tonic::client::Grpc::new(cluster.channel(0).await);
    raw.ready().await.expect("ready");
    let refused = raw
        .unary(
            tonic::Request::new(veritrail_proto::v1::TransferLeaderRequest { to_node_id: 1 }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/veritrail.v1.AuditLog/Append"),
            tonic_prost::ProstCodec::<_, veritrail_proto::v1::AppendResponse>::default(),
        )
        .await
        .expect_err("undecodable protobuf");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("not a valid AppendRequest"),
        "{refused:?}"
    );
    assert_eq!(
        tree_size(&cluster).await,
        before,
        "refused input was written"
    );

    // The per-principal rate limit: a burst of 200 events, then 100/s.
    let started = std::time::Instant::now();
    let mut accepted = 0u64;
    let mut limited = None;
    for i in 0..6 {
        let events: Vec<_> = (0..64)
            .map(|j| event("billing", &format!("rate-{i}-{j}")))
            .collect();
        match client.append_batch(AppendBatchRequest { events }).await {
            Ok(r) => accepted += r.into_inner().receipts.len() as u64,
            Err(status) => {
                limited = Some(status);
                break;
            }
        }
    }
    let limited = limited.expect("the rate limit never refused");
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    assert!(limited.message().contains("rate limit"), "{limited:?}");
    let allowed = 200 + (100.0 * started.elapsed().as_secs_f64()) as u64;
    assert!(
        accepted <= allowed,
        "accepted {accepted} events; the limit allowed {allowed}"
    );
    assert_eq!(tree_size(&cluster).await, before + accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_without_tls_unless_a_loopback_development_node() {
    let dir = tempfile::TempDir::new().expect("dir");
    let run = |extra: &str| {
        let config = write(
            dir.path(),
            "node.toml",
            &format!(
                "node_id = 1\nlisten_addr = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n{extra}",
                veritrail_tests::free_port(),
                dir.path().join("data").display()
            ),
        );
        std::process::Command::new(veritraild())
            .args(["--config", &config])
            .output()
            .expect("veritraild")
    };
    let out = run("");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.ca_file"), "{stderr}");
    let out = run("advertise_addr = \"10.1.2.3:7001\"\n[tls]\ninsecure_dev = true\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10.1.2.3:7001 is not loopback"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "a refused node created its data directory"
    );

    // A development node starts, and says loudly what it is.
    let cluster = Cluster::start(
        1,
        ClusterOptions {
            insecure: true,
            ..ClusterOptions::default()
        },
    )
    .await;
    let receipt = cluster
        .sdk()
        .append(sdk_event("dev", "d-1"))
        .await
        .expect("append");
    assert_eq!(
        cluster
            .sdk()
            .get(receipt.seq)
            .await
            .expect("entry")
            .entry
            .principal,
        "anonymous"
    );
    assert!(cluster.log_tail(0).contains("INSECURE DEVELOPMENT NODE"));
}

/// A node certificate of this cluster's CA whose node never was a member
/// (issue #17) may not forward appends, start elections, ask for read
/// indexes or have checkpoints signed: every call is refused with
/// PERMISSION_DENIED, nothing is written, and the leader keeps leading in its
/// term. (Its votes and appends: `a_node_that_never_was_a_member_cannot_lead_vote_or_write`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_of_a_non_member_cannot_act_as_a_member() {
    use veritrail_proto::raft::{ReadIndexRequest, SignCheckpointRequest, StartElectionRequest};

    let (cluster, leader, before) = cluster_with_one_entry().await;
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(9, "127.0.0.1");
    let mut stranger = RaftPeerClient::new(cluster.channel_as(leader, Some((&cert, &key))).await);

    let events = vec![forged_event("forged-by-9")];
    let refused = [
        stranger
            .forward_append(ForwardAppendRequest {
                principal: "spiffe://veritrail.test/service/ceo".into(),
                events: postcard::to_stdvec(&events).expect("encode"),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .expect_err("ForwardAppend"),
        stranger
            .start_election(StartElectionRequest {})
            .await
            .map(|_| ())
            .expect_err("StartElection"),
        stranger
            .read_index(ReadIndexRequest {})
            .await
            .map(|_| ())
            .expect_err("ReadIndex"),
        stranger
            .sign_checkpoint(SignCheckpointRequest {
                body: format!("{}\n1\nAAAA\n", veritrail_tests::ORIGIN),
            })
            .await
            .map(|_| ())
            .expect_err("SignCheckpoint"),
    ];
    for status in refused {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("node 9 is not a member"),
            "{status:?}"
        );
    }

    let after = cluster.status(leader).await.expect("status");
    assert_eq!(after.role, "leader", "the leader lost its leadership");
    assert_eq!(after.term, before.term, "the term moved");
    assert_eq!(after.tree_size, before.tree_size, "something was written");
}

/// A node certificate names its cluster (issue #17). One of another cluster
/// that shares this CA, even carrying a member's id, and one issued before
/// node certificates named the origin, are nobody here: not a member (no
/// heartbeat, forwarded append or election), and not a client either. Every
/// call is refused with UNAUTHENTICATED, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_of_another_cluster_is_nobody_here() {
    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, LogId, Vote};
    use veritrail_proto::raft::StartElectionRequest;
    use veritrail_store::TypeConfig;

    let (cluster, leader, before) = cluster_with_one_entry().await;
    let pki = cluster.pki.as_ref().expect("TLS");
    let member = cluster.nodes[(leader + 1) % cluster.nodes.len()].id;
    let strangers = [
        pki.node_of("other.veritrail.test/log", member, "127.0.0.1"),
        pki.node_without_origin(member),
    ];
    for (cert, key) in &strangers {
        let identity = (cert.as_path(), key.as_path());
        let mut peer = RaftPeerClient::new(cluster.channel_as(leader, Some(identity)).await);
        let heartbeat = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(before.term + 1, member),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: Some(LogId::new(
                CommittedLeaderId::new(before.term + 1, member),
                0,
            )),
        };
        let events = vec![forged_event("forged-by-a-stranger")];
        let refused = [
            peer.append_entries(RaftPayload {
                postcard: postcard::to_stdvec(&heartbeat).expect("encode"),
                to_node_id: cluster.nodes[leader].id,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .expect_err("a heartbeat"),
            peer.forward_append(ForwardAppendRequest {
                principal: "spiffe://veritrail.test/service/ceo".into(),
                events: postcard::to_stdvec(&events).expect("encode"),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .expect_err("ForwardAppend"),
            peer.start_election(StartElectionRequest {})
                .await
                .map(|_| ())
                .expect_err("StartElection"),
        ];
        let as_client = client_with(&cluster, pki, identity)
            .append(sdk_event("tests", "as-a-client"))
            .await
            .expect_err("as a client");
        assert_eq!(
            code(&as_client),
            Some(Code::Unauthenticated),
            "{as_client:?}"
        );
        for status in refused {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            assert!(
                status.message().contains(&format!(
                    "is not a node of this cluster: its nodes are spiffe://veritrail.test/veritrail/{ORIGIN}/node/<id>"
                )),
                "{status:?}"
            );
        }
    }
    let after = cluster.status(leader).await.expect("status");
    assert_eq!(after.role, "leader", "the leader lost its leadership");
    assert_eq!(after.term, before.term, "the term moved");
    assert_eq!(after.tree_size, before.tree_size, "something was written");
}

/// What node certificate `attacker` gets from node `i` when it tries to lead
/// it (issue #17): a vote request with a higher term and a longer log; an
/// AppendEntries that makes the attacker the only voter and commits an entry
/// forged in `service/ceo`'s name; a higher-term heartbeat; a snapshot. The
/// vote is declined and the rest refused with `PERMISSION_DENIED`, and the
/// node's term, voters and log are as they were.
async fn try_to_lead(cluster: &Cluster, i: usize, attacker: u64) {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest, VoteResponse};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership,
        Vote,
    };
    use veritrail_store::{Command, NodeInfo, Proposal, TypeConfig};

    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(attacker, "127.0.0.1");
    let mut peer = RaftPeerClient::new(cluster.channel_as(i, Some((&cert, &key))).await);
    let target = cluster.nodes[i].id;
    let payload = |postcard: Vec<u8>| RaftPayload {
        postcard,
        to_node_id: target,
        ..Default::default()
    };
    let before = cluster.status(i).await.expect("status");
    let voters = |s: &veritrail_proto::v1::StatusResponse| -> BTreeSet<u64> {
        s.members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect()
    };
    let term = before.term + 100;
    let at = |index: u64| LogId::new(CommittedLeaderId::new(term, attacker), index);

    let ask = VoteRequest::<u64>::new(Vote::new(term, attacker), Some(at(1 << 40)));
    let reply = peer
        .vote(payload(postcard::to_stdvec(&ask).expect("encode")))
        .await
        .expect("a vote request is answered");
    // A node answers openraft's own result, as its peers read it.
    let reply: Result<VoteResponse<u64>, openraft::error::RaftError<u64>> =
        postcard::from_bytes(&reply.into_inner().postcard).expect("decode");
    let reply = reply.expect("a vote answer");
    assert!(
        !reply.vote_granted,
        "node {target} granted node {attacker} its vote"
    );
    assert!(
        reply.vote.leader_id().get_term() < term,
        "node {target} took node {attacker}'s term: {reply:?}"
    );

    let last = reply.last_log_id;
    let next = last.map_or(1, |l| l.index + 1);
    let membership = Membership::new(
        vec![BTreeSet::from([attacker])],
        BTreeMap::from([(
            attacker,
            NodeInfo {
                addr: "127.0.0.1:9".into(),
                public_key: String::new(),
            },
        )]),
    );
    let forged = Command::Append(Proposal {
        proposed_at_ns: 1,
        requests: vec![veritrail_store::AppendRequest {
            principal: "spiffe://veritrail.test/service/ceo".into(),
            events: vec![forged_event(&format!("forged-by-{attacker}"))],
        }],
    });
    let take_over = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, attacker),
        prev_log_id: last,
        entries: vec![
            Entry {
                log_id: at(next),
                payload: EntryPayload::Membership(membership.clone()),
            },
            Entry {
                log_id: at(next + 1),
                payload: EntryPayload::Normal(forged),
            },
        ],
        leader_commit: Some(at(next + 1)),
    };
    let heartbeat = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, attacker),
        prev_log_id: last,
        entries: Vec::new(),
        leader_commit: last,
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(term, attacker),
        meta: SnapshotMeta {
            last_log_id: Some(at(next)),
            last_membership: StoredMembership::new(Some(at(next)), membership),
            snapshot_id: "forged".into(),
        },
        offset: 0,
        data: vec![0; 64],
        done: true,
    };
    let refused = [
        peer.append_entries(payload(postcard::to_stdvec(&take_over).expect("encode")))
            .await
            .map(|_| ())
            .expect_err("a membership entry and a forged entry"),
        peer.append_entries(payload(postcard::to_stdvec(&heartbeat).expect("encode")))
            .await
            .map(|_| ())
            .expect_err("a higher-term heartbeat"),
        peer.install_snapshot(payload(postcard::to_stdvec(&snapshot).expect("encode")))
            .await
            .map(|_| ())
            .expect_err("a snapshot"),
    ];
    for status in refused {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("node {attacker} is not a voter")),
            "{status:?}"
        );
    }

    let after = cluster.status(i).await.expect("status");
    assert_eq!(after.term, before.term, "node {target}'s term moved");
    assert_eq!(voters(&after), voters(&before), "node {target}'s voters");
    // (Its Raft log grows by the checkpoints the leader records; entries are
    // what it must not have taken.)
    assert_eq!(after.tree_size, before.tree_size, "node {target}'s entries");
}

/// A node certificate of this cluster's CA whose node never was a member
/// cannot lead any member, whatever its term: it cannot make itself the only
/// voter (which used to leave the cluster without a leader for good), write
/// a forged entry that the next checkpoint would cover, or depose the leader
/// with higher-term heartbeats and vote requests (issue #17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_was_a_member_cannot_lead_vote_or_write() {
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let client = cluster.sdk();
    client
        .append(sdk_event("tests", "before"))
        .await
        .expect("append");
    let leader = cluster.leader().await;
    let before = cluster.status(leader).await.expect("status");
    for i in 0..cluster.nodes.len() {
        try_to_lead(&cluster, i, 9).await;
    }
    let receipt = client
        .append(sdk_event("tests", "after"))
        .await
        .expect("appends go on");
    assert_eq!(receipt.seq, before.tree_size, "something else was written");
    let after = cluster.status(leader).await.expect("status");
    assert_eq!(after.role, "leader", "the leader lost its leadership");
    assert_eq!(after.term, before.term, "the term moved");
}

/// A member removed from the cluster keeps a valid certificate until it
/// expires; with it, it can no longer lead the members that remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_cannot_lead_the_members_that_remain() {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await;
    let (removed, voters) = cluster.remove_a_follower().await;
    let removed_id = cluster.nodes[removed].id;
    cluster.kill(removed);
    let remaining: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != removed).collect();
    for &i in &remaining {
        wait_for(
            Duration::from_secs(20),
            "the removal to reach every member",
            || async {
                let status = cluster.status(i).await?;
                (status.members.iter().filter(|m| m.voter).count() == voters.len()).then_some(())
            },
        )
        .await;
    }
    for &i in &remaining {
        try_to_lead(&cluster, i, removed_id).await;
    }
    cluster
        .sdk()
        .append(sdk_event("tests", "after-removal"))
        .await
        .expect("appends go on");
}

/// A TLS client of node `i` that speaks HTTP/2 (ALPN) without a certificate,
/// for tests that write the bytes themselves, and the node's server name.
fn raw_tls(
    cluster: &Cluster,
    i: usize,
) -> (
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
) {
    let pki = cluster.pki.as_ref().expect("TLS");
    let (host, _) = cluster.nodes[i].addr.rsplit_once(':').expect("host:port");
    (
        pki.raw_tls_connector(b"h2"),
        rustls::pki_types::ServerName::try_from(host.to_owned()).expect("server name"),
    )
}

/// A client that completes the TLS handshake (as a token client may, without
/// a certificate) and then never sends the HTTP/2 preface holds its
/// connection no longer than `grpc.preface_timeout_ms`. 300 such connections
/// used to stay open, one file descriptor and about 33 KB each, for as long
/// as their clients liked (issue #17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_http2_is_closed() {
    use tokio::io::AsyncReadExt;

    // The default grpc.preface_timeout_ms, 5 s.
    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let (connector, name) = raw_tls(&cluster, 0);

    let mut silent = Vec::new();
    for _ in 0..20 {
        let tcp = tokio::net::TcpStream::connect(&cluster.nodes[0].addr)
            .await
            .expect("connect");
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .expect("the TLS handshake completes");
        silent.push(tls);
    }
    for (i, mut tls) in silent.into_iter().enumerate() {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(20), async {
            // End of stream, or an error for the missing close_notify.
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "silent connection {i} was still open 20 s after a 5 s preface timeout"
        );
    }
    // The node still serves clients that speak.
    let status = cluster.status(0).await.expect("the node answers");
    assert_eq!(status.node_id, cluster.nodes[0].id);
}

/// One authorized reader that opens 600 `Tail` streams on the leader, over
/// three connections, gets `grpc.principal_max_streams` of them (64) and
/// `RESOURCE_EXHAUSTED` for the rest; the leader keeps leading in its term,
/// appends go on, another reader still gets a stream, and a closed stream is
/// given back (issue #17: 600 tails cost the leader its leadership).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reader_cannot_hold_more_streams_than_its_cap() {
    use veritrail_proto::v1::TailRequest;
    use veritrail_proto::v1::audit_log_client::AuditLogClient;

    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let leader = cluster.leader().await;
    let before = cluster.status(leader).await.expect("status");
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.client("greedy");
    let mut channels = Vec::new();
    for _ in 0..3 {
        channels.push(cluster.channel_as(leader, Some((&cert, &key))).await);
    }
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..600 {
        let mut client = AuditLogClient::new(channels[i % 3].clone());
        match client.tail(TailRequest::default()).await {
            Ok(stream) => open.push(stream.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().contains("grpc.principal_max_streams"),
                    "{status:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((open.len(), refused), (64, 536));

    cluster
        .sdk()
        .append(sdk_event("tests", "while-tailing"))
        .await
        .expect("appends go on");
    let after = cluster.status(leader).await.expect("status");
    assert_eq!(after.role, "leader", "the leader lost its leadership");
    assert_eq!(after.term, before.term, "the term moved");

    let (other_cert, other_key) = pki.client("modest");
    AuditLogClient::new(
        cluster
            .channel_as(leader, Some((&other_cert, &other_key)))
            .await,
    )
    .tail(TailRequest::default())
    .await
    .expect("another reader's stream");

    drop(open);
    wait_for(
        Duration::from_secs(10),
        "closed streams to be given back",
        || async {
            let mut client = AuditLogClient::new(channels[0].clone());
            client.tail(TailRequest::default()).await.ok().map(|_| ())
        },
    )
    .await;
}

/// Ten readers, each within its caps, tail the whole log from the leader at
/// once: 600 streams reading every entry, as fast as the readers take them,
/// while a service appends. Raft runs apart from client calls (its own
/// runtime, client threads at a lower priority: ARCHITECTURE.md, "Raft apart
/// from clients"), so the leader keeps its term and every append is taken
/// (issue #17: one client cannot starve Raft; the caps alone let ten of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_within_their_caps_do_not_cost_the_leader_its_term() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use veritrail_proto::v1::TailRequest;
    use veritrail_proto::v1::audit_log_client::AuditLogClient;

    const READERS: usize = 10;
    const STREAMS_EACH: usize = 60;
    const LOAD: Duration = Duration::from_secs(12);

    let cluster = Cluster::start(3, ClusterOptions::default()).await;
    let sdk = cluster.sdk();
    for batch in 0..8 {
        let events = (0..500)
            .map(|i| sdk_event("tests", &format!("seed-{batch}-{i}")))
            .collect();
        sdk.append_batch(events).await.expect("seed the log");
    }
    let leader = cluster.leader().await;
    let before = cluster.status(leader).await.expect("status");
    let pki = cluster.pki.as_ref().expect("TLS");
    // The leader's clients wait behind Raft by design, status calls too: the
    // followers, which the readers leave alone, say who leads in which term.
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let views = || async {
        let mut views = Vec::new();
        for &i in &followers {
            let status = cluster.status(i).await.expect("a follower's status");
            views.push((status.leader_id, status.term));
        }
        views
    };
    let expected = vec![(Some(cluster.nodes[leader].id), before.term); 2];
    assert_eq!(views().await, expected, "before the readers came");

    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (cert, key) = pki.client(&format!("reader-{r}"));
        let channel = cluster.channel_as(leader, Some((&cert, &key))).await;
        for _ in 0..STREAMS_EACH {
            let (channel, stop, streamed) = (channel.clone(), stop.clone(), streamed.clone());
            readers.push(tokio::spawn(async move {
                let mut client = AuditLogClient::new(channel);
                let Ok(stream) = client.tail(TailRequest::default()).await else {
                    return;
                };
                let mut stream = stream.into_inner();
                while !stop.load(Ordering::Relaxed) {
                    match stream.message().await {
                        Ok(Some(_)) => streamed.fetch_add(1, Ordering::Relaxed),
                        _ => return,
                    };
                }
            }));
        }
    }

    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut appended = 0;
    let mut seen = Vec::new();
    while started.elapsed() < LOAD {
        seen.push(views().await);
        let id = format!("under-load-{appended}");
        // Slow is allowed (the leader's client threads are the ones the
        // readers load, and CI machines are busy); failing or hanging is not.
        match tokio::time::timeout(Duration::from_secs(30), sdk.append(sdk_event("tests", &id)))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failed.push(format!("{id}: {e}")),
            Err(_) => failed.push(format!("{id}: no answer within 30 s")),
        }
        appended += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.push(views().await);
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.abort();
    }
    let streamed = streamed.load(Ordering::Relaxed);
    eprintln!("{appended} appends under load, {streamed} entries streamed to the readers");
    assert!(
        streamed > 10_000,
        "the readers were not loading the leader: {streamed} entries streamed"
    );
    let changed: Vec<_> = seen.iter().filter(|v| **v != expected).collect();
    assert!(
        changed.is_empty(),
        "the readers cost the leader its term: the followers saw (leader, term) {changed:?}, \
         where {expected:?} was before; appends that failed: {failed:?}"
    );
    assert!(
        failed.is_empty(),
        "appends failed under the readers' load: {failed:?}"
    );
}

/// The policy, the tokens and a node's certificate are replaced while the
/// cluster takes appends, without a restart and without a failed append: a
/// changed policy file is in force within seconds, a broken one is refused
/// (logged, the previous one stays), and after SIGHUP new connections get the
/// node's new certificate (issue #17, rotation without restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_tokens_and_certificates_reload_without_a_restart_or_a_failed_append() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let config_dir = tempfile::TempDir::new().expect("dir");
    let tester = "[[grant]]\nprincipals = [\"spiffe://veritrail.test/service/tester\"]\n\
                  append = [\"tests\"]\nread = true\nproofs = true\nadmin = true\n";
    let policy = write(config_dir.path(), "policy.toml", tester);
    let tokens = write(config_dir.path(), "tokens.toml", "");
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: format!("[auth]\npolicy_file = \"{policy}\"\ntokens_file = \"{tokens}\"\n"),
            ..ClusterOptions::default()
        },
    )
    .await;

    // Appends all along, counted; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (appended, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (client, stop) = (cluster.sdk(), Arc::clone(&stop));
        let (appended, failed) = (Arc::clone(&appended), Arc::clone(&failed));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match client
                    .append(sdk_event("tests", &format!("load-{i}")))
                    .await
                {
                    Ok(_) => appended.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("append failed during a reload: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        })
    };

    // A new grant, by changing the file only.
    let newbie = sdk_as(&cluster, "newbie");
    let denied = newbie
        .append(sdk_event("newbie", "too-early"))
        .await
        .expect_err("no grant yet");
    assert_eq!(code(&denied), Some(Code::PermissionDenied), "{denied:?}");
    let granted = format!(
        "{tester}[[grant]]\nprincipals = [\"spiffe://veritrail.test/service/newbie\"]\nappend = [\"newbie\"]\n"
    );
    write(config_dir.path(), "policy.toml", &granted);
    wait_for(
        Duration::from_secs(15),
        "the new policy in force",
        || async { newbie.append(sdk_event("newbie", "granted")).await.ok() },
    )
    .await;

    // A broken policy is refused, and the one in force stays.
    write(
        config_dir.path(),
        "policy.toml",
        "[[grant]]\nprincipals = [\n",
    );
    for i in 0..3 {
        cluster.hangup(i);
    }
    wait_for(
        Duration::from_secs(15),
        "the broken policy refused",
        || async {
            std::fs::read_to_string(&cluster.nodes[0].log_path)
                .ok()?
                .contains("reload refused")
                .then_some(())
        },
    )
    .await;
    newbie
        .append(sdk_event("newbie", "still-granted"))
        .await
        .expect("the policy before the broken one stays in force");
    write(config_dir.path(), "policy.toml", &granted);

    // Node 1's certificate, rotated: new connections get the new one.
    let pki = cluster.pki.clone().expect("TLS");
    let host = "127.0.0.1";
    let (cert, _) = pki.reissue_node(cluster.nodes[0].id, host);
    let new_leaf = std::fs::read_to_string(&cert).expect("new certificate");
    cluster.hangup(0);
    wait_for(
        Duration::from_secs(15),
        "node 1 to present its new certificate",
        || async { (served_certificate(&cluster, 0).await? == pem_leaf(&new_leaf)).then_some(()) },
    )
    .await;
    // It still talks to its peers and they to it.
    let status = cluster.status(0).await.expect("node 1 answers");
    assert!(status.leader_id.is_some(), "{status:?}");

    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "appends failed during reloads"
    );
    assert!(appended.load(Ordering::Relaxed) > 0);
}

/// The DER of the first certificate of a PEM text.
fn pem_leaf(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// The certificate node `i` presents to a new TLS connection.
async fn served_certificate(cluster: &Cluster, i: usize) -> Option<Vec<u8>> {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let pki = cluster.pki.as_ref()?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.ca()).ok()? {
        roots.add(ca.ok()?).ok()?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let (host, _) = cluster.nodes[i].addr.rsplit_once(':')?;
    let tcp = tokio::net::TcpStream::connect(&cluster.nodes[i].addr)
        .await
        .ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.to_owned()).ok()?, tcp)
        .await
        .ok()?;
    Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
}

/// A revoked certificate fails the TLS handshake, a client's and a node's
/// alike, once the nodes have read the CA's new revocation list: no restart
/// (#17, "a CRL file can be configured and is honoured for clients and
/// peers"). Every other identity goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificates_fail_the_handshake_once_the_list_is_read() {
    use veritrail_proto::raft::IdentifyRequest;
    let cluster = with_revocation_list().await;
    let pki = cluster.pki.as_ref().expect("TLS");
    sdk_as(&cluster, "mallory")
        .append(sdk_event("tests", "before-revocation"))
        .await
        .expect("not revoked yet");
    let (mallory, _) = pki.client("mallory");
    // A node certificate of the CA, for a node that would otherwise get as
    // far as RaftPeer's own checks.
    let (node9, node9_key) = pki.node(9, "127.0.0.1");
    let leader = cluster.leader().await;
    let peer = |cluster: &Cluster| {
        let endpoint = tonic::transport::Channel::from_shared(format!(
            "https://{}",
            cluster.nodes[leader].addr
        ))
        .expect("endpoint")
        .tls_config(pki.tonic_tls(Some((&node9, &node9_key))))
        .expect("TLS")
        .timeout(Duration::from_secs(5));
        async move {
            let channel = endpoint.connect().await?;
            let answer = RaftPeerClient::new(channel)
                .identify(IdentifyRequest {})
                .await;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer.is_ok())
        }
    };
    assert!(
        peer(&cluster)
            .await
            .expect("a handshake before the revocation"),
        "node 9's certificate passes TLS before it is revoked"
    );

    pki.revoke(&[&mallory, &node9]);
    let refused = wait_for(
        Duration::from_secs(20),
        "the revoked client refused",
        || async {
            // A new connection each time: the handshake is where it is refused.
            sdk_as(&cluster, "mallory")
                .append(sdk_event("tests", "after-revocation"))
                .await
                .err()
        },
    )
    .await;
    // TLS 1.3 finishes the client's side of the handshake before the server
    // has judged its certificate: the server's alert ends the connection
    // under the first call, which hyper reports as cancelled or as a
    // transport error, depending on when it reads the alert. Not a gRPC
    // answer: nothing of the call reached a service.
    assert!(
        matches!(
            code(&refused),
            Some(Code::Unavailable | Code::Cancelled | Code::Unknown)
        ),
        "{refused:?}"
    );
    let mut source: Option<&dyn std::error::Error> = Some(&refused);
    let mut chain = Vec::new();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    eprintln!("the revoked client's error: {}", chain.join(": "));
    // Every node read it (each polls its files), and node 9's certificate
    // fails the handshake too.
    wait_for(
        Duration::from_secs(20),
        "the revoked node certificate refused",
        || async { (!peer(&cluster).await.unwrap_or(false)).then_some(()) },
    )
    .await;
    // Everyone else goes on, and the list named only those two.
    cluster
        .sdk()
        .append(sdk_event("tests", "others-go-on"))
        .await
        .expect("the test client is not revoked");
    // Another CA's list is refused: it would leave no certificate of this CA
    // a known status, and so refuse every peer. The list before stays.
    let other = Pki::create(cluster.dir.path().join("other-ca"));
    other.revoke(&[]);
    let swap = pki.dir.join("foreign-crl.pem");
    std::fs::copy(other.crl(), &swap).expect("copy");
    std::fs::rename(&swap, pki.crl()).expect("replace the list");
    for i in 0..cluster.nodes.len() {
        wait_for(
            Duration::from_secs(20),
            "every node to refuse the foreign list",
            || async { cluster.log_tail(i).contains("reload refused").then_some(()) },
        )
        .await;
    }
    cluster
        .sdk()
        .append(sdk_event("tests", "after-a-bad-list"))
        .await
        .expect("the list before is still in force");
    assert!(
        sdk_as(&cluster, "mallory")
            .append(sdk_event("tests", "still-revoked"))
            .await
            .is_err(),
        "mallory is still revoked"
    );
    sdk_as(&cluster, "alice")
        .append(sdk_event("tests", "alice-too"))
        .await
        .expect("another service is not revoked");
}

/// A member whose node certificate is revoked is cut off both ways once the
/// others have read the list (#17, "honoured for clients and peers"). It
/// cannot call them: their listeners refuse its certificate. And they no
/// longer call it: a node verifies the certificate a peer answers with
/// against the list too (and checks that it is a node of this cluster), where
/// tonic's TLS client would check only the CA and the name. So the revoked
/// node receives nothing more, and the two others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_member_is_cut_off_both_ways() {
    let cluster = with_revocation_list().await;
    let pki = cluster.pki.as_ref().expect("TLS");
    let leader = cluster.leader().await;
    let revoked = (leader + 1) % cluster.nodes.len();
    let other = (leader + 2) % cluster.nodes.len();
    let revoked_id = cluster.nodes[revoked].id;
    let mut client = cluster.client(leader).await;
    client
        .append(AppendRequest {
            event: Some(event("tests", "before-revocation")),
        })
        .await
        .expect("append");
    let caught_up = wait_for(
        Duration::from_secs(20),
        "every node to hold the first entry",
        || async {
            let mut sizes = Vec::new();
            for i in 0..cluster.nodes.len() {
                sizes.push(cluster.status(i).await?.tree_size);
            }
            sizes
                .iter()
                .all(|s| *s == sizes[0] && *s > 0)
                .then_some(sizes[0])
        },
    )
    .await;

    let (cert, _) = pki.node(revoked_id, "127.0.0.1");
    pki.revoke(&[&cert]);
    for i in [leader, other] {
        wait_for(
            Duration::from_secs(20),
            "the two others to read the list",
            || async { cluster.log_tail(i).contains("reloaded").then_some(()) },
        )
        .await;
    }
    for n in 0..10 {
        client
            .append(AppendRequest {
                event: Some(event("tests", &format!("after-revocation-{n}"))),
            })
            .await
            .expect("the leader and the other node go on");
    }
    let error = wait_for(
        Duration::from_secs(20),
        "the leader to refuse the revoked node's certificate",
        || async {
            let status = cluster.status(leader).await?;
            let member = status.members.iter().find(|m| m.node_id == revoked_id)?;
            let error = member.replication_error.to_lowercase();
            error
                .contains("revoked")
                .then(|| member.replication_error.clone())
        },
    )
    .await;
    eprintln!("the leader's replication error: {error}");
    wait_for(
        Duration::from_secs(20),
        "the other node to hold every entry",
        || async {
            let status = cluster.status(other).await?;
            (status.tree_size == caught_up + 10).then_some(())
        },
    )
    .await;
    let status = cluster.status(revoked).await.expect("status");
    assert!(
        status.tree_size < caught_up + 10,
        "the revoked node received what was appended after its revocation"
    );
}

/// A service's deterministic test key, as a signer.
fn service_key(name: &str, seed: u8) -> veritrail_core::note::NoteSigner {
    veritrail_core::note::NoteSigner::from_seed(name, &[seed; 32]).expect("key")
}

/// An SDK client presenting service `name`'s certificate and signing every
/// event with `signer`, without retries.
fn sdk_signing(cluster: &Cluster, name: &str, signer: &veritrail_core::note::NoteSigner) -> Client {
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.client(name);
    let mut config = client_with(cluster, pki, (&cert, &key)).config().clone();
    config.signing =
        Some(veritrail_client::EventSigning::new(&signer.to_signer_string(), ORIGIN).expect("key"));
    Client::with_config(config).expect("client")
}

/// A TLS cluster whose policy has `billing` sign its events with key
/// `service_key("billing", 1)`.
async fn cluster_where_billing_signs() -> (Cluster, tempfile::TempDir) {
    let config_dir = tempfile::TempDir::new().expect("dir");
    let policy = write(
        config_dir.path(),
        "policy.toml",
        &format!(
            "[[grant]]\nprincipals = [\"spiffe://veritrail.test/service/*\"]\nappend = [\"{{name}}\"]\n\
             [[grant]]\nprincipals = [\"{TEST_PRINCIPAL}\"]\nappend = [\"*\"]\nread = true\nproofs = true\nadmin = true\n\
             [[signer]]\nprincipal = \"spiffe://veritrail.test/service/billing\"\nkeys = [\"{}\"]\n",
            service_key("billing", 1).public()
        ),
    );
    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: format!("[auth]\npolicy_file = \"{policy}\"\n"),
            ..ClusterOptions::default()
        },
    )
    .await;
    (cluster, config_dir)
}

/// A service the policy has sign its events gets them stored signed (entry
/// format 2) and cannot append unsigned or with a key not its own; and a
/// member, which may forward appends in any principal's name, cannot forward
/// one in the signing service's name that it did not sign, nor change a
/// signed event on the way: the leader refuses the first, every node's apply
/// the second, and nothing is written (issue #17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_services_events_cannot_be_forged_or_altered_by_a_member() {
    let (cluster, _config) = cluster_where_billing_signs().await;
    let billing_key = service_key("billing", 1);
    let other_key = service_key("billing", 2);
    let before = tree_size(&cluster).await;

    let signing = sdk_signing(&cluster, "billing", &billing_key);
    let receipt = signing
        .append(sdk_event("billing", "signed-1"))
        .await
        .expect("a signed append");
    let stored = cluster.sdk().get(receipt.seq).await.expect("entry");
    assert_eq!(stored.canonical[0], 2, "stored as format version 2");
    let signature = stored.entry.signature.expect("the signature is stored");
    assert!(signature.is_by(billing_key.public()));
    stored.entry.verify_signature(ORIGIN).expect("it verifies");
    // A retry is the same append: the same signature, the same entry.
    let mut again = sdk_event("billing", "signed-1");
    again.event_id = "signed-1".into();
    let retried = signing.append(again).await.expect("a retry");
    assert!(
        retried.duplicate && retried.seq == receipt.seq,
        "{retried:?}"
    );

    let unsigned = sdk_as(&cluster, "billing")
        .append(sdk_event("billing", "unsigned-1"))
        .await
        .expect_err("billing must sign");
    assert_eq!(
        code(&unsigned),
        Some(Code::PermissionDenied),
        "{unsigned:?}"
    );
    assert!(
        unsigned.to_string().contains("must sign its events"),
        "{unsigned}"
    );
    let foreign = sdk_signing(&cluster, "billing", &other_key)
        .append(sdk_event("billing", "foreign-1"))
        .await
        .expect_err("a key the policy does not register");
    assert_eq!(code(&foreign), Some(Code::PermissionDenied), "{foreign:?}");
    assert!(
        foreign.to_string().contains("does not register"),
        "{foreign}"
    );
    let unregistered = sdk_signing(&cluster, "payroll", &other_key)
        .append(sdk_event("payroll", "keyless-1"))
        .await
        .expect_err("a key bound to no principal");
    assert_eq!(code(&unregistered), Some(Code::PermissionDenied));
    assert!(
        unregistered.to_string().contains("registers no key"),
        "{unregistered}"
    );

    // A member forwards to the leader in billing's name.
    let leader = cluster.leader().await;
    let member = cluster.nodes[(leader + 1) % 3].id;
    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(member, "127.0.0.1");
    let mut peer = RaftPeerClient::new(cluster.channel_as(leader, Some((&cert, &key))).await);
    let billing = "spiffe://veritrail.test/service/billing".to_owned();
    let mut event = sdk_event("billing", "forged-1");
    event.event_id = "forged-1".into();
    let refused = peer
        .forward_append(ForwardAppendRequest {
            principal: billing.clone(),
            events: postcard::to_stdvec(&vec![event.clone()]).expect("encode"),
            format: 1,
        })
        .await
        .expect_err("unsigned, in a signing service's name");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("must sign"), "{refused:?}");
    // Signed by billing, then changed: the signature no longer verifies.
    let mut altered = veritrail_core::SubmittedEvent::signed(&billing_key, ORIGIN, event);
    altered.event.outcome = "denied".into();
    let refused = peer
        .forward_append(ForwardAppendRequest {
            principal: billing,
            events: postcard::to_stdvec(&vec![altered]).expect("encode"),
            format: 2,
        })
        .await
        .expect("the leader answers with the outcome of applying it");
    // The leader cannot tell: the key is billing's. Apply checks the
    // signature, on every node alike, and refuses the whole request.
    let outcome: veritrail_store::RequestOutcome =
        postcard::from_bytes(&refused.into_inner().outcome).expect("an outcome");
    match outcome {
        veritrail_store::RequestOutcome::Rejected(r) => {
            assert_eq!(r.kind, veritrail_store::RejectionKind::Invalid, "{r:?}");
            assert!(r.message.contains("does not verify"), "{r:?}");
        }
        other => panic!("an altered signed event was accepted: {other:?}"),
    }

    assert_eq!(
        tree_size(&cluster).await,
        before + 1,
        "only the signed append was written"
    );
}

/// The running nodes' status once they are idle and in step: the same log,
/// all applied, covered by a checkpoint.
async fn settled(cluster: &Cluster) -> Option<veritrail_proto::v1::StatusResponse> {
    let mut statuses = Vec::new();
    for i in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_running()) {
        statuses.push(cluster.status(i).await?);
    }
    let first = statuses.first()?.clone();
    statuses
        .iter()
        .all(|s| {
            s.last_log_index == first.last_log_index
                && s.applied_index == s.last_log_index
                && s.checkpoint_size == Some(s.tree_size)
                && s.tree_size == first.tree_size
        })
        .then_some(first)
}

/// What a member can still do, and what catches it. A member's certificate is
/// trusted with Raft: stolen, it can lead the others and commit an entry in
/// any principal's name, unsigned. It cannot sign as a service, and it cannot
/// make the nodes apply a signed event it changed (every node refuses that at
/// apply). Its unsigned entry in a signing service's name lands, chain-valid
/// and co-signed, and the auditor's signer list refuses it by seq: without
/// the list `veritrail verify` passes, with it it fails (issue #17). Nor can
/// it stop a node with entries shaped as no leader sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_writing_in_a_signing_services_name_is_caught_by_the_auditor() {
    use openraft::raft::{AppendEntriesRequest, VoteRequest, VoteResponse};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use veritrail_store::{
        AppendRequest as RaftAppend, Command, Proposal, SignedProposal, SignedRequest, TypeConfig,
    };

    let (mut cluster, config) = cluster_where_billing_signs().await;
    let billing_key = service_key("billing", 1);
    sdk_signing(&cluster, "billing", &billing_key)
        .append(sdk_event("billing", "genuine-1"))
        .await
        .expect("a signed append");
    // Idle and in step: every node holds the same log, applied, and the
    // checkpoint covers it, so that the forged entries land at the same
    // index everywhere.
    let before = wait_for(Duration::from_secs(30), "the cluster to settle", || {
        settled(&cluster)
    })
    .await;
    let leader = cluster.leader().await;
    let thief = (leader + 1) % 3;
    let attacker = cluster.nodes[thief].id;
    cluster.kill(thief);

    let pki = cluster.pki.as_ref().expect("TLS");
    let (cert, key) = pki.node(attacker, "127.0.0.1");
    let term = before.term + 100;
    let at = |index: u64| LogId::new(CommittedLeaderId::new(term, attacker), index);
    let billing = "spiffe://veritrail.test/service/billing".to_owned();
    let mut unsigned = sdk_event("billing", "forged-unsigned");
    unsigned.outcome = "approved".into();
    let mut altered = veritrail_core::SubmittedEvent::signed(
        &billing_key,
        ORIGIN,
        sdk_event("billing", "forged-altered"),
    );
    altered.event.resource = "invoice/someone-else".into();
    for i in (0..3).filter(|&i| i != thief) {
        let target = cluster.nodes[i].id;
        let mut peer = RaftPeerClient::new(cluster.channel_as(i, Some((&cert, &key))).await);
        let payload = |postcard: Vec<u8>, format: u32| RaftPayload {
            postcard,
            to_node_id: target,
            format,
        };
        let ask = VoteRequest::<u64>::new(Vote::new(term, attacker), Some(at(1 << 40)));
        let reply = peer
            .vote(payload(postcard::to_stdvec(&ask).expect("encode"), 1))
            .await
            .expect("a member's vote request is answered");
        let reply: Result<VoteResponse<u64>, openraft::error::RaftError<u64>> =
            postcard::from_bytes(&reply.into_inner().postcard).expect("decode");
        let reply = reply.expect("a vote answer");
        // Granted or not (a node that hears its leader keeps its vote),
        // the answer names the node's last log id: where to append.
        let last = reply.last_log_id;
        let next = last.map_or(0, |l| l.index + 1);
        let forged = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(term, attacker),
            prev_log_id: last,
            entries: vec![
                Entry {
                    log_id: at(next),
                    payload: EntryPayload::Normal(Command::Append(Proposal {
                        proposed_at_ns: 1,
                        requests: vec![RaftAppend {
                            principal: billing.clone(),
                            events: vec![unsigned.clone()],
                        }],
                    })),
                },
                Entry {
                    log_id: at(next + 1),
                    payload: EntryPayload::Normal(Command::AppendSigned(SignedProposal {
                        proposed_at_ns: 1,
                        requests: vec![SignedRequest {
                            principal: billing.clone(),
                            events: vec![altered.clone()],
                        }],
                    })),
                },
            ],
            leader_commit: Some(at(next + 1)),
        };
        // Entries that do not follow the point they claim to follow once
        // stopped the node's Raft core (an assertion openraft makes of its
        // leaders): now they are refused and the node goes on.
        let mut misplaced = forged.clone();
        for entry in &mut misplaced.entries {
            entry.log_id.index += 5;
        }
        let refused = peer
            .append_entries(payload(postcard::to_stdvec(&misplaced).expect("encode"), 2))
            .await
            .expect_err("entries after a gap");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains("malformed"), "{refused:?}");
        peer.append_entries(payload(postcard::to_stdvec(&forged).expect("encode"), 2))
            .await
            .expect("a member's entries are taken");
    }
    // Both remaining nodes applied the unsigned entry, and refused the
    // altered one; they elect a leader of their own and co-sign a checkpoint
    // over it.
    let after = wait_for(
        Duration::from_secs(60),
        "a checkpoint over the forgery",
        || settled(&cluster),
    )
    .await;
    assert_eq!(
        after.tree_size,
        before.tree_size + 1,
        "the unsigned forgery lands; the altered signed event does not"
    );
    let forged_seq = before.tree_size;
    let stored = cluster
        .sdk()
        .get(forged_seq)
        .await
        .expect("the forged entry");
    assert_eq!(stored.entry.event.event_id, "forged-unsigned");
    assert!(stored.entry.signature.is_none());

    let policy = config.path().join("policy.toml");
    let verify = |signers: bool| {
        let mut command = std::process::Command::new(veritrail_tests::veritrail());
        command
            .env("VERITRAIL_CLI_CONFIG", "/nonexistent/veritrail/config.toml")
            .envs(cluster.cli_env().0.iter().map(|(k, v)| (k, v)))
            .args(["verify", "--output", "json"]);
        if signers {
            command.arg("--signers").arg(&policy);
        }
        command.output().expect("veritrail verify")
    };
    let trusting = verify(false);
    assert!(
        trusting.status.success(),
        "without a signer list the forgery is a valid entry: {}",
        String::from_utf8_lossy(&trusting.stderr)
    );
    let auditing = verify(true);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&auditing.stdout),
        String::from_utf8_lossy(&auditing.stderr)
    );
    assert_eq!(auditing.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("seq {forged_seq}")) && said.contains("must sign"),
        "{said}"
    );
}

/// A connection that spoke HTTP/2 and then holds no call is closed after
/// `grpc.idle_timeout_ms`, HTTP/2 pings or not; one whose stream is open
/// keeps it as long as the stream runs (issue #17: only the handshake and
/// the preface were timed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_an_open_stream_keeps_its_own() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use veritrail_proto::v1::TailRequest;
    use veritrail_proto::v1::audit_log_client::AuditLogClient;

    let cluster = Cluster::start(
        3,
        ClusterOptions {
            extra_toml: "[grpc]\nidle_timeout_ms = 1000\n".into(),
            ..ClusterOptions::default()
        },
    )
    .await;
    // A stream opened first, on a channel of its own, with nothing to send
    // for the whole test until the end.
    let mut tailing = AuditLogClient::new(cluster.channel(0).await);
    let mut tail = tailing
        .tail(TailRequest::default())
        .await
        .expect("a tail")
        .into_inner();

    let (connector, name) = raw_tls(&cluster, 0);
    let tcp = tokio::net::TcpStream::connect(&cluster.nodes[0].addr)
        .await
        .expect("connect");
    let mut idle = connector.connect(name, tcp).await.expect("TLS");
    // The HTTP/2 preface and an empty SETTINGS frame: a client that spoke,
    // then sends nothing but what HTTP/2 itself asks of it.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let opened = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // Answer SETTINGS and PINGs as a live client would, so
                    // that only the absence of calls can close it.
                    if buf[..n].windows(2).any(|w| w == [0x04, 0x00]) {
                        let _ = idle.write_all(b"\0\0\0\x04\x01\0\0\0\0").await;
                    }
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle connection was still open 20 s after a 1 s idle timeout"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed before its idle timeout: {:?}",
        opened.elapsed()
    );

    // The stream opened before it outlived the idle timeout: it still
    // delivers what is appended now.
    let receipt = cluster
        .sdk()
        .append(sdk_event("tests", "after-idle"))
        .await
        .expect("append");
    let entry = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let message = tail
                .message()
                .await
                .expect("the stream is still open")
                .expect("an entry");
            let entry = message.entry.expect("entry");
            if entry.seq == receipt.seq {
                break entry;
            }
        }
    })
    .await
    .expect("the appended entry reaches the tail");
    assert_eq!(entry.seq, receipt.seq);
}

//! Webhooks against real monitors and a real HTTP receiver (axum, in the test): signatures
//! checked by an independent implementation (the `standardwebhooks` crate), order and
//! duplicates checked by the receiver, 500 then 429 with Retry-After then 200, 410 disabling the
//! endpoint, a dead receiver producing dead letters and its health check, a replay, a kill -9 of
//! the leader in the middle of delivery, and the refusals of bad registrations.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use common::api::expect_err;
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use parking_lot::Mutex;
use serde_json::Value;
use tonic::Code;

const LONG: Duration = Duration::from_secs(90);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: Value,
    /// Whether the independent verifier accepted the signature.
    verified: bool,
    content_type: String,
    bearer: Option<String>,
    /// What the receiver answered.
    status: u16,
}

/// What the receiver answers the n-th request (0-based) with: status and Retry-After.
type Script = Box<dyn Fn(usize) -> (u16, Option<&'static str>) + Send + Sync>;

struct ReceiverState {
    secret: Mutex<Option<String>>,
    got: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    delay: Duration,
}

struct Receiver {
    state: Arc<ReceiverState>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(
    State(s): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let verified = match s.secret.lock().clone() {
        Some(secret) => standardwebhooks::Webhook::new(&secret)
            .map(|wh| wh.verify(&body, &headers).is_ok())
            .unwrap_or(false),
        None => false,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut got = s.got.lock();
    let (status, retry_after) = (s.script.lock())(got.len());
    got.push(Received {
        id: header("webhook-id").unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        verified,
        content_type: header("content-type").unwrap_or_default(),
        bearer: header("authorization"),
        status,
    });
    let mut out = HeaderMap::new();
    if let Some(ra) = retry_after {
        out.insert("retry-after", ra.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out, "")
}

impl Receiver {
    async fn start(script: Script, delay: Duration) -> Receiver {
        let state = Arc::new(ReceiverState {
            secret: Mutex::new(None),
            got: Mutex::new(Vec::new()),
            script: Mutex::new(script),
            delay,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { state, addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().clone()
    }

    /// The ids answered 2xx, in the order they were acknowledged.
    fn acknowledged(&self) -> Vec<u64> {
        self.got()
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .filter_map(|r| r.id.parse().ok())
            .collect()
    }
}

fn monitor_options(extra: &str) -> ClusterOptions {
    ClusterOptions {
        extra_config: format!("webhook_allow_http = true\n{extra}"),
        ..ClusterOptions::default()
    }
}

async fn add(
    m: &MonitorClient,
    url: &str,
    types: &[&str],
) -> Result<api::AddWebhookResponse, fastblock_monitor::client::ClientError> {
    m.add_webhook(api::AddWebhookRequest {
        url: url.to_string(),
        types: types.iter().map(|t| t.to_string()).collect(),
        secrets: Vec::new(),
        bearer_token: "t0ken".to_string(),
        skip_reachability_check: false,
    })
    .await
}

async fn flag(m: &MonitorClient, on: bool) {
    let flag = api::ClusterFlag::Noout as i32;
    if on {
        m.set_flag(api::SetFlagRequest { flag }).await.unwrap();
    } else {
        m.unset_flag(api::UnsetFlagRequest { flag }).await.unwrap();
    }
}

/// The ids of every `flag.` event after `after`.
async fn flag_events(m: &MonitorClient, after: u64) -> Vec<u64> {
    m.list_events(api::ListEventsRequest {
        last: 10_000,
        after_id: after,
        types: vec!["flag.".to_string()],
    })
    .await
    .unwrap()
    .events
    .iter()
    .map(|e| e.id)
    .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LONG;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {LONG:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn latest(m: &MonitorClient) -> u64 {
    m.list_events(api::ListEventsRequest {
        last: 1,
        after_id: 0,
        types: Vec::new(),
    })
    .await
    .unwrap()
    .latest_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_through_500_429_and_200() {
    let mut c = TestCluster::new(1, monitor_options(""));
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // 3 × 500, 2 × 429 (Retry-After: 1), then 200.
    let rx = Receiver::start(
        Box::new(|n| match n {
            0..=2 => (500, None),
            3..=4 => (429, Some("1")),
            _ => (200, None),
        }),
        Duration::ZERO,
    )
    .await;
    let added = add(&m, &rx.url(), &["flag."]).await.unwrap();
    assert!(added.generated_secret.starts_with("whsec_"));
    *rx.state.secret.lock() = Some(added.generated_secret.clone());
    let start = latest(&m).await;
    for k in 0..10 {
        flag(&m, k % 2 == 0).await;
    }
    let expected = flag_events(&m, start).await;
    assert_eq!(expected.len(), 10);
    wait_for("every event acknowledged", || rx.acknowledged().len() >= 10).await;
    assert_eq!(
        rx.acknowledged(),
        expected,
        "in order, none missed, none twice"
    );
    let got = rx.got();
    assert_eq!(got.iter().filter(|r| r.status == 500).count(), 3);
    assert_eq!(got.iter().filter(|r| r.status == 429).count(), 2);
    assert!(
        got[..6].iter().all(|r| r.id == got[0].id),
        "the head event is retried with the same webhook-id: {got:#?}"
    );
    for r in &got {
        assert!(
            r.verified,
            "the independent verifier accepts every signature: {r:?}"
        );
        assert_eq!(r.content_type, "application/cloudevents+json");
        assert_eq!(r.bearer.as_deref(), Some("Bearer t0ken"));
        assert_eq!(r.body["specversion"], "1.0");
        assert_eq!(r.body["id"], r.id.as_str());
        assert!(
            r.body["type"]
                .as_str()
                .unwrap()
                .starts_with("io.fastblock.flag.")
        );
    }
    // The list shows where delivery is; no secret is shown again.
    let list = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
    assert_eq!(list.webhooks.len(), 1);
    let w = &list.webhooks[0];
    assert!(w.disabled_reason.is_empty());
    assert_eq!(w.secrets, 1);
    // The cursor is persisted about once a second.
    let last = *expected.last().unwrap();
    let mut persisted = 0;
    for _ in 0..50 {
        persisted = m
            .list_webhooks(api::ListWebhooksRequest {})
            .await
            .unwrap()
            .webhooks[0]
            .delivered_id;
        if persisted >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(persisted >= last, "cursor {persisted} < {last}");
    // A test event: delivered now, signed, not an event of the log.
    let test = m
        .test_webhook(api::TestWebhookRequest { id: w.id })
        .await
        .unwrap();
    assert!(test.delivered, "{test:?}");
    let last_got = rx.got().pop().unwrap();
    assert!(last_got.id.starts_with("test-"));
    assert!(last_got.verified);
    assert_eq!(last_got.body["type"], "io.fastblock.webhook.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_a_dead_receiver_gets_dead_letters_and_a_replay_delivers_them() {
    let mut c = TestCluster::new(1, monitor_options("webhook_max_event_age = \"5s\"\n"));
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // 410 once; after the replay below it takes events again.
    let gone = Receiver::start(
        Box::new(|n| if n == 0 { (410, None) } else { (200, None) }),
        Duration::ZERO,
    )
    .await;
    let dead = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let alive = dead.clone();
    let flaky = Receiver::start(
        Box::new(move |_| {
            if alive.load(std::sync::atomic::Ordering::SeqCst) {
                (503, None)
            } else {
                (200, None)
            }
        }),
        Duration::ZERO,
    )
    .await;
    let g = add(&m, &gone.url(), &["flag."])
        .await
        .unwrap()
        .webhook
        .unwrap();
    let f = add(&m, &flaky.url(), &["flag."])
        .await
        .unwrap()
        .webhook
        .unwrap();
    let start = latest(&m).await;
    flag(&m, true).await;
    flag(&m, false).await;
    let expected = flag_events(&m, start).await;

    // 410: disabled after one attempt, and the health check says so.
    let mut disabled = String::new();
    for _ in 0..300 {
        let list = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
        disabled = list
            .webhooks
            .iter()
            .find(|w| w.id == g.id)
            .unwrap()
            .disabled_reason
            .clone();
        if !disabled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(disabled.starts_with("gone"), "{disabled:?}");
    assert_eq!(gone.got().len(), 1, "nothing more after 410");

    // 503 for longer than webhook_max_event_age: both events become dead letters.
    let mut letters = Vec::new();
    for _ in 0..300 {
        letters = m
            .webhook_dead_letters(api::WebhookDeadLettersRequest {
                id: f.id,
                limit: 0,
                purge: false,
            })
            .await
            .unwrap()
            .letters;
        if letters.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead_ids: Vec<u64> = letters.iter().map(|l| l.event_id).collect();
    assert_eq!(dead_ids, expected);
    assert!(letters[0].attempts >= 1);
    assert!(letters[0].last_error.contains("503"), "{letters:?}");
    // The receiver was known to be failing and the next event was already too old: given up
    // on without being tried, so a backlog behind a dead receiver drains at once.
    assert_eq!(letters[1].attempts, 0, "{letters:?}");
    assert!(
        letters[1]
            .last_error
            .starts_with("not tried: the receiver was failing (")
            && letters[1].last_error.contains("503"),
        "{letters:?}"
    );
    let mut s = m
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .unwrap();
    for _ in 0..50 {
        if s.checks.iter().any(|c| c.code == "WEBHOOK_DEAD_LETTERS")
            && s.checks.iter().any(|c| c.code == "WEBHOOK_DISABLED")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        s = m
            .get_cluster_status(api::GetClusterStatusRequest {})
            .await
            .unwrap();
    }
    let check = |code: &str| s.checks.iter().find(|c| c.code == code).cloned();
    assert_eq!(
        check("WEBHOOK_DEAD_LETTERS").map(|c| c.count),
        Some(2),
        "{s:#?}"
    );
    assert_eq!(
        check("WEBHOOK_DISABLED").map(|c| c.count),
        Some(1),
        "{s:#?}"
    );

    // The receiver is back: a replay from the first dead event delivers both, in order.
    dead.store(false, std::sync::atomic::Ordering::SeqCst);
    m.replay_webhook(api::ReplayWebhookRequest {
        id: f.id,
        from_id: expected[0],
    })
    .await
    .unwrap();
    wait_for("the replay delivered", || flaky.acknowledged().len() >= 2).await;
    assert_eq!(flaky.acknowledged(), expected);
    // Purged dead letters clear the check.
    let purged = m
        .webhook_dead_letters(api::WebhookDeadLettersRequest {
            id: f.id,
            limit: 0,
            purge: true,
        })
        .await
        .unwrap();
    assert_eq!(purged.letters.len(), 2);
    let left = m
        .webhook_dead_letters(api::WebhookDeadLettersRequest {
            id: f.id,
            limit: 0,
            purge: false,
        })
        .await
        .unwrap();
    assert!(left.letters.is_empty());
    // A replay also enables the disabled endpoint, which then gets both events.
    m.replay_webhook(api::ReplayWebhookRequest {
        id: g.id,
        from_id: expected[0],
    })
    .await
    .unwrap();
    let list = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
    assert!(list.webhooks.iter().all(|w| w.disabled_reason.is_empty()));
    wait_for("the enabled endpoint got the replay", || {
        gone.acknowledged().len() >= 2
    })
    .await;
    assert_eq!(gone.acknowledged(), expected);
    // Both checks clear once nothing is dead or disabled.
    wait_for_status(
        &m,
        "WEBHOOK_DEAD_LETTERS and WEBHOOK_DISABLED to clear",
        |s| !s.checks.iter().any(|c| c.code.starts_with("WEBHOOK_")),
    )
    .await;
}

async fn wait_for_status(
    m: &MonitorClient,
    what: &str,
    done: impl Fn(&api::GetClusterStatusResponse) -> bool,
) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let s = m
            .get_cluster_status(api::GetClusterStatusRequest {})
            .await
            .unwrap();
        if done(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {LONG:?}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_leader_in_the_middle_of_delivery_loses_nothing() {
    let mut c = TestCluster::new(3, monitor_options(""));
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let m = c.cluster_client();
    // 40 ms per request: 100 events take about 4 s to deliver.
    let rx = Receiver::start(Box::new(|_| (200, None)), Duration::from_millis(40)).await;
    let added = add(&m, &rx.url(), &["flag."]).await.unwrap();
    *rx.state.secret.lock() = Some(added.generated_secret.clone());
    let start = latest(&m).await;
    for k in 0..100 {
        flag(&m, k % 2 == 0).await;
    }
    let expected = flag_events(&m, start).await;
    assert_eq!(expected.len(), 100);
    wait_for("some delivered", || rx.acknowledged().len() >= 20).await;
    c.kill9(leader);
    let at_kill = rx.acknowledged().len();
    assert!(
        at_kill < 100,
        "the leader died in the middle of delivery ({at_kill} of 100 delivered)"
    );
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.wait_leader(&others, LONG);
    let want = expected.clone();
    wait_for("every event delivered after the failover", || {
        let got = rx.acknowledged();
        want.iter().all(|id| got.contains(id))
    })
    .await;
    // At least once and in order: the first delivery of each event comes in id order.
    let mut first_seen = Vec::new();
    for id in rx.acknowledged() {
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(first_seen, expected);
    assert!(rx.got().iter().all(|r| r.verified));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_and_change_nothing() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let rx = Receiver::start(Box::new(|_| (200, None)), Duration::ZERO).await;
    let https = format!("https://{}/hook", rx.addr);
    // Plain http is refused unless allowed.
    expect_err(
        add(&m, &rx.url(), &[]).await,
        Code::InvalidArgument,
        "INVALID_WEBHOOK_URL",
    );
    expect_err(
        add(&m, "ftp://example.com/x", &[]).await,
        Code::InvalidArgument,
        "INVALID_WEBHOOK_URL",
    );
    expect_err(
        add(&m, "not a url", &[]).await,
        Code::InvalidArgument,
        "INVALID_WEBHOOK_URL",
    );
    // A closed port: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    expect_err(
        add(&m, &format!("https://{closed}/hook"), &[]).await,
        Code::FailedPrecondition,
        "WEBHOOK_UNREACHABLE",
    );
    // A 100 KiB url is over the call's size limit.
    let huge = format!("https://example.com/{}", "a".repeat(100 << 10));
    expect_err(
        add(&m, &huge, &[]).await,
        Code::ResourceExhausted,
        "REQUEST_TOO_LARGE",
    );
    let long = format!("https://example.com/{}", "a".repeat(3000));
    expect_err(
        add(&m, &long, &[]).await,
        Code::InvalidArgument,
        "INVALID_WEBHOOK_URL",
    );
    // A secret that is too short.
    expect_err(
        m.add_webhook(api::AddWebhookRequest {
            url: https.clone(),
            types: Vec::new(),
            secrets: vec!["whsec_c2hvcnQ=".to_string()],
            bearer_token: String::new(),
            skip_reachability_check: false,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_WEBHOOK_SECRET",
    );
    expect_err(
        add(&m, &https, &["OSD."]).await,
        Code::InvalidArgument,
        "INVALID_EVENT_TYPE",
    );
    assert!(
        m.list_webhooks(api::ListWebhooksRequest {})
            .await
            .unwrap()
            .webhooks
            .is_empty(),
        "nothing registered"
    );
    // One registration; the same url again is refused.
    let w = add(&m, &https, &[]).await.unwrap().webhook.unwrap();
    expect_err(
        add(&m, &https, &[]).await,
        Code::AlreadyExists,
        "WEBHOOK_EXISTS",
    );
    expect_err(
        m.remove_webhook(api::RemoveWebhookRequest { id: w.id + 100 })
            .await,
        Code::NotFound,
        "WEBHOOK_NOT_FOUND",
    );
    let list = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
    assert_eq!(list.webhooks.len(), 1);
    assert_eq!(list.webhooks[0].url, https);
    // Removed, the url can be registered again (with a new id).
    m.remove_webhook(api::RemoveWebhookRequest { id: w.id })
        .await
        .unwrap();
    let again = add(&m, &https, &[]).await.unwrap().webhook.unwrap();
    assert!(again.id > w.id);
    // At most 64 registered: the 65th is refused and nothing is added.
    for k in 1..64 {
        add(&m, &format!("{https}/{k}"), &[]).await.unwrap();
    }
    expect_err(
        add(&m, &format!("{https}/65"), &[]).await,
        Code::ResourceExhausted,
        "TOO_MANY_WEBHOOKS",
    );
    let list = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
    assert_eq!(list.webhooks.len(), 64);
    // The other calls: an unknown id, a replay from an event never written.
    let unknown = again.id + 1000;
    expect_err(
        m.replay_webhook(api::ReplayWebhookRequest {
            id: again.id,
            from_id: 1_000_000,
        })
        .await,
        Code::OutOfRange,
        "EVENTS_AHEAD",
    );
    expect_err(
        m.replay_webhook(api::ReplayWebhookRequest {
            id: unknown,
            from_id: 1,
        })
        .await,
        Code::NotFound,
        "WEBHOOK_NOT_FOUND",
    );
    expect_err(
        m.test_webhook(api::TestWebhookRequest { id: unknown })
            .await,
        Code::NotFound,
        "WEBHOOK_NOT_FOUND",
    );
    expect_err(
        m.webhook_dead_letters(api::WebhookDeadLettersRequest {
            id: unknown,
            limit: 0,
            purge: true,
        })
        .await,
        Code::NotFound,
        "WEBHOOK_NOT_FOUND",
    );
    let after = m.list_webhooks(api::ListWebhooksRequest {}).await.unwrap();
    assert_eq!(after, list, "refused calls change nothing");
}

//! Observability end to end: the `/metrics` of a leader and a standby checked against the
//! cluster's state (exact numbers) after boots, downs, pool creates and I/O reports; promtool on
//! a live scrape, the alert rules and their unit tests; the Grafana dashboard's JSON and every
//! query in it; and a real Prometheus server scraping a monitor.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::{boot_request, expect_err, uuid};
use common::{ClusterOptions, TestCluster, wait_until};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::wire::PoolPgMapFields;
use tokio_util::sync::CancellationToken;

const LONG: Duration = Duration::from_secs(90);

/// A sample's labels, by name.
type Labels = BTreeMap<String, String>;

/// One parsed scrape: samples by metric name and label set, and the declared families.
#[derive(Debug, Default)]
struct Scrape {
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
    families: BTreeSet<String>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape {
            text: text.to_string(),
            ..Scrape::default()
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().expect("family name");
                s.families.insert(name.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
                None => (series, BTreeMap::new()),
            };
            s.samples
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        s
    }

    /// The value of `name` with exactly `labels`, if present.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }

    /// Like `get`, but the sample must exist.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// Every sample of `name`, keyed by the value of `label`.
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        self.samples
            .get(name)
            .map(|v| {
                v.iter()
                    .map(|(l, x)| (l.get(label).cloned().unwrap_or_default(), *x))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn has_family(&self, name: &str) -> bool {
        self.families.contains(name) || self.samples.contains_key(name)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label key");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

fn scrape(c: &TestCluster, i: usize) -> Scrape {
    let (status, body) = c.http_get(i, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(&body)
}

/// Heartbeats, every 300 ms, for the OSDs in `alive` (id → boot instance).
fn heartbeat(
    m: Arc<MonitorClient>,
    alive: Arc<Mutex<BTreeMap<u32, u64>>>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let osds: Vec<(u32, u64)> = alive
                .lock()
                .unwrap()
                .iter()
                .map(|(a, b)| (*a, *b))
                .collect();
            for (osd_id, boot_instance) in osds {
                let _ = m
                    .heartbeat(api::HeartbeatRequest {
                        osd_id,
                        boot_instance,
                    })
                    .await;
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    })
}

/// Applies an id for and boots fake OSD `k` on `host`; it heartbeats from then on.
async fn boot(m: &MonitorClient, alive: &Mutex<BTreeMap<u32, u64>>, k: u32, host: &str) -> u32 {
    let id = m
        .apply_id(api::ApplyIdRequest { uuid: uuid(k) })
        .await
        .expect("apply id")
        .osd_id;
    let instance = 7000 + u64::from(k);
    m.boot(boot_request(id, &uuid(k), host, instance, 4))
        .await
        .expect("boot");
    alive.lock().unwrap().insert(id, instance);
    id
}

async fn status(m: &MonitorClient) -> api::GetClusterStatusResponse {
    m.get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .expect("status")
}

async fn osdmap_epoch(m: &MonitorClient) -> u64 {
    m.get_osd_map(api::GetOsdMapRequest {
        osd_id: 0,
        epoch: 0,
    })
    .await
    .expect("osdmap")
    .epoch
}

async fn pools(m: &MonitorClient) -> Vec<PoolPgMapFields> {
    m.get_pg_map(api::GetPgMapRequest::default())
        .await
        .expect("pgmap")
        .pools
        .into_iter()
        .map(|p| p.into_fields())
        .collect()
}

/// The leader's PG counts by (pool, state) from its status call.
fn status_pg_states(st: &api::GetClusterStatusResponse) -> BTreeMap<String, f64> {
    st.pg_states
        .iter()
        .map(|s| (s.name.clone(), s.count as f64))
        .collect()
}

/// The scraped PG counts of `pool` by state.
fn scraped_pg_states(s: &Scrape, pool: &str) -> BTreeMap<String, f64> {
    s.samples
        .get("fastblock_pgs")
        .map(|v| {
            v.iter()
                .filter(|(l, _)| l["pool"] == pool)
                .map(|(l, x)| (l["state"].clone(), *x))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that the scraped cluster series equal what the leader's API reports.
async fn assert_matches_api(s: &Scrape, m: &MonitorClient) {
    let st = status(m).await;
    assert_eq!(s.value("fastblock_osds", &[]), f64::from(st.osds_total));
    assert_eq!(s.value("fastblock_osds_up", &[]), f64::from(st.osds_up));
    assert_eq!(s.value("fastblock_osds_in", &[]), f64::from(st.osds_in));
    assert_eq!(s.value("fastblock_pools", &[]), f64::from(st.pools));
    assert_eq!(s.value("fastblock_images", &[]), st.images as f64);
    assert_eq!(
        s.value("fastblock_osdmap_epoch", &[]),
        st.osdmap_epoch as f64
    );
    assert_eq!(
        s.value("fastblock_osdmap_epoch", &[]),
        osdmap_epoch(m).await as f64
    );
    let level = match api::HealthStatus::try_from(st.health).expect("health") {
        api::HealthStatus::Ok => 0.0,
        api::HealthStatus::Warn => 1.0,
        api::HealthStatus::Err => 2.0,
        api::HealthStatus::Unspecified => panic!("unspecified health"),
    };
    assert_eq!(s.value("fastblock_health_status", &[]), level);
    let codes: BTreeSet<String> = st.checks.iter().map(|c| c.code.clone()).collect();
    let scraped: BTreeSet<String> = s
        .by_label("fastblock_health_check", "code")
        .into_keys()
        .collect();
    assert_eq!(scraped, codes, "health checks");
    // PG states summed over pools equal the status' counts.
    let mut all: BTreeMap<String, f64> = BTreeMap::new();
    for (l, x) in s.samples.get("fastblock_pgs").into_iter().flatten() {
        *all.entry(l["state"].clone()).or_default() += x;
    }
    assert_eq!(all, status_pg_states(&st), "PG states");
    let total: f64 = all.values().sum();
    assert_eq!(total, st.pgs as f64);
    // Per-OSD series and pool epochs equal the maps.
    let map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .expect("osdmap")
        .osdmap
        .expect("full map");
    let up = s.by_label("fastblock_osd_up", "osd");
    let inn = s.by_label("fastblock_osd_in", "osd");
    assert_eq!(up.len(), map.osds.len());
    for o in &map.osds {
        let id = o.id.to_string();
        assert_eq!(up[&id], if o.up { 1.0 } else { 0.0 }, "osd {id} up");
        assert_eq!(inn[&id], if o.r#in { 1.0 } else { 0.0 }, "osd {id} in");
    }
    let epochs = s.by_label("fastblock_pool_epoch", "pool");
    let pools = pools(m).await;
    assert_eq!(epochs.len(), pools.len());
    for p in &pools {
        let name = &p.pool.as_ref().expect("pool info").name;
        assert_eq!(epochs[name], p.epoch as f64, "pool {name} epoch");
    }
}

/// Retries `assert_matches_api` until the scrape and the API agree (a commit may land between
/// the two reads), failing with the last mismatch.
async fn until_matches(c: &TestCluster, leader: usize, m: &MonitorClient) {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let s = scrape(c, leader);
        let before = osdmap_epoch(m).await;
        let check = std::panic::AssertUnwindSafe(assert_matches_api(&s, m));
        let result = futures::FutureExt::catch_unwind(check).await;
        let stable = osdmap_epoch(m).await == before;
        match result {
            Ok(()) => return,
            Err(e) if stable && std::time::Instant::now() > deadline => {
                std::panic::resume_unwind(e)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

const LEADER_ONLY: [&str; 12] = [
    "fastblock_osds",
    "fastblock_osds_up",
    "fastblock_osds_in",
    "fastblock_osd_up",
    "fastblock_osd_in",
    "fastblock_osd_weight",
    "fastblock_osd_heartbeat_age_seconds",
    "fastblock_pools",
    "fastblock_osdmap_epoch",
    "fastblock_pgs",
    "fastblock_health_status",
    "fastblock_pool_read_bytes_total",
];

#[track_caller]
fn assert_standby(s: &Scrape, name: &str) {
    assert_eq!(s.value("fastblock_leader", &[]), 0.0);
    assert_eq!(
        s.value(
            "fastblock_monitor_info",
            &[
                ("name", name),
                ("role", "standby"),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        1.0
    );
    for family in LEADER_ONLY {
        assert!(
            !s.has_family(family),
            "standby exports leader-only {family}:\n{}",
            s.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_and_standby_metrics_follow_the_cluster_state() {
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let standby = (leader + 1) % 3;
    let leader_name = c.monitors[leader].name.clone();
    let standby_name = c.monitors[standby].name.clone();
    let m = Arc::new(c.client(leader));
    // Every monitor registered (else MON_DOWN is a failing check).
    let deadline = std::time::Instant::now() + LONG;
    while m.get_leader().await.expect("leader").monitors.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "monitors never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fresh leader: no OSDs, one election won, the epoch of its key.
    let s = scrape(&c, leader);
    assert_eq!(s.value("fastblock_leader", &[]), 1.0);
    let l = m.get_leader().await.expect("leader");
    assert_eq!(
        s.value("fastblock_leader_epoch", &[]),
        l.leader_epoch as f64
    );
    assert_eq!(
        s.value(
            "fastblock_leadership_changes_total",
            &[("reason", "elected")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "fastblock_monitor_info",
            &[
                ("name", &leader_name),
                ("role", "leader"),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        1.0
    );
    assert_eq!(s.value("fastblock_osds", &[]), 0.0);
    assert_eq!(s.value("fastblock_embedded_etcd_up", &[]), 1.0);
    assert_eq!(s.value("fastblock_embedded_etcd_restarts_total", &[]), 0.0);
    assert_standby(&scrape(&c, standby), &standby_name);

    // Six OSDs on three hosts, heartbeating.
    let alive = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = CancellationToken::new();
    let beats = heartbeat(m.clone(), alive.clone(), stop.clone());
    let mut ids = Vec::new();
    for k in 0..6 {
        ids.push(boot(&m, &alive, k, &format!("host{}", k % 3)).await);
    }
    let s = scrape(&c, leader);
    assert_eq!(s.value("fastblock_osds", &[]), 6.0);
    assert_eq!(s.value("fastblock_osds_up", &[]), 6.0);
    assert_eq!(s.value("fastblock_osds_in", &[]), 6.0);
    for id in &ids {
        let id = id.to_string();
        assert_eq!(s.value("fastblock_osd_up", &[("osd", &id)]), 1.0);
        assert_eq!(s.value("fastblock_osd_in", &[("osd", &id)]), 1.0);
        assert_eq!(s.value("fastblock_osd_weight", &[("osd", &id)]), 1.0);
    }
    assert_eq!(
        s.value("fastblock_osd_heartbeat_age_seconds_count", &[]),
        6.0
    );
    assert_eq!(
        s.value(
            "fastblock_grpc_requests_total",
            &[("method", "boot"), ("code", "OK")]
        ),
        6.0
    );
    assert_eq!(
        s.value(
            "fastblock_grpc_requests_total",
            &[("method", "apply_id"), ("code", "OK")]
        ),
        6.0
    );
    assert_eq!(
        s.value(
            "fastblock_grpc_request_duration_seconds_count",
            &[("method", "boot"), ("code", "OK")]
        ),
        6.0
    );
    assert_eq!(s.value("fastblock_pools", &[]), 0.0);
    assert_eq!(
        s.value("fastblock_health_status", &[]),
        0.0,
        "{:?}",
        s.samples.get("fastblock_health_check")
    );
    assert!(!s.has_family("fastblock_pgs"), "no pools, no PG series");
    assert_matches_api(&s, &m).await;
    let commits = s.value("fastblock_commit_batch_commands_count", &[]);
    assert!(commits >= 1.0, "the boots were committed");
    assert!(
        s.value("fastblock_commit_batch_commands_sum", &[]) >= 12.0,
        "6 ApplyId and 6 Boot commands were committed"
    );
    assert_standby(&scrape(&c, standby), &standby_name);

    // A refused call is counted under its code and changes nothing.
    let epoch = s.value("fastblock_osdmap_epoch", &[]);
    expect_err(
        m.create_pool(api::CreatePoolRequest {
            name: "bad".to_string(),
            pg_size: 0,
            pg_count: 8,
            failure_domain: "host".to_string(),
            root: String::new(),
        })
        .await,
        tonic::Code::InvalidArgument,
        "INVALID_PG_SIZE",
    );
    let s = scrape(&c, leader);
    assert_eq!(
        s.value(
            "fastblock_grpc_requests_total",
            &[("method", "create_pool"), ("code", "InvalidArgument")]
        ),
        1.0
    );
    assert_eq!(
        s.get(
            "fastblock_grpc_requests_total",
            &[("method", "create_pool"), ("code", "OK")]
        ),
        None
    );
    assert_eq!(s.value("fastblock_pools", &[]), 0.0);
    assert_eq!(s.value("fastblock_osdmap_epoch", &[]), epoch);

    // A leader-only call to the standby is counted there as UNAVAILABLE.
    let standby_addr = c.monitors[standby].grpc.clone();
    let err = c
        .client(standby)
        .raw(&standby_addr)
        .expect("raw client")
        .list_pools(api::ListPoolsRequest::default())
        .await
        .expect_err("standby");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    let ss = scrape(&c, standby);
    assert_eq!(
        ss.value(
            "fastblock_grpc_requests_total",
            &[("method", "list_pools"), ("code", "Unavailable")]
        ),
        1.0
    );

    // A pool: 32 PGs creating, its epoch, an image.
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 32,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .expect("create pool");
    m.create_image(api::CreateImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "disk0".to_string(),
        size: 1 << 30,
        object_size: 4 << 20,
    })
    .await
    .expect("create image");
    let s = scrape(&c, leader);
    assert_eq!(s.value("fastblock_pools", &[]), 1.0);
    assert_eq!(s.value("fastblock_images", &[]), 1.0);
    assert_eq!(
        scraped_pg_states(&s, "rbd"),
        BTreeMap::from([("creating".to_string(), 32.0)])
    );
    let pool = pools(&m).await.remove(0);
    assert_eq!(
        s.value("fastblock_pool_epoch", &[("pool", "rbd")]),
        pool.epoch as f64
    );
    assert_matches_api(&s, &m).await;
    assert_standby(&scrape(&c, standby), &standby_name);

    // The PGs' leaders report: all 32 active.
    for pg in &pool.pgs {
        m.leader_be_elected(api::LeaderBeElectedRequest {
            leader_id: pg.members[0],
            pool_id: pool.pool_id,
            pg_id: pg.id,
            members: pg.members.clone(),
            new_members: Vec::new(),
        })
        .await
        .expect("leader elected");
    }
    let s = scrape(&c, leader);
    assert_eq!(
        scraped_pg_states(&s, "rbd"),
        BTreeMap::from([("active".to_string(), 32.0)])
    );
    assert_eq!(
        s.value(
            "fastblock_grpc_requests_total",
            &[("method", "leader_be_elected"), ("code", "OK")]
        ),
        32.0
    );
    assert_eq!(s.value("fastblock_health_status", &[]), 0.0);
    assert_matches_api(&s, &m).await;

    // Client I/O: cumulative per-PG counters from the OSDs become per-pool totals.
    let counters = |rb, wb, ro, wo| api::PgIoCounters {
        read_bytes: rb,
        write_bytes: wb,
        read_ops: ro,
        write_ops: wo,
    };
    let pid = pool.pool_id;
    // Each PG's counters come from one of its members (only members are counted).
    let (osd0, osd1) = (pool.pgs[0].members[0], pool.pgs[1].members[0]);
    for (osd, pg, c) in [
        (osd0, 0, counters(4096, 8192, 1, 2)),
        (osd1, 1, counters(100, 0, 3, 0)),
        (osd0, 0, counters(5000, 8192, 2, 2)),
    ] {
        let r = m
            .data_statistics(api::DataStatisticsRequest {
                osd_id: osd,
                pgs: [(format!("{pid}.{pg}"), c)].into(),
            })
            .await
            .expect("statistics");
        assert_eq!((r.ignored, r.not_member), (0, 0));
    }
    let s = scrape(&c, leader);
    let pool_label = [("pool", "rbd")];
    assert_eq!(
        s.value("fastblock_pool_read_bytes_total", &pool_label),
        5100.0
    );
    assert_eq!(
        s.value("fastblock_pool_write_bytes_total", &pool_label),
        8192.0
    );
    assert_eq!(s.value("fastblock_pool_read_ops_total", &pool_label), 5.0);
    assert_eq!(s.value("fastblock_pool_write_ops_total", &pool_label), 2.0);

    // host0's two OSDs stop heartbeating: down (not out), PGs undersized, OSD_DOWN.
    let dead: Vec<u32> = vec![ids[0], ids[3]];
    for d in &dead {
        alive.lock().unwrap().remove(d);
    }
    wait_until(
        LONG,
        "two OSDs down and their PGs undersized in the metrics",
        || {
            let s = scrape(&c, leader);
            s.get("fastblock_osds_up", &[]) == Some(4.0)
                && scraped_pg_states(&s, "rbd")
                    .iter()
                    .filter(|(k, _)| k.contains("undersize"))
                    .map(|(_, n)| n)
                    .sum::<f64>()
                    == 32.0
        },
    );
    until_matches(&c, leader, &m).await;
    let s = scrape(&c, leader);
    assert_eq!(s.value("fastblock_osds", &[]), 6.0);
    assert_eq!(s.value("fastblock_osds_in", &[]), 6.0);
    for id in &ids {
        let want = if dead.contains(id) { 0.0 } else { 1.0 };
        assert_eq!(
            s.value("fastblock_osd_up", &[("osd", &id.to_string())]),
            want
        );
    }
    assert_eq!(
        s.value("fastblock_osd_heartbeat_age_seconds_count", &[]),
        4.0
    );
    assert_eq!(s.value("fastblock_health_status", &[]), 1.0);
    assert_eq!(
        s.value(
            "fastblock_health_check",
            &[
                ("code", "OSD_DOWN"),
                ("severity", "HEALTH_WARN"),
                ("muted", "false")
            ]
        ),
        1.0
    );
    let states = scraped_pg_states(&s, "rbd");
    assert_eq!(states.values().sum::<f64>(), 32.0);
    // Size 3 over 3 hosts: every PG had a replica on host0.
    let undersized: f64 = states
        .iter()
        .filter(|(k, _)| k.contains("undersize"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(undersized, 32.0, "every PG lost a replica: {states:?}");
    assert_eq!(
        s.value(
            "fastblock_health_check",
            &[
                ("code", "PG_DEGRADED"),
                ("severity", "HEALTH_WARN"),
                ("muted", "false")
            ]
        ),
        1.0
    );
    assert_standby(&scrape(&c, standby), &standby_name);

    stop.cancel();
    beats.await.expect("heartbeats");
}

// ---- promtool, the dashboard and a real Prometheus server ----

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a tool that CI installs; a missing tool fails the test with the way to install it.
fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {name} ({e}): install it with `apt-get install -y prometheus` (.ci/run and `make deps` do)")
        });
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Metric names referenced by a PromQL expression (ours and the process collector's).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = expr[i..].starts_with("fastblock_") || expr[i..].starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = expr[i..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map_or(expr.len(), |n| i + n);
            out.push(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// True when `name` is a scraped family, or a histogram's `_bucket`/`_sum`/`_count` series.
fn exported(s: &Scrape, name: &str) -> bool {
    s.has_family(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| s.has_family(base))
        })
}

/// Every PromQL expression of the dashboard, with its variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo().join("config/grafana/fastblock-monitor.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert_eq!(dash["uid"], "fastblock-monitor");
    let panels = dash["panels"].as_array().expect("panels");
    let mut out = Vec::new();
    let mut titles = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().expect("panel title").to_string();
        if p["type"] == "row" {
            titles.insert(title);
            continue;
        }
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: expr"));
            let expr = expr
                .replace("$job", "fastblock-monitor")
                .replace("$__rate_interval", "1m");
            out.push((title.clone(), expr));
        }
    }
    for row in [
        "Cluster overview",
        "OSDs",
        "PGs",
        "Epochs",
        "Client I/O",
        "RPC",
        "etcd",
        "Leadership",
    ] {
        assert!(titles.contains(row), "dashboard row {row} missing");
    }
    out
}

/// Every alert expression of the rule file.
fn alert_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(repo().join("config/prometheus/alerts.yml")).expect("alerts");
    let mut out = Vec::new();
    let mut alert = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("- alert: ") {
            alert = Some(name.to_string());
        } else if let Some(expr) = line.strip_prefix("expr: ") {
            out.push((alert.clone().expect("alert before expr"), expr.to_string()));
        }
    }
    out
}

/// A Prometheus server scraping one monitor; killed on drop.
struct Prometheus {
    child: Child,
    address: String,
}

impl Prometheus {
    fn start(dir: &Path, address: &str, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: fastblock-monitor\n    static_configs:\n      - targets: ['{target}']\n",
                repo().join("config/prometheus/alerts.yml").display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        common::die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run prometheus ({e}): install it with `apt-get install -y prometheus` (.ci/run and `make deps` do)")
        });
        Prometheus {
            child,
            address: address.to_string(),
        }
    }

    /// Runs an instant query; the parsed JSON answer.
    fn query(&self, promql: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = common::http_get(&self.address, &path)
            .unwrap_or_else(|| panic!("prometheus at {} unreachable", self.address));
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("bad answer to {promql} ({status}): {e}: {body}"));
        assert_eq!(v["status"], "success", "query {promql} failed: {body}");
        v
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo().join("config/prometheus");
    let (ok, out) = tool(
        "promtool",
        &["check", "rules", dir.join("alerts.yml").to_str().unwrap()],
        None,
    );
    assert!(ok, "promtool check rules: {out}");
    assert!(out.contains("SUCCESS: 16 rules found"), "{out}");
    let (ok, out) = tool(
        "promtool",
        &[
            "test",
            "rules",
            dir.join("alerts_test.yml").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "promtool test rules: {out}");
    let (ok, out) = tool(
        "promtool",
        &[
            "check",
            "config",
            dir.join("prometheus.yml").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "promtool check config: {out}");
    let names: Vec<String> = alert_queries().into_iter().map(|(n, _)| n).collect();
    for required in [
        "FastblockLeaderAbsent",
        "FastblockLeaderFlapping",
        "FastblockOsdDown",
        "FastblockOsdsDownPercent",
        "FastblockPgsNotActive",
        "FastblockEtcdCommitFailures",
        "FastblockEmbeddedEtcdRestarting",
        "FastblockMonitorDown",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_monitor_and_promtool_accepts_the_scrape() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"1h\"\nwebhook_allow_http = true".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // Something in every family: OSDs, a pool, I/O, a flag (a failing health check), an error,
    // a webhook (to a port nobody listens on: its deliveries fail and queue up).
    let alive = Mutex::new(BTreeMap::new());
    let mut ids = Vec::new();
    for k in 0..3 {
        ids.push(boot(&m, &alive, k, &format!("host{k}")).await);
    }
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 16,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .expect("pool");
    let pid = pools(&m).await[0].pool_id;
    m.data_statistics(api::DataStatisticsRequest {
        osd_id: ids[0],
        pgs: [(
            format!("{pid}.0"),
            api::PgIoCounters {
                read_bytes: 1,
                write_bytes: 2,
                read_ops: 3,
                write_ops: 4,
            },
        )]
        .into(),
    })
    .await
    .expect("statistics");
    m.set_flag(api::SetFlagRequest {
        flag: api::ClusterFlag::Noout as i32,
    })
    .await
    .expect("noout");
    let _ = m
        .get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: "missing".to_string(),
        })
        .await
        .expect_err("no such image");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("address"));
    drop(closed);
    m.add_webhook(api::AddWebhookRequest {
        url,
        skip_reachability_check: true,
        ..Default::default()
    })
    .await
    .expect("webhook");
    m.create_image(api::CreateImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm".to_string(),
        size: 1 << 30,
        object_size: 0,
    })
    .await
    .expect("an image: an event for the webhook");
    wait_until(LONG, "a failed webhook delivery to be counted", || {
        scrape(&c, 0)
            .samples
            .get("fastblock_webhook_deliveries_total")
            .is_some_and(|v| v.iter().any(|(l, x)| l["outcome"] == "failed" && *x > 0.0))
    });

    // promtool lints the live exposition.
    let s = scrape(&c, 0);
    let (ok, out) = tool("promtool", &["check", "metrics"], Some(&s.text));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}"
    );

    // Every metric the dashboard and the alerts use is exported.
    let queries: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .chain(alert_queries())
        .collect();
    let mut missing = HashSet::new();
    for (title, expr) in &queries {
        for name in metric_names(expr) {
            if !exported(&s, &name) {
                missing.insert(format!("{title}: {name}"));
            }
        }
    }
    assert!(missing.is_empty(), "not exported: {missing:?}");

    // A real Prometheus server scrapes the monitor.
    let prom_dir = tempfile::Builder::new()
        .prefix("fbmon-prometheus-")
        .tempdir()
        .expect("temp dir");
    let prom = Prometheus::start(
        prom_dir.path(),
        &format!("{}:24990", c.ip),
        &c.monitors[0].http,
    );
    let mut series = Vec::new();
    wait_until(LONG, "prometheus to have fastblock_osd_up", || {
        let Some((200, body)) = common::http_get(
            &prom.address,
            &format!("/api/v1/query?query={}", url_encode("fastblock_osd_up")),
        ) else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        series = v["data"]["result"].as_array().cloned().unwrap_or_default();
        series.len() == ids.len()
    });
    let mut got: Vec<(String, String, String)> = series
        .iter()
        .map(|r| {
            (
                r["metric"]["osd"].as_str().expect("osd").to_string(),
                r["metric"]["job"].as_str().expect("job").to_string(),
                r["value"][1].as_str().expect("value").to_string(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String)> = ids
        .iter()
        .map(|id| {
            (
                id.to_string(),
                "fastblock-monitor".to_string(),
                "1".to_string(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    let up = prom.query("up{job=\"fastblock-monitor\"}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // Every dashboard and alert query is valid PromQL for the server.
    for (title, expr) in &queries {
        let v = prom.query(expr);
        assert!(v["data"]["result"].is_array(), "{title}: {v}");
    }
    // The alert rules are loaded and evaluate without errors.
    let (status, body) = common::http_get(&prom.address, "/api/v1/rules").expect("rules");
    assert_eq!(status, 200, "{body}");
    let rules: serde_json::Value = serde_json::from_str(&body).expect("rules json");
    let group = &rules["data"]["groups"][0]["rules"];
    assert_eq!(group.as_array().map(Vec::len), Some(16), "{rules}");
    wait_until(LONG, "every rule evaluated once", || {
        let (_, body) = common::http_get(&prom.address, "/api/v1/rules").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["groups"][0]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
    });
}

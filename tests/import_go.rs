//! `fastblock-mon import-go` against real processes: a plain etcd plays the Go monitor's etcd,
//! loaded with a fixture (tests/fixtures/go, the Go monitor's JSON); the import reads it, writes
//! our monitor's etcd, and the monitor started on it answers a legacy client's first
//! GetClusterMap with the ids, addresses, members, core indexes and versions the Go monitor had
//! (read here from the fixture's JSON, not from the converter). Blocking anomalies and a
//! non-empty target are refused with nothing written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use common::legacy::framed::LegacyClient;
use common::legacy::poll;
use common::{ClusterOptions, TestCluster, claim_loopback_ip, run_bin};
use serde_json::Value;

const MON: &str = env!("CARGO_BIN_EXE_fastblock-mon");
const LONG: Duration = Duration::from_secs(90);

/// The fixture as (key, value) pairs, values as the stored bytes.
fn fixture(name: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/go")
        .join(format!("{name}.json"));
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    v.as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_string()))
        .collect()
}

/// A plain etcd holding `fixture`: the Go monitor's etcd, its monitors stopped.
struct GoEtcd {
    _dir: tempfile::TempDir,
    _claim: common::IpClaim,
    child: Child,
    url: String,
}

impl Drop for GoEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn go_etcd(fixture_name: &str) -> GoEtcd {
    go_etcd_with(&fixture(fixture_name)).await
}

/// A plain etcd holding `pairs` (none: an etcd without any Go monitor state).
async fn go_etcd_with(pairs: &[(String, String)]) -> GoEtcd {
    let claim = claim_loopback_ip();
    let dir = tempfile::tempdir().expect("dir");
    let (child, url) = common::start_external_etcd(dir.path(), &claim.ip);
    let go = GoEtcd {
        _dir: dir,
        _claim: claim,
        child,
        url,
    };
    let deadline = std::time::Instant::now() + LONG;
    let mut client = loop {
        if let Ok(mut c) = etcd_client::Client::connect([go.url.clone()], None).await
            && c.get("x", None).await.is_ok()
        {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Go etcd never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (k, v) in pairs {
        client.put(k.as_str(), v.as_str(), None).await.expect("put");
    }
    go
}

fn import(c: &TestCluster, go: &GoEtcd, extra: &[&str]) -> (i32, String, String) {
    let conf = c.monitors[0].config.display().to_string();
    let from = format!("--from-etcd={}", go.url);
    let mut args = vec!["--conf", conf.as_str(), "import-go", from.as_str()];
    args.extend_from_slice(extra);
    run_bin(MON, &args, &[])
}

fn monitor() -> TestCluster {
    TestCluster::new(
        1,
        ClusterOptions {
            // Imported OSDs are up without heartbeats: keep them up while the test reads.
            extra_config: "osd_down_after = \"60s\"".to_string(),
            ..ClusterOptions::default()
        },
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_cluster_answers_legacy_osds_with_what_the_go_monitor_had() {
    let go = go_etcd("small").await;
    let mut c = monitor();

    // Dry run: the report, nothing written.
    let (code, out, err) = import(&c, &go, &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report = json(&out);
    assert_eq!(report["counts"]["osds"], 7, "{out}");
    assert_eq!(report["counts"]["pools"], 1, "{out}");
    assert_eq!(report["counts"]["pgs"], 64, "{out}");
    assert_eq!(report["counts"]["images"], 2, "{out}");
    assert!(err.contains("dry run: nothing written"), "{err}");

    let (code, out, err) = import(&c, &go, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("imported:"), "{err}");
    // Once is enough: a second import finds our etcd holding a cluster.
    let (code, _, err) = import(&c, &go, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to overwrite it without --force"),
        "{err}"
    );

    c.start_all();
    c.wait_leader(&[0], LONG);

    // What the Go monitor stored, read from the fixture's JSON.
    let source: BTreeMap<String, String> = fixture("small").into_iter().collect();
    let osdmap = json(&source["/osd/osdmap"]);
    let pool = json(&source["/config/pools/1"]);

    let mut conn = LegacyClient::connect(&c.monitors[0].grpc)
        .await
        .expect("connect");
    let reply = poll(&mut conn, -1, BTreeMap::new()).await;
    let om = reply.osdmap.expect("osdmap");
    assert_eq!(
        om.osdmapversion,
        osdmap["version"].as_i64().unwrap(),
        "osdmap version kept"
    );
    let go_osds = osdmap["osdinfo"].as_object().unwrap();
    assert_eq!(om.osds.len(), go_osds.len());
    for o in &om.osds {
        let g = &go_osds[&o.osdid.to_string()];
        assert_eq!(
            o.address,
            g["address"].as_str().unwrap_or(""),
            "osd.{}",
            o.osdid
        );
        assert_eq!(
            o.isup,
            g["isup"].as_bool().unwrap_or(false),
            "osd.{}",
            o.osdid
        );
        assert_eq!(
            o.isin,
            g["isin"].as_bool().unwrap_or(false),
            "osd.{}",
            o.osdid
        );
        let shards = g["sharded_ports"].as_object().map_or(0, |m| m.len());
        assert_eq!(o.sharded_ports.len(), shards, "osd.{}", o.osdid);
        for (i, s) in &o.sharded_ports {
            let gs = &g["sharded_ports"][i.to_string()];
            assert_eq!(
                i64::from(s.port),
                gs["port"].as_i64().unwrap(),
                "osd.{} shard {i}",
                o.osdid
            );
        }
    }
    let pm = reply.pgmap.expect("pgmap");
    // Kept, or raised to the highest PG version (the Go monitor counts PG versions apart from
    // the pool's; ours are never above their pool's): never lowered.
    let go_pool_version = pool["poolpgmap"]["version"].as_i64().unwrap();
    assert!(
        pm.poolid_pgmapversion[&1] >= go_pool_version,
        "pool version {} < {go_pool_version}",
        pm.poolid_pgmapversion[&1]
    );
    let pgs = &pm.pgs[&1];
    let go_pgs = pool["poolpgmap"]["pgmap"].as_object().unwrap();
    assert_eq!(pgs.len(), go_pgs.len());
    for pg in pgs {
        let g = &go_pgs[&pg.pgid.to_string()];
        let members: Vec<i32> = g["osdlist"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i32)
            .collect();
        assert_eq!(pg.osdid, members, "pg 1.{}: same members", pg.pgid);
        assert_eq!(
            i64::from(pg.coreindex),
            g["coreindex"].as_i64().unwrap_or(0),
            "pg 1.{}: same core",
            pg.pgid
        );
        assert_eq!(
            pg.version,
            g["version"].as_i64().unwrap(),
            "pg 1.{}",
            pg.pgid
        );
    }
    // Images keep their ids; the next one is above every old id.
    let grpc = c.client(0);
    let image = grpc
        .get_image_info(fastblock_monitor::proto::monitor::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: "vm-data".to_string(),
        })
        .await
        .expect("image")
        .image
        .expect("image");
    assert_eq!(image.id, 3);
    let created = grpc
        .create_image(fastblock_monitor::proto::monitor::CreateImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "new".to_string(),
            size: 1 << 30,
            object_size: 0,
        })
        .await
        .expect("create")
        .image
        .expect("image");
    assert!(created.id > 3, "{}", created.id);
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_anomalies_are_refused_unless_accepted() {
    let go = go_etcd("quirks").await;
    let mut c = monitor();
    let (code, out, err) = import(&c, &go, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("blocking anomalies"), "{err}");
    assert!(
        out.contains("Go monitor state to import"),
        "the report is printed: {out}"
    );
    // Nothing was written: an import without --force succeeds (it refuses a non-empty target).
    let (code, out, err) = import(&c, &go, &["--accept-anomalies"]);
    assert_eq!(code, 0, "{out}{err}");
    c.start_all();
    c.wait_leader(&[0], LONG);
    let status = c
        .client(0)
        .get_cluster_status(fastblock_monitor::proto::monitor::GetClusterStatusRequest {})
        .await
        .expect("status");
    assert!(status.osds_total > 0);
}

/// The remap fixture: changes in flight (PGs with new members), norebalance set and a pending
/// out→in rebalance. After the import the monitor serves every PG with the members, target
/// members, cores and states the Go monitor had, norebalance still set, so nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_flight_and_norebalance_survive_the_import() {
    let go = go_etcd("remap").await;
    let mut c = monitor();
    let (code, out, err) = import(&c, &go, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("pending out→in rebalance"),
        "the report says what happens to the rebalance: {out}"
    );
    c.start_all();
    c.wait_leader(&[0], LONG);

    let source: BTreeMap<String, String> = fixture("remap").into_iter().collect();
    let mut conn = LegacyClient::connect(&c.monitors[0].grpc)
        .await
        .expect("connect");
    let reply = poll(&mut conn, -1, BTreeMap::new()).await;
    let pm = reply.pgmap.expect("pgmap");
    let mut in_flight = 0;
    for pool_id in [1, 2] {
        let pool = json(&source[&format!("/config/pools/{pool_id}")]);
        let go_pgs = pool["poolpgmap"]["pgmap"].as_object().unwrap();
        let pgs = &pm.pgs[&pool_id];
        assert_eq!(pgs.len(), go_pgs.len(), "pool {pool_id}");
        let ids = |v: &Value| -> Vec<i32> {
            v.as_array()
                .map(|a| a.iter().map(|m| m.as_i64().unwrap() as i32).collect())
                .unwrap_or_default()
        };
        for pg in pgs {
            let g = &go_pgs[&pg.pgid.to_string()];
            let name = format!("pg {pool_id}.{}", pg.pgid);
            assert_eq!(pg.osdid, ids(&g["osdlist"]), "{name}: members");
            assert_eq!(pg.newosdid, ids(&g["newosdlist"]), "{name}: new members");
            // The health bits (undersize 4, down 8) are the reconciler's: it brings the
            // Go monitor's in line with the osdmap (18 PGs here, as the report says), maybe
            // before this read. Every other bit is the Go monitor's.
            const HEALTH_BITS: i64 = 4 | 8;
            assert_eq!(
                i64::from(pg.state) & !HEALTH_BITS,
                g["pgstate"].as_i64().unwrap_or(0) & !HEALTH_BITS,
                "{name}: state"
            );
            assert_eq!(
                i64::from(pg.coreindex),
                g["coreindex"].as_i64().unwrap_or(0),
                "{name}: core"
            );
            if !pg.newosdid.is_empty() {
                in_flight += 1;
                assert_eq!(
                    i64::from(pg.newcoreindex),
                    g["newcoreindex"].as_i64().unwrap_or(0),
                    "{name}: new core"
                );
            }
        }
    }
    assert!(in_flight > 0, "the fixture has changes in flight");
    let status = c
        .client(0)
        .get_osd_map(fastblock_monitor::proto::monitor::GetOsdMapRequest::default())
        .await
        .expect("osdmap");
    let flags = status.osdmap.expect("osdmap").flags.clone();
    assert!(
        flags.contains(&(fastblock_monitor::proto::monitor::ClusterFlag::Norebalance as i32)),
        "norebalance kept: {flags:?}"
    );
}

/// Sources no import can be made of: nothing listening, and an etcd with no Go monitor state.
/// Each is one clear error and nothing is written to our etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_empty_source_is_a_clear_error() {
    let c = monitor();
    let conf = c.monitors[0].config.display().to_string();
    // A loopback address of our own where nothing listens.
    let nobody = claim_loopback_ip();
    let from = format!("--from-etcd=http://{}:2379", nobody.ip);
    let (code, out, err) = run_bin(MON, &["--conf", &conf, "import-go", &from], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the Go monitor's etcd"), "{err}");
    assert!(err.lines().count() <= 3, "short: {err}");

    let empty = go_etcd_with(&[]).await;
    let (code, out, err) = import(&c, &empty, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not a Go fastblock monitor's etcd"), "{err}");

    // Our etcd was never written: the small fixture imports without --force.
    let go = go_etcd("small").await;
    let (code, out, err) = import(&c, &go, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

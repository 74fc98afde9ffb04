//! The scale target of SPEC §11 within etcd's default limits: 10,000 OSDs with 64 shards each
//! and a 100,000-PG pool. The embedded member runs with etcd's stock limits (128 ops and
//! 1.5 MiB per request), so a transaction over them would be refused by etcd itself; the test
//! also checks every stored value is under 1 MiB, that a restarted monitor loads it all, and
//! that a backup of it, restored after the monitor's data is deleted, is the same cluster.
//!
//! Slow (about a minute): ignored by `make test`; run it with `make scale-test`
//! (`cargo test --release --test scale -- --ignored --nocapture`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::{boot_request, fingerprint, uuid};
use common::{ClusterOptions, TestCluster, run_bin};
use fastblock_monitor::proto::monitor as api;
use nix::sys::signal::Signal;

const OSDS: u32 = 10_000;
const HOSTS: u32 = 1_000;
const SHARDS: u32 = 64;
const PGS: u32 = 100_000;
const LONG: Duration = Duration::from_secs(600);
const FBCLIENT: &str = env!("CARGO_BIN_EXE_fbclient");
const MON: &str = env!("CARGO_BIN_EXE_fastblock-mon");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: run with `make scale-test`"]
async fn ten_thousand_osds_and_a_hundred_thousand_pgs_fit_etcd_defaults() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            // No heartbeats are sent by this test: keep every OSD up.
            extra_config: "osd_down_after = \"3600s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = Arc::new(c.cluster_client());

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..64u32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = worker + 1;
            while k <= OSDS {
                let u = uuid(k);
                let id = m
                    .apply_id(api::ApplyIdRequest { uuid: u.clone() })
                    .await
                    .expect("apply id")
                    .osd_id;
                m.boot(boot_request(
                    id,
                    &u,
                    &format!("host{}", k % HOSTS),
                    7,
                    SHARDS,
                ))
                .await
                .expect("boot");
                k += 64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let booted = started.elapsed();
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .unwrap();
    assert_eq!(
        (status.osds_total, status.osds_up, status.osds_in),
        (OSDS, OSDS, OSDS)
    );

    let started = Instant::now();
    let pool = m
        .create_pool(api::CreatePoolRequest {
            name: "big".to_string(),
            pg_size: 3,
            pg_count: PGS,
            failure_domain: "host".to_string(),
            root: String::new(),
        })
        .await
        .unwrap();
    let created = started.elapsed();

    let started = Instant::now();
    let full = m
        .get_cluster_map(api::GetClusterMapRequest::default())
        .await
        .unwrap();
    let fetched = started.elapsed();
    assert_eq!(
        full.osdmap
            .as_ref()
            .unwrap()
            .osdmap
            .as_ref()
            .unwrap()
            .osds
            .len(),
        OSDS as usize
    );
    assert_eq!(
        full.pgmap.as_ref().unwrap().pools[0].pgs.len(),
        PGS as usize
    );
    let map_bytes = prost::Message::encoded_len(&full);

    // Every stored value is below etcd's 1 MiB value guidance; counts match the layout.
    let mut etcd = c.etcd().await;
    let mut largest = 0usize;
    let mut osd_keys = 0;
    let mut chunk_keys = 0;
    let mut key = b"/fastblock/".to_vec();
    loop {
        let resp = etcd
            .get(
                key.clone(),
                Some(
                    etcd_client::GetOptions::new()
                        .with_range("/fastblock0")
                        .with_limit(1000),
                ),
            )
            .await
            .unwrap();
        for kv in resp.kvs() {
            largest = largest.max(kv.value().len());
            let k = String::from_utf8_lossy(kv.key());
            osd_keys += usize::from(k.starts_with("/fastblock/cluster/osd/"));
            chunk_keys += usize::from(k.starts_with("/fastblock/cluster/pg/"));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                key = last.key().to_vec();
                key.push(0);
            }
            _ => break,
        }
    }
    assert!(largest < 1 << 20, "largest value {largest} bytes");
    assert_eq!(osd_keys, OSDS as usize);
    assert_eq!(chunk_keys, PGS.div_ceil(256) as usize);

    // A restarted monitor loads it all back.
    c.signal(0, Signal::SIGTERM);
    assert!(c.wait_exit(0, LONG).success());
    let started = Instant::now();
    c.start(0);
    c.wait_leader(&[0], LONG);
    let reloaded = started.elapsed();
    let m = c.cluster_client();
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .unwrap();
    assert_eq!(status.osds_total, OSDS);
    assert_eq!(status.pgs, u64::from(PGS));
    let pools = m.list_pools(api::ListPoolsRequest {}).await.unwrap().pools;
    assert_eq!(pools[0].id, pool.pool_id);

    // Backup, the disaster (the monitor and its etcd data gone), restore: the same cluster.
    let before = fingerprint(&m, &[]).await;
    let file = c.dir.path().join("scale.fbbackup");
    let started = Instant::now();
    let (code, out, err) = run_bin(
        FBCLIENT,
        &[
            &format!("-mon={}", c.monitors[0].grpc),
            "-op=backup",
            &format!("-out={}", file.display()),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let backed_up = started.elapsed();
    let backup_bytes = std::fs::metadata(&file).unwrap().len();
    c.signal(0, Signal::SIGTERM);
    assert!(c.wait_exit(0, LONG).success());
    std::fs::remove_dir_all(&c.monitors[0].data_dir).expect("delete the data dir");
    let started = Instant::now();
    let (code, out, err) = run_bin(
        MON,
        &[
            "--conf",
            &c.monitors[0].config.display().to_string(),
            "restore",
            &file.display().to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let restored = started.elapsed();
    c.start(0);
    c.wait_leader(&[0], LONG);
    let m = c.cluster_client();
    let after = fingerprint(&m, &[]).await;
    assert!(
        after.status.0 > before.status.0,
        "the osdmap epoch was raised"
    );
    assert_eq!(after.without_epochs(), before.without_epochs());

    println!(
        "scale: {OSDS} OSDs x {SHARDS} shards booted in {booted:?}; {PGS}-PG pool created in \
         {created:?}; full cluster map ({} MiB) fetched in {fetched:?}; largest etcd value \
         {largest} bytes; restart to serving leader in {reloaded:?}; backup ({} MiB) in \
         {backed_up:?}; restore in {restored:?}",
        map_bytes >> 20,
        backup_bytes >> 20
    );
}

//! Backup and restore against real monitors and their embedded etcd: `fbclient -op=backup`
//! from a running cluster, the monitor stopped and its etcd data deleted (the disaster),
//! `fastblock-mon restore` into the empty etcd, and the restarted monitor serving the same
//! cluster with every epoch raised. Damaged, truncated and foreign files are refused before
//! anything is written; a non-empty target needs --force; a running monitor blocks a restore.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::api::{Fingerprint, boot_osds, fingerprint};
use common::{ClusterOptions, TestCluster, run_bin};
use fastblock_monitor::proto::monitor as api;

const FBCLIENT: &str = env!("CARGO_BIN_EXE_fbclient");
const MON: &str = env!("CARGO_BIN_EXE_fastblock-mon");
const LONG: Duration = Duration::from_secs(90);

fn start() -> TestCluster {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            // Restored OSDs are up without heartbeats: keep them up while the test reads.
            extra_config: "osd_down_after = \"60s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    c
}

fn fbclient(c: &TestCluster, args: &[&str]) -> (i32, String, String) {
    let mon = format!("-mon={}", c.monitors[0].grpc);
    let mut all = vec![mon.as_str()];
    all.extend_from_slice(args);
    run_bin(FBCLIENT, &all, &[])
}

fn restore(c: &TestCluster, file: &Path, extra: &[&str]) -> (i32, String, String) {
    let conf = c.monitors[0].config.display().to_string();
    let file = file.display().to_string();
    let mut args = vec!["--conf", conf.as_str(), "restore", file.as_str()];
    args.extend_from_slice(extra);
    run_bin(MON, &args, &[])
}

/// A cluster with state of every kind: OSDs on hosts, a pool, an image, a deleted pool, a flag.
async fn populate(c: &TestCluster) {
    let client = c.client(0);
    boot_osds(&client, 1, 6, 3).await;
    for (name, pgs) in [("rbd", 300), ("gone", 16)] {
        client
            .create_pool(api::CreatePoolRequest {
                name: name.to_string(),
                pg_count: pgs,
                pg_size: 3,
                failure_domain: "host".to_string(),
                root: String::new(),
            })
            .await
            .expect("create pool");
    }
    client
        .delete_pool(api::DeletePoolRequest {
            name: "gone".to_string(),
        })
        .await
        .expect("delete pool");
    client
        .create_image(api::CreateImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "vm1".to_string(),
            size: 10 << 30,
            object_size: 0,
        })
        .await
        .expect("image");
    client
        .set_flag(api::SetFlagRequest {
            flag: api::ClusterFlag::Noout as i32,
        })
        .await
        .expect("flag");
}

/// Stops the monitor and deletes its data (etcd member included): the disaster.
fn lose_everything(c: &mut TestCluster) {
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
    std::fs::remove_dir_all(&c.monitors[0].data_dir).expect("delete the data dir");
}

fn backup_file(c: &TestCluster, name: &str) -> PathBuf {
    c.dir.path().join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_disaster_then_restore_gives_the_same_cluster_with_higher_epochs() {
    let mut c = start();
    populate(&c).await;
    let client = c.client(0);
    let before = fingerprint(&client, &[("rbd", "vm1")]).await;
    let file = backup_file(&c, "cluster.fbb");
    let (code, out, err) = fbclient(&c, &["-op=backup", &format!("-out={}", file.display())]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("backup written to"), "{out}");
    assert!(!file.with_extension("fbb.partial").exists());

    let (code, out, err) = fbclient(
        &c,
        &[
            "-op=backup-verify",
            &format!("-in={}", file.display()),
            "-json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["state"]["osds"], 6);
    assert_eq!(v["state"]["pools"], 1);
    assert_eq!(v["state"]["pgs"], 300);
    assert_eq!(v["state"]["images"], 1);
    assert_eq!(v["state"]["deleted_pools"], 1);
    assert_eq!(v["state"]["flags"], serde_json::json!(["noout"]));
    assert_eq!(v["osd_configs"], 6);

    // A change after the backup: a client sees an epoch the backup does not have.
    client
        .set_flag(api::SetFlagRequest {
            flag: api::ClusterFlag::Noin as i32,
        })
        .await
        .expect("flag");
    let seen_osdmap = client
        .get_osd_map(api::GetOsdMapRequest::default())
        .await
        .expect("osdmap")
        .epoch;
    let seen_pools: Vec<(u32, u64)> = client
        .get_pg_map(api::GetPgMapRequest::default())
        .await
        .expect("pgmap")
        .pools
        .iter()
        .map(|p| (p.pool_id, p.epoch))
        .collect();
    assert!(!seen_pools.is_empty());

    lose_everything(&mut c);
    let (code, out, err) = restore(&c, &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("epochs raised by 1000000"), "{out}");
    assert!(out.contains("restored: osdmap epoch"), "{out}");

    c.start(0);
    c.wait_leader(&[0], LONG);
    let client = c.client(0);
    let after = Fingerprint::without_epochs(fingerprint(&client, &[("rbd", "vm1")]).await);
    // The flag set after the backup is gone: the cluster is the backup's.
    assert_eq!(
        after.osdmap.osdmap.as_ref().unwrap().flags,
        vec![api::ClusterFlag::Noout as i32]
    );
    assert_eq!(after, Fingerprint::without_epochs(before));
    // Every epoch is above what any client saw, so the old client resynchronises: asked with
    // its epochs, the monitor answers with whole maps at higher epochs.
    let osdmap = client
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: seen_osdmap,
        })
        .await
        .expect("osdmap");
    assert!(
        osdmap.epoch > seen_osdmap,
        "{} <= {seen_osdmap}",
        osdmap.epoch
    );
    assert_eq!(
        osdmap
            .osdmap
            .expect("the whole osdmap is sent again")
            .osds
            .len(),
        6
    );
    let pgmap = client
        .get_pg_map(api::GetPgMapRequest {
            pool_epochs: seen_pools.iter().copied().collect(),
        })
        .await
        .expect("pgmap");
    for (id, epoch) in &seen_pools {
        let p = pgmap
            .pools
            .iter()
            .find(|p| p.pool_id == *id)
            .expect("the pool is sent again");
        assert!(p.epoch > *epoch, "pool {id}: {} <= {epoch}", p.epoch);
        assert_eq!(p.pgs.len(), 300);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_refused_and_a_full_target_needs_force() {
    let mut c = start();
    populate(&c).await;
    let file = backup_file(&c, "good.fbb");
    let (code, out, err) = fbclient(&c, &["-op=backup", &format!("-out={}", file.display())]);
    assert_eq!(code, 0, "{out}{err}");
    let good = std::fs::read(&file).expect("read");

    // While the monitor runs, a restore refuses even with --force: the state must not change
    // under a serving monitor.
    let (code, _, err) = restore(&c, &file, &["--force"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("monitors are running"), "{err}");

    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("cut-trailer", good[..good.len() - 10].to_vec(), "truncated"),
        (
            "not-a-backup",
            b"{\"osdinfo\":{}}".to_vec(),
            "not a fastblock backup",
        ),
        ("empty", Vec::new(), "not a fastblock backup"),
    ];
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    cases.push(("bit-flip", flipped, "damaged"));
    let mut version = good.clone();
    version[8..12].copy_from_slice(&9u32.to_le_bytes());
    cases.push(("version", version, "format version 9 is not supported"));

    for (name, bytes, expected) in &cases {
        let path = backup_file(&c, &format!("{name}.fbb"));
        std::fs::write(&path, bytes).expect("write");
        let (code, out, err) = fbclient(
            &c,
            &["-op=backup-verify", &format!("-in={}", path.display())],
        );
        assert_eq!(code, 1, "{name}: {out}");
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
    }

    let client = c.client(0);
    let before = fingerprint(&client, &[("rbd", "vm1")]).await;
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
    for (name, _, expected) in &cases {
        let path = backup_file(&c, &format!("{name}.fbb"));
        let (code, _, err) = restore(&c, &path, &["--force"]);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(expected), "{name}: {err}");
    }
    // The target holds the cluster: refused without --force, nothing written.
    let (code, _, err) = restore(&c, &file, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to overwrite it without --force"),
        "{err}"
    );
    c.start(0);
    c.wait_leader(&[0], LONG);
    let client = c.client(0);
    assert_eq!(
        fingerprint(&client, &[("rbd", "vm1")]).await,
        before,
        "refused restores changed nothing"
    );

    // With --force the backup replaces what is there (here: the same cluster, epochs raised).
    c.signal(0, nix::sys::signal::Signal::SIGTERM);
    c.wait_exit(0, LONG);
    let (code, out, err) = restore(&c, &file, &["--force", "--epoch-jump=500"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("--force: deleting"), "{out}");
    c.start(0);
    c.wait_leader(&[0], LONG);
    let client = c.client(0);
    let after = fingerprint(&client, &[("rbd", "vm1")]).await;
    assert_eq!(after.osdmap.epoch, before.osdmap.epoch + 500);
    assert_eq!(
        Fingerprint::without_epochs(after),
        Fingerprint::without_epochs(before)
    );
}

/// A quoted value of the monitor's config file (`key = "v"` or `key = ["v"]`).
fn config_value(c: &TestCluster, key: &str) -> String {
    let text = std::fs::read_to_string(&c.monitors[0].config).expect("config");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} =")))
        .unwrap_or_else(|| panic!("no {key} in the config"));
    line.split('"').nth(1).expect("a quoted value").to_string()
}

/// The second runbook of docs/backup-restore.md: every member lost, the cluster brought back
/// from an etcd snapshot with `etcdctl snapshot restore` (state and epochs exactly as saved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_snapshot_restore_brings_the_same_cluster_back() {
    let mut c = start();
    populate(&c).await;
    let client = c.client(0);
    let before = fingerprint(&client, &[("rbd", "vm1")]).await;
    let snapshot = c.dir.path().join("etcd.snapshot");
    let endpoint = c.monitors[0].etcd_client_url.clone();
    let (code, out, err) = run_bin(
        "etcdctl",
        &[
            &format!("--endpoints={endpoint}"),
            "snapshot",
            "save",
            &snapshot.display().to_string(),
        ],
        &[("ETCDCTL_API", "3")],
    );
    assert_eq!(code, 0, "{out}{err}");

    lose_everything(&mut c);
    let data = c.monitors[0].data_dir.join("etcd");
    let (code, out, err) = run_bin(
        "etcdctl",
        &[
            "snapshot",
            "restore",
            &snapshot.display().to_string(),
            &format!("--name={}", config_value(&c, "etcd_name")),
            &format!(
                "--initial-cluster={}",
                config_value(&c, "etcd_initial_cluster")
            ),
            &format!(
                "--initial-advertise-peer-urls={}",
                config_value(&c, "etcd_advertise_peer_urls")
            ),
            &format!("--data-dir={}", data.display()),
        ],
        &[("ETCDCTL_API", "3")],
    );
    assert_eq!(code, 0, "{out}{err}");

    c.start(0);
    c.wait_leader(&[0], LONG);
    let client = c.client(0);
    assert_eq!(fingerprint(&client, &[("rbd", "vm1")]).await, before);
}

/// The three-monitor form of the first runbook: every member's data lost; the other two hosts
/// run `fastblock-mon --maintenance` (their etcd members only), the first host restores, the
/// maintenance runs are stopped and the three monitors come back serving the backup's cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_monitors_come_back_from_a_backup_with_the_maintenance_runbook() {
    let mut c = TestCluster::new(
        3,
        ClusterOptions {
            extra_config: "osd_down_after = \"60s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let client = c.client(leader);
    boot_osds(&client, 1, 6, 3).await;
    client
        .create_pool(api::CreatePoolRequest {
            name: "rbd".to_string(),
            pg_count: 128,
            pg_size: 3,
            failure_domain: "host".to_string(),
            root: String::new(),
        })
        .await
        .expect("create pool");
    let before = fingerprint(&client, &[]).await;
    let file = backup_file(&c, "three.fbb");
    let (code, out, err) = run_bin(
        FBCLIENT,
        &[
            &format!("-mon={}", c.monitors[leader].grpc),
            "-op=backup",
            &format!("-out={}", file.display()),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");

    // The disaster: every monitor and every member's data.
    for i in 0..3 {
        c.signal(i, nix::sys::signal::Signal::SIGTERM);
        c.wait_exit(i, LONG);
        std::fs::remove_dir_all(&c.monitors[i].data_dir).expect("delete the data dir");
    }
    // Hosts 2 and 3: only their etcd members.
    for i in 1..3 {
        c.start_with(i, &["--maintenance"]);
    }
    let (code, out, err) = restore(&c, &file, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for i in 1..3 {
        // While in maintenance, a monitor neither campaigns nor serves.
        assert!(!c.is_serving_leader(i), "m{} serves in maintenance", i + 1);
        c.signal(i, nix::sys::signal::Signal::SIGTERM);
        assert!(
            c.wait_exit(i, LONG).success(),
            "maintenance run stops cleanly"
        );
    }
    c.start_all();
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    let after = fingerprint(&c.client(leader), &[]).await;
    assert!(after.osdmap.epoch > before.osdmap.epoch);
    assert_eq!(after.without_epochs(), before.without_epochs());
}

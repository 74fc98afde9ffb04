//! Durability across leader changes and restarts: epochs never go back while the leader is
//! killed mid-workload, and a restart of every monitor brings every entity back identical,
//! with image ids never reused.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::api::{boot_osds, fingerprint};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::proto::monitor as api;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_survive_a_leader_crash_and_a_full_restart() {
    let mut c = TestCluster::new(3, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0, 1, 2], LONG);
    let m = Arc::new(c.cluster_client());
    boot_osds(&m, 1, 6, 3).await;
    let pool = m
        .create_pool(api::CreatePoolRequest {
            name: "rbd".to_string(),
            pg_size: 3,
            pg_count: 32,
            failure_domain: "host".to_string(),
            root: String::new(),
        })
        .await
        .unwrap()
        .pool_id;

    // A writer (flags and images) and a reader (maps) run while the leader is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut epochs = Vec::new();
            let mut images = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let flag = api::ClusterFlag::Noout as i32;
                let r = if i % 2 == 0 {
                    m.set_flag(api::SetFlagRequest { flag }).await
                } else {
                    m.unset_flag(api::UnsetFlagRequest { flag }).await
                };
                if let Ok(r) = r {
                    epochs.push(r.osdmap_epoch);
                }
                let img = m
                    .create_image(api::CreateImageRequest {
                        pool_name: "rbd".to_string(),
                        image_name: format!("img{i}"),
                        size: 1 << 20,
                        object_size: 0,
                    })
                    .await;
                if let Ok(r) = img {
                    images.push(r.image.unwrap().id);
                }
                i += 1;
            }
            (epochs, images)
        })
    };
    let reader = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = m
                    .get_cluster_map(api::GetClusterMapRequest::default())
                    .await
                {
                    let o = r.osdmap.unwrap();
                    let p = r.pgmap.unwrap();
                    let pool_epoch = p.pools.iter().find(|x| x.pool_id == pool).map(|x| x.epoch);
                    seen.push((r.leader_epoch, o.epoch, pool_epoch.unwrap_or(0)));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = c.wait_leader(&[0, 1, 2], LONG);
    c.signal(leader, Signal::SIGKILL);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.wait_leader(&others, LONG);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (epochs, images) = writer.await.unwrap();
    let seen = reader.await.unwrap();
    c.wait_exit(leader, LONG);

    assert!(epochs.len() > 10, "the writer made progress: {epochs:?}");
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]),
        "each committed flag change got a larger osdmap epoch: {epochs:?}"
    );
    assert!(
        images.windows(2).all(|w| w[0] < w[1]),
        "image ids only grow: {images:?}"
    );
    let terms: std::collections::BTreeSet<u64> = seen.iter().map(|s| s.0).collect();
    assert!(terms.len() >= 2, "the reader saw both terms: {terms:?}");
    assert!(
        seen.windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2),
        "leader, osdmap and pool epochs never went back: {seen:?}"
    );

    // Restart every monitor: everything comes back identical.
    c.start(leader);
    c.wait_leader(&[0, 1, 2], LONG);
    let names: Vec<String> = (0..images.len()).map(|i| format!("img{i}")).collect();
    let read: Vec<(&str, &str)> = names.iter().map(|n| ("rbd", n.as_str())).collect();
    let before = fingerprint(&m, &read).await;
    for i in 0..3 {
        c.signal(i, Signal::SIGTERM);
    }
    for i in 0..3 {
        let status = c.wait_exit(i, LONG);
        let stderr = std::fs::read_to_string(c.monitors[i].data_dir.with_extension("stderr"))
            .unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        assert!(status.success(), "m{} exited {status}: {tail:?}", i + 1);
    }
    c.start_all();
    c.wait_leader(&[0, 1, 2], LONG);
    let m = c.cluster_client();
    let after = fingerprint(&m, &read).await;
    assert_eq!(after, before, "every entity came back identical");
    let next = m
        .create_image(api::CreateImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "after-restart".to_string(),
            size: 4096,
            object_size: 0,
        })
        .await
        .unwrap()
        .image
        .unwrap()
        .id;
    assert!(
        next > *images.iter().max().unwrap(),
        "image ids are not reused after a restart"
    );
}

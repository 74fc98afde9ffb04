//! The OSD calls over gRPC against a real monitor: happy paths and every error case, each
//! asserting the status code, the ErrorInfo reason, and that nothing a client can read changed.

mod common;

use std::time::Duration;

use common::api::{boot_osds, boot_request, expect_err, fingerprint, keep_beating, uuid};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::proto::monitor as api;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_id_and_boot() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);

    // ApplyId: every accepted uuid form names the same OSD; the same uuid gets the same id.
    let hyphenated = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let r = m
        .apply_id(api::ApplyIdRequest {
            uuid: hyphenated.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(r.osd_id, 1, "the smallest unused positive id");
    let epoch = r.osdmap_epoch;
    for form in [
        "67E55044-10B1-426F-9247-BB680E5FE0C8",
        "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
        "67e5504410b1426f9247bb680e5fe0c8",
    ] {
        let again = m
            .apply_id(api::ApplyIdRequest {
                uuid: form.to_string(),
            })
            .await
            .unwrap();
        assert_eq!((again.osd_id, again.osdmap_epoch), (1, epoch), "{form}");
    }
    let before = fingerprint(&m, &[]).await;
    for bad in [
        "",
        "67e55044-10b1-426f-9247-bb680e5fe0c",
        "67e55044-10b1-426f-9247-bb680e5fe0c8a",
        "zze55044-10b1-426f-9247-bb680e5fe0c8",
        "00000000-0000-0000-0000-000000000000",
        "not a uuid",
    ] {
        expect_err(
            m.apply_id(api::ApplyIdRequest {
                uuid: bad.to_string(),
            })
            .await,
            Code::InvalidArgument,
            "INVALID_UUID",
        );
    }
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "refused ApplyId changed nothing"
    );

    // Boot errors, each leaving everything as it was.
    let good = || boot_request(1, hyphenated, "hostA", 77, 4);
    let cases: Vec<(api::BootRequest, Code, &str)> = vec![
        (
            api::BootRequest {
                osd_id: 9,
                ..good()
            },
            Code::NotFound,
            "OSD_NOT_FOUND",
        ),
        (
            api::BootRequest {
                uuid: uuid(5),
                ..good()
            },
            Code::FailedPrecondition,
            "OSD_UUID_MISMATCH",
        ),
        (
            api::BootRequest {
                uuid: "nope".to_string(),
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_UUID",
        ),
        (
            api::BootRequest {
                address: "osd-host-1".to_string(),
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_ADDRESS",
        ),
        (
            api::BootRequest {
                address: "10.0.0".to_string(),
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_ADDRESS",
        ),
        (
            {
                let mut b = good();
                b.shard_ports.get_mut(&2).unwrap().port = 65536;
                b
            },
            Code::InvalidArgument,
            "INVALID_PORT",
        ),
        (
            {
                let mut b = good();
                b.shard_ports.get_mut(&0).unwrap().raw_port = 65536;
                b
            },
            Code::InvalidArgument,
            "INVALID_PORT",
        ),
        (
            api::BootRequest {
                core_num: 0,
                shard_ports: Default::default(),
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_CORE_NUM",
        ),
        (
            api::BootRequest {
                core_num: 3,
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_SHARDS",
        ),
        (
            api::BootRequest {
                boot_instance: 0,
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_BOOT_INSTANCE",
        ),
        (
            api::BootRequest {
                host: String::new(),
                ..good()
            },
            Code::InvalidArgument,
            "INVALID_LOCATION",
        ),
    ];
    let before = fingerprint(&m, &[]).await;
    for (req, code, reason) in cases {
        expect_err(m.boot(req).await, code, reason);
    }
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "refused Boot changed nothing"
    );

    // The first boot: up and in; the cluster's core count is now 4.
    let r = m.boot(good()).await.unwrap();
    assert!(!r.held_down);
    let map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 1,
            epoch: 0,
        })
        .await
        .unwrap()
        .osdmap
        .unwrap();
    let osd = &map.osds[0];
    assert!(osd.up && osd.r#in && !osd.pending);
    assert_eq!(map.core_num, 4);
    let shards = fastblock_monitor::client::shard_ports(osd.shards.as_ref().unwrap());
    assert_eq!(
        (shards.len(), shards[3].port, shards[3].raw_port),
        (4, 20_003, 30_003)
    );
    assert_eq!(osd.address, "10.1.2.3");
    assert_eq!(
        m.osd_config(api::OsdConfigRequest { osd_id: 1 })
            .await
            .unwrap()
            .config,
        "osd 1 config"
    );
    expect_err(
        m.osd_config(api::OsdConfigRequest { osd_id: 42 }).await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );

    // A double boot of the same run is idempotent; the core count is fixed now.
    let before = fingerprint(&m, &[]).await;
    m.boot(good()).await.unwrap();
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "double boot changed nothing"
    );
    let second = m
        .apply_id(api::ApplyIdRequest { uuid: uuid(2) })
        .await
        .unwrap();
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.boot(boot_request(second.osd_id, &uuid(2), "hostB", 5, 8))
            .await,
        Code::FailedPrecondition,
        "CORE_NUM_MISMATCH",
    );
    // A crashed OSD restarting with a new instance while still marked up: refused until its
    // previous run is marked down, which OsdStop does at once (no 10 s wait).
    expect_err(
        m.boot(api::BootRequest {
            boot_instance: 78,
            ..good()
        })
        .await,
        Code::FailedPrecondition,
        "OSD_ALREADY_UP",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);
    m.osd_stop(api::OsdStopRequest { osd_id: 1 }).await.unwrap();
    m.boot(api::BootRequest {
        boot_instance: 78,
        ..good()
    })
    .await
    .unwrap();
    expect_err(
        m.osd_stop(api::OsdStopRequest { osd_id: 99 }).await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );

    // Heartbeats: unknown, never booted, stale run.
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.heartbeat(api::HeartbeatRequest {
            osd_id: 99,
            boot_instance: 1,
        })
        .await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );
    expect_err(
        m.heartbeat(api::HeartbeatRequest {
            osd_id: second.osd_id,
            boot_instance: 1,
        })
        .await,
        Code::FailedPrecondition,
        "OSD_NOT_BOOTED",
    );
    expect_err(
        m.heartbeat(api::HeartbeatRequest {
            osd_id: 1,
            boot_instance: 77,
        })
        .await,
        Code::FailedPrecondition,
        "STALE_BOOT_INSTANCE",
    );
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "refused heartbeats changed nothing"
    );
    let hb = m
        .heartbeat(api::HeartbeatRequest {
            osd_id: 1,
            boot_instance: 78,
        })
        .await
        .unwrap();
    assert_eq!(hb.osdmap_epoch, before.osdmap.epoch);
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "a heartbeat writes nothing"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_in_location_weight_purge_and_statistics() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    let osds = boot_osds(&m, 1, 3, 3).await;

    // In of a down OSD is refused; out of an up OSD works; in brings it back.
    m.osd_stop(api::OsdStopRequest { osd_id: 3 }).await.unwrap();
    m.osd_out(api::OsdOutRequest { osd_id: 3 }).await.unwrap();
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.osd_in(api::OsdInRequest { osd_id: 3 }).await,
        Code::FailedPrecondition,
        "OSD_DOWN",
    );
    expect_err(
        m.osd_in(api::OsdInRequest { osd_id: 77 }).await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );
    expect_err(
        m.osd_out(api::OsdOutRequest { osd_id: 77 }).await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);
    m.osd_out(api::OsdOutRequest { osd_id: 2 }).await.unwrap();
    m.osd_in(api::OsdInRequest { osd_id: 2 }).await.unwrap();

    // Location and weight.
    let r = m
        .set_osd_location(api::SetOsdLocationRequest {
            osd_id: 1,
            host: None,
            rack: Some("rack1".to_string()),
            root: None,
        })
        .await
        .unwrap();
    let before = fingerprint(&m, &[]).await;
    assert_eq!(before.osdmap.epoch, r.osdmap_epoch);
    expect_err(
        m.set_osd_location(api::SetOsdLocationRequest {
            osd_id: 1,
            host: Some("bad host".to_string()),
            rack: None,
            root: None,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_LOCATION",
    );
    expect_err(
        m.set_osd_location(api::SetOsdLocationRequest {
            osd_id: 1,
            host: None,
            rack: None,
            root: Some(String::new()),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_LOCATION",
    );
    for w in [-1.0, 100.5, f64::NAN] {
        expect_err(
            m.set_osd_weight(api::SetOsdWeightRequest {
                osd_id: 1,
                weight: w,
            })
            .await,
            Code::InvalidArgument,
            "INVALID_WEIGHT",
        );
    }
    assert_eq!(fingerprint(&m, &[]).await, before);
    m.set_osd_weight(api::SetOsdWeightRequest {
        osd_id: 1,
        weight: 2.5,
    })
    .await
    .unwrap();
    let map = fingerprint(&m, &[]).await.osdmap.osdmap.unwrap();
    assert_eq!(
        (map.osds[0].rack.as_str(), map.osds[0].weight),
        ("rack1", 2.5)
    );

    // Purge: only a down and out OSD that holds no PG.
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.purge_osd(api::PurgeOsdRequest { osd_id: 1 }).await,
        Code::FailedPrecondition,
        "OSD_NOT_DOWN_AND_OUT",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);
    m.purge_osd(api::PurgeOsdRequest { osd_id: 3 })
        .await
        .unwrap();
    let map = fingerprint(&m, &[]).await.osdmap.osdmap.unwrap();
    assert_eq!(map.osds.iter().map(|o| o.id).collect::<Vec<_>>(), [1, 2]);
    let again = m
        .apply_id(api::ApplyIdRequest { uuid: uuid(50) })
        .await
        .unwrap();
    assert_eq!(again.osd_id, 3, "a purged id is free again");

    // DataStatistics: a report larger than 1 MiB is accepted; a malformed name is refused
    // whole; unknown pools are counted as ignored.
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 2,
        pg_count: 64,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();
    let counters = api::PgIoCounters {
        read_bytes: 1 << 20,
        write_bytes: 1 << 19,
        read_ops: 10,
        write_ops: 5,
    };
    let mut big: std::collections::HashMap<String, api::PgIoCounters> =
        (0..64).map(|pg| (format!("1.{pg}"), counters)).collect();
    // Unknown PGs of an unknown pool pad the report far beyond 1 MiB.
    for pg in 0..40_000 {
        big.insert(format!("999.{pg}"), counters);
    }
    let req = api::DataStatisticsRequest {
        osd_id: osds[0].id,
        pgs: big,
    };
    assert!(prost::Message::encoded_len(&req) > 1 << 20);
    let r = m.data_statistics(req).await.unwrap();
    assert_eq!(r.ignored, 40_000);
    expect_err(
        m.data_statistics(api::DataStatisticsRequest {
            osd_id: osds[0].id,
            pgs: [("rbd-0".to_string(), counters)].into_iter().collect(),
        })
        .await,
        Code::InvalidArgument,
        "INVALID_PG_NAME",
    );
    expect_err(
        m.data_statistics(api::DataStatisticsRequest {
            osd_id: 404,
            pgs: Default::default(),
        })
        .await,
        Code::NotFound,
        "OSD_NOT_FOUND",
    );
    // One PG under two spellings would count its counters twice (found by fuzzing): refused
    // whole, the pool's totals untouched.
    let read_total = r#"fastblock_pool_read_bytes_total{pool="rbd"}"#;
    let before = c.metric(0, read_total);
    assert_eq!(before, Some(64.0 * f64::from(1 << 20)));
    expect_err(
        m.data_statistics(api::DataStatisticsRequest {
            osd_id: osds[0].id,
            pgs: [
                ("1.31".to_string(), counters),
                ("1.0x1f".to_string(), api::PgIoCounters::default()),
            ]
            .into_iter()
            .collect(),
        })
        .await,
        Code::InvalidArgument,
        "DUPLICATE_PG_NAME",
    );
    assert_eq!(c.metric(0, read_total), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_osds_go_down_then_out_and_a_heartbeat_brings_one_back() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"2s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = std::sync::Arc::new(c.client(0));
    let osds = boot_osds(&m, 1, 4, 4).await;
    m.create_pool(api::CreatePoolRequest {
        name: "rbd".to_string(),
        pg_size: 3,
        pg_count: 32,
        failure_domain: "host".to_string(),
        root: String::new(),
    })
    .await
    .unwrap();

    // OSDs 1-3 keep heartbeating; OSD 4 falls silent.
    let beat = keep_beating(m.clone(), osds[..3].to_vec());
    let osd = |map: &api::GetOsdMapResponse, id: u32| -> api::OsdInfo {
        map.osdmap
            .as_ref()
            .unwrap()
            .osds
            .iter()
            .find(|o| o.id == id)
            .unwrap()
            .clone()
    };
    let silent = osds[3].id;
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let map = m
            .get_osd_map(api::GetOsdMapRequest {
                osd_id: 0,
                epoch: 0,
            })
            .await
            .unwrap();
        let s = osd(&map, silent);
        if !s.up && !s.r#in {
            assert!(
                (1..=3).all(|id| osd(&map, id).up),
                "heartbeating OSDs stay up"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never marked down and out: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Out: every PG that held it gets a target without it.
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let pgs = m
            .get_pg_map(api::GetPgMapRequest::default())
            .await
            .unwrap()
            .pools
            .remove(0)
            .into_fields()
            .pgs;
        let holding: Vec<_> = pgs.iter().filter(|p| p.members.contains(&silent)).collect();
        if !holding.is_empty()
            && holding
                .iter()
                .all(|p| p.new_members.len() == 3 && !p.new_members.contains(&silent))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "PGs never remapped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    beat.abort();

    // A heartbeat of the run that was marked down brings it back up (and, auto-out, in).
    m.heartbeat(api::HeartbeatRequest {
        osd_id: silent,
        boot_instance: osds[3].instance,
    })
    .await
    .unwrap();
    let map = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    let s = osd(&map, silent);
    assert!(s.up && s.r#in, "{s:?}");
}

/// A whole rack going silent at once is more OSDs than one etcd transaction can change: they
/// are all marked down (in several commands), not refused as one oversized change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_osds_silent_at_once_are_all_marked_down() {
    // The min-up-ratio guard is off: this test is about marking many OSDs down at once (the
    // guard has its own test below).
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"1h\"\nosd_min_up_ratio = 0"
                .to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // nodown holds them up while they boot; clearing it lets one check find all 200 silent.
    m.set_flag(api::SetFlagRequest {
        flag: api::ClusterFlag::Nodown as i32,
    })
    .await
    .unwrap();
    boot_osds(&m, 1, 200, 10).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap();
    assert_eq!(
        (status.osds_total, status.osds_up),
        (200, 200),
        "nodown held them up"
    );
    let epoch = status.osdmap_epoch;
    m.unset_flag(api::UnsetFlagRequest {
        flag: api::ClusterFlag::Nodown as i32,
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    let status = loop {
        let s = m
            .get_cluster_status(api::GetClusterStatusRequest::default())
            .await
            .unwrap();
        if s.osds_up == 0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} OSDs still up; log:\n{}",
            s.osds_up,
            c.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.osds_in, 200, "down, not out");
    assert!(
        c.log(0).contains("count=200"),
        "one check found all 200 silent"
    );
    // 200 OSDs in commands of at most 48: at least 5 epochs (plus the flag's own).
    assert!(
        status.osdmap_epoch >= epoch + 1 + 5,
        "{} -> {}",
        epoch,
        status.osdmap_epoch
    );
    assert!(!c.log(0).contains("cannot mark OSDs down"), "{}", c.log(0));
}

async fn osd_infos(m: &fastblock_monitor::client::MonitorClient) -> Vec<api::OsdInfo> {
    m.get_osd_map(api::GetOsdMapRequest {
        osd_id: 0,
        epoch: 0,
    })
    .await
    .unwrap()
    .osdmap
    .as_ref()
    .unwrap()
    .osds
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_mark_down_stops_at_the_min_up_ratio() {
    // 10 OSDs, 8 fall silent: with the default ratio 0.3, 3 stay up (the 2 beating and the
    // silent one heard from last), and the health report says why.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = std::sync::Arc::new(c.client(0));
    let osds = boot_osds(&m, 1, 10, 10).await;
    let beat = keep_beating(m.clone(), osds[..2].to_vec());
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let up = osd_infos(&m).await.iter().filter(|o| o.up).count();
        if up <= 3 {
            assert_eq!(up, 3, "never below the ratio");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{up} still up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // It holds: a few more checks change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let infos = osd_infos(&m).await;
    assert_eq!(infos.iter().filter(|o| o.up).count(), 3);
    let kept: Vec<u32> = infos
        .iter()
        .filter(|o| o.up && osds[2..].iter().any(|s| s.id == o.id))
        .map(|o| o.id)
        .collect();
    assert_eq!(kept.len(), 1, "one silent OSD kept up");
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap();
    let check = status
        .checks
        .iter()
        .find(|c| c.code == "OSD_DOWN_REFUSED")
        .unwrap_or_else(|| panic!("no OSD_DOWN_REFUSED in {:?}", status.checks));
    assert_eq!(check.severity, api::HealthStatus::Err as i32);
    assert_eq!(check.detail.len(), 1);
    assert!(
        check.detail[0].starts_with(&format!("osd.{} ", kept[0])),
        "{:?}",
        check.detail
    );
    assert!(c.log(0).contains("not marking silent OSDs down"));
    beat.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_does_not_mark_its_osds_down_when_it_resumes() {
    // The leader is frozen (SIGSTOP) for longer than osd_down_after while its OSDs keep
    // sending heartbeats; the lease (20 s) outlives the freeze, so it still leads when it
    // resumes. The silence was the monitor's, not the OSDs': none may be marked down.
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            lease_ttl_secs: 20,
            extra_config: "osd_down_after = \"2s\"\nosd_out_after = \"1h\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = std::sync::Arc::new(c.client(0));
    let osds = boot_osds(&m, 1, 20, 5).await;
    let beat = keep_beating(m.clone(), osds.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = osd_infos(&m).await;
    assert!(before.iter().all(|o| o.up), "{before:?}");
    let epoch = m.get_leader().await.unwrap().leader_epoch;

    c.signal(0, nix::sys::signal::Signal::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.signal(0, nix::sys::signal::Signal::SIGCONT);
    // Several checks after the resume, with the heartbeats flowing again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        m.get_leader().await.unwrap().leader_epoch,
        epoch,
        "the same term: the freeze did not cost the lease"
    );
    let after = osd_infos(&m).await;
    for (b, a) in before.iter().zip(&after) {
        assert!(a.up, "osd.{} was marked down: {a:?}\n{}", a.id, c.log(0));
        assert_eq!(
            a.last_change, b.last_change,
            "osd.{} changed (down and back up)",
            a.id
        );
    }
    assert!(c.log(0).contains("the monitor did not run for a while"));
    beat.abort();
}

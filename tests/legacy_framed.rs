//! The framed protocol of the C++ OSDs and the Go CLI, against real monitor processes, driven
//! by the test-side client written from LEGACY-PROTOCOL.md (`common::legacy`), on the same port
//! as gRPC: the whole flow of a cluster (ApplyID, Boot, CreatePool, polls, LeaderBeElected, an
//! OSD out and its remap finished), liveness from polls bound to the OSD's connection, and
//! every bad input answered as documented with the state unchanged.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::api::fingerprint;
use common::legacy::framed::LegacyClient;
use common::legacy::messages::{
    GetOsdMapRequest, LeaderBeElectedRequest, PgMemberChangeFinishRequest, Request, Response,
};
use common::legacy::{apply_and_boot, call, ok, osd_uuid, poll};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::proto::monitor as api;

const LONG: Duration = Duration::from_secs(60);

/// PG state bits (§9.1).
const CREATING: i32 = 1;
const ACTIVE: i32 = 2;
const REMAPPED: i32 = 16;

/// One legacy OSD: its id and the connection it booted on.
struct Osd {
    id: i32,
    conn: LegacyClient,
}

/// Applies for `n` ids over `admin` and boots each OSD on its own connection from its own
/// address (host `h<i>`), as the deploy scripts and the C++ OSD do.
async fn boot_legacy_osds(c: &TestCluster, admin: &mut LegacyClient, n: u32) -> Vec<Osd> {
    let mut osds = Vec::new();
    for i in 1..=n {
        let (id, conn) = apply_and_boot(admin, &c.monitors[0].grpc, &c.ip, i, 2).await;
        osds.push(Osd { id, conn });
    }
    osds
}

/// Every OSD polls once; the pgmap of pool `pool` as the last one saw it.
async fn poll_all(osds: &mut [Osd], pool: i32) -> Vec<common::legacy::messages::PgInfo> {
    let mut pgs = Vec::new();
    for o in osds.iter_mut() {
        let m = poll(&mut o.conn, o.id, BTreeMap::new()).await;
        let pm = m.pgmap.expect("pgmap");
        pgs = pm.pgs.get(&pool).cloned().unwrap_or_default();
    }
    pgs
}

/// Each PG's first member reports itself raft leader, from its own connection.
async fn elect_leaders(osds: &mut [Osd], pool: i32, pgs: &[common::legacy::messages::PgInfo]) {
    for pg in pgs {
        let leader = pg.osdid[0];
        let o = osds.iter_mut().find(|o| o.id == leader).unwrap();
        let r = LeaderBeElectedRequest {
            leader_id: leader,
            pool_id: pool as u64,
            pg_id: pg.pgid as u64,
            osd_list: pg.osdid.clone(),
            new_osd_list: Vec::new(),
        };
        assert!(
            ok(&mut o.conn, Request::LeaderBeElected(r)).await,
            "pg {}",
            pg.pgid
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_cluster_boots_creates_a_pool_activates_and_remaps_on_the_grpc_port() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();

    let mut osds = boot_legacy_osds(&c, &mut admin, 4).await;
    // ApplyID is idempotent: the same uuid gets the same id (a retry after a lost reply).
    match call(&mut admin, Request::ApplyId { uuid: osd_uuid(2) }).await {
        Response::ApplyId(r) => assert_eq!((r.id, r.errorcode), (2, 0)),
        other => panic!("{other:?}"),
    }

    // CreatePool as the Go CLI sends it: root "defaultroot" is the default root.
    let created = call(
        &mut admin,
        Request::CreatePool {
            name: "rbd".into(),
            pgsize: 3,
            pgcount: 32,
            failuredomain: "host".into(),
            root: "defaultroot".into(),
        },
    )
    .await;
    let pool = match created {
        Response::CreatePool(r) => {
            assert_eq!(r.errorcode, 0);
            r.poolid
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(pool, 1);

    let first = osds[0].id;
    // The full map, as the C++ client polls: every OSD up and in, every PG creating.
    let m = poll(&mut osds[0].conn, first, BTreeMap::new()).await;
    let om = m.osdmap.expect("osdmap");
    assert_eq!(om.errorcode, 0);
    assert_eq!(om.osds.len(), 4);
    assert!(
        om.osds
            .iter()
            .all(|o| o.isup && o.isin && o.sharded_ports.len() == 2)
    );
    let pm = m.pgmap.expect("pgmap");
    assert_eq!(pm.errorcode[&pool], 0);
    assert_eq!(pm.pools[&pool], "rbd");
    let pgs = pm.pgs[&pool].clone();
    assert_eq!(pgs.len(), 32);
    for pg in &pgs {
        assert_eq!(pg.state & CREATING, CREATING, "{pg:?}");
        assert_eq!(pg.osdid.len(), 3);
        assert_eq!(pg.newcoreindex, u32::MAX);
    }

    // gRPC on the same port sees the same maps.
    let grpc = c.client(0);
    let status = grpc
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap();
    assert_eq!((status.osds_up, status.pools, status.pgs), (4, 1, 32));

    elect_leaders(&mut osds, pool, &pgs).await;
    let pgs = poll_all(&mut osds, pool).await;
    assert!(pgs.iter().all(|p| p.state == ACTIVE), "{pgs:?}");

    // Incremental: the same versions get "same version" and "current" answers.
    let version = poll(&mut osds[0].conn, first, BTreeMap::new())
        .await
        .pgmap
        .unwrap()
        .poolid_pgmapversion[&pool];
    let m = poll(&mut osds[0].conn, first, BTreeMap::from([(pool, version)])).await;
    let pm = m.pgmap.unwrap();
    assert_eq!(pm.errorcode[&pool], 3, "PgMapSameVersion");
    assert!(pm.pgs.is_empty());
    let osdmap_version = m.osdmap.unwrap().osdmapversion;
    match call(
        &mut admin,
        Request::GetOsdMap(GetOsdMapRequest {
            osdid: -1,
            currentversion: osdmap_version,
        }),
    )
    .await
    {
        Response::GetOsdMap(r) => {
            assert_eq!(
                (r.errorcode, r.osdmapversion, r.osds.len()),
                (0, osdmap_version, 0)
            );
        }
        other => panic!("{other:?}"),
    }

    // An OSD out: its PGs are remapped; the new members finish the change; all active again.
    let out = osds[0].id;
    assert!(ok(&mut admin, Request::OsdOut { osdid: out }).await);
    let pgs = loop {
        let pgs = poll_all(&mut osds, pool).await;
        if pgs.iter().any(|p| p.state & REMAPPED != 0) {
            break pgs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for pg in pgs.iter().filter(|p| p.state & REMAPPED != 0) {
        assert!(pg.osdid.contains(&out));
        assert!(!pg.newosdid.contains(&out), "{pg:?}");
        let reporter = pg.newosdid[0];
        let o = osds.iter_mut().find(|o| o.id == reporter).unwrap();
        let r = PgMemberChangeFinishRequest {
            result: 0,
            pool_id: pool as u64,
            pg_id: pg.pgid as u64,
            osd_list: pg.newosdid.clone(),
        };
        assert!(ok(&mut o.conn, Request::PgMemberChangeFinish(r)).await);
    }
    let pgs = poll_all(&mut osds, pool).await;
    assert!(pgs.iter().all(|p| !p.osdid.contains(&out)), "{pgs:?}");
    assert!(pgs.iter().all(|p| p.state & REMAPPED == 0), "{pgs:?}");

    // Flags and status.
    assert!(ok(&mut admin, Request::NoOut { set: true }).await);
    match call(&mut admin, Request::GetClusterStatus).await {
        Response::GetClusterStatus(s) => {
            assert!(s.no_out && !s.no_reblance);
            assert_eq!((s.osd_num, s.up_osd_num, s.in_osd_num), (4, 4, 3));
            assert_eq!((s.pool_num, s.pg_num), (1, 32));
            assert_eq!(s.mon_names, vec!["m1".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let flags = grpc
        .get_cluster_status(api::GetClusterStatusRequest::default())
        .await
        .unwrap()
        .flags;
    assert_eq!(flags, vec![api::ClusterFlag::Noout as i32]);
    assert!(ok(&mut admin, Request::NoOut { set: false }).await);
    assert!(ok(&mut admin, Request::OsdIn { osdid: out }).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    let requests: Vec<Request> = (1..=20)
        .flat_map(|i| {
            [
                Request::ApplyId { uuid: osd_uuid(i) },
                Request::GetClusterStatus,
                Request::cpp_poll(-1, BTreeMap::new()),
            ]
        })
        .collect();
    for r in &requests {
        admin.send(r).await.unwrap();
    }
    let mut next_id = 1;
    for r in &requests {
        let reply = admin.recv().await.unwrap();
        assert_eq!(reply.kind(), r.kind());
        if let Response::ApplyId(a) = reply {
            assert_eq!(a.id, next_id, "ids in request order");
            next_id += 1;
        }
    }
    let _ = fingerprint(&c.client(0), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_legacy_off_the_port_serves_grpc_only() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "legacy = false".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    // A legacy request goes to the HTTP/2 server, which closes the connection unanswered.
    let mut legacy = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    legacy.set_reply_timeout(Duration::from_secs(10));
    legacy
        .send(&Request::ApplyId { uuid: osd_uuid(1) })
        .await
        .unwrap();
    assert!(legacy.recv().await.is_err(), "no legacy answer");
    // gRPC works, and the ApplyID was not applied.
    let map = c
        .client(0)
        .get_osd_map(api::GetOsdMapRequest::default())
        .await
        .unwrap();
    assert!(map.osdmap.unwrap().osds.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_and_grpc_osds_share_one_cluster_one_set_of_maps_and_one_epoch_sequence() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let grpc = std::sync::Arc::new(c.client(0));
    // Three OSDs over gRPC (4 cores each), kept alive by gRPC heartbeats ...
    let grpc_osds = common::api::boot_osds(&grpc, 1, 3, 3).await;
    let beating = common::api::keep_beating(grpc.clone(), grpc_osds.clone());
    // ... and three over the legacy protocol on other hosts, with as many cores.
    let mut admin = LegacyClient::connect(&c.monitors[0].grpc).await.unwrap();
    let mut legacy = Vec::new();
    for i in 11..=13u32 {
        let (id, conn) = apply_and_boot(&mut admin, &c.monitors[0].grpc, &c.ip, i, 4).await;
        legacy.push(Osd { id, conn });
    }
    assert_eq!(
        legacy.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![4, 5, 6],
        "one id sequence"
    );
    // A pool created over legacy, placed over all six hosts.
    match call(
        &mut admin,
        Request::CreatePool {
            name: "mixed".into(),
            pgsize: 3,
            pgcount: 64,
            failuredomain: "host".into(),
            root: "defaultroot".into(),
        },
    )
    .await
    {
        Response::CreatePool(r) => assert_eq!((r.errorcode, r.poolid), (0, 1)),
        other => panic!("{other:?}"),
    }

    // The same maps and epochs through both protocols.
    let m = poll(&mut legacy[0].conn, 4, BTreeMap::new()).await;
    let legacy_osdmap = m.osdmap.unwrap();
    let legacy_pgmap = m.pgmap.unwrap();
    let cm = grpc
        .get_cluster_map(api::GetClusterMapRequest::default())
        .await
        .unwrap();
    let osdmap = cm.osdmap.unwrap();
    assert_eq!(legacy_osdmap.osdmapversion as u64, osdmap.epoch);
    let mut ids: Vec<i32> = legacy_osdmap.osds.iter().map(|o| o.osdid).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);
    assert!(legacy_osdmap.osds.iter().all(|o| o.isup && o.isin));
    let pool = cm
        .pgmap
        .unwrap()
        .pools
        .into_iter()
        .next()
        .unwrap()
        .into_fields();
    assert_eq!(legacy_pgmap.poolid_pgmapversion[&1] as u64, pool.epoch);
    let legacy_pgs: BTreeMap<i32, Vec<i32>> = legacy_pgmap.pgs[&1]
        .iter()
        .map(|p| (p.pgid, p.osdid.clone()))
        .collect();
    let grpc_pgs: BTreeMap<i32, Vec<i32>> = pool
        .pgs
        .iter()
        .map(|p| (p.id as i32, p.members.iter().map(|&m| m as i32).collect()))
        .collect();
    assert_eq!(legacy_pgs, grpc_pgs);
    assert!(
        grpc_pgs
            .values()
            .any(|m| m.iter().any(|&i| i <= 3) && m.iter().any(|&i| i >= 4)),
        "PGs span OSDs of both protocols"
    );
    beating.abort();
}

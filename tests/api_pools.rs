//! Pools, images, maps and the PG protocol over gRPC against a real monitor: happy paths and
//! every error case, asserting code, ErrorInfo reason, and that nothing readable changed.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::api::{boot_osds, expect_err, fingerprint, uuid};
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::MonitorClient;
use fastblock_monitor::proto::monitor as api;
use tonic::Code;

const LONG: Duration = Duration::from_secs(60);

fn pool(name: &str, size: u32, count: u32, fd: &str) -> api::CreatePoolRequest {
    api::CreatePoolRequest {
        name: name.to_string(),
        pg_size: size,
        pg_count: count,
        failure_domain: fd.to_string(),
        root: String::new(),
    }
}

fn image(pool: &str, name: &str, size: u64, object_size: u64) -> api::CreateImageRequest {
    api::CreateImageRequest {
        pool_name: pool.to_string(),
        image_name: name.to_string(),
        size,
        object_size,
    }
}

async fn pgmap(
    m: &MonitorClient,
    known: &[(u32, u64)],
) -> HashMap<u32, fastblock_monitor::proto::wire::PoolPgMapFields> {
    m.get_pg_map(api::GetPgMapRequest {
        pool_epochs: known.iter().copied().collect(),
    })
    .await
    .unwrap()
    .pools
    .into_iter()
    .map(|p| (p.pool_id, p.into_fields()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_maps() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    // 17 OSDs on 6 hosts: 16 replicas fit with failure domain osd, 3 with host, not 7.
    let osds = boot_osds(&m, 1, 17, 6).await;
    let host_of: HashMap<u32, String> = osds.iter().map(|o| (o.id, o.host.clone())).collect();

    let before = fingerprint(&m, &[]).await;
    let name_256 = "p".repeat(256);
    let cases = [
        (
            pool("", 3, 8, "host"),
            Code::InvalidArgument,
            "INVALID_POOL_NAME",
        ),
        (
            pool(&name_256, 3, 8, "host"),
            Code::InvalidArgument,
            "INVALID_POOL_NAME",
        ),
        (
            pool("a", 0, 8, "host"),
            Code::InvalidArgument,
            "INVALID_PG_SIZE",
        ),
        (
            pool("a", 17, 8, "osd"),
            Code::InvalidArgument,
            "INVALID_PG_SIZE",
        ),
        (
            pool("a", 3, 0, "host"),
            Code::InvalidArgument,
            "INVALID_PG_COUNT",
        ),
        (
            pool("a", 3, 131_073, "host"),
            Code::InvalidArgument,
            "INVALID_PG_COUNT",
        ),
        (
            pool("a", 3, 8, "datacenter"),
            Code::InvalidArgument,
            "UNKNOWN_FAILURE_DOMAIN",
        ),
        (
            pool("a", 7, 8, "host"),
            Code::FailedPrecondition,
            "FAILURE_DOMAIN_NEED_NOT_SATISFIED",
        ),
        // One root cannot hold two replicas in distinct roots.
        (
            pool("a", 2, 8, "root"),
            Code::FailedPrecondition,
            "FAILURE_DOMAIN_NEED_NOT_SATISFIED",
        ),
        // Hosts without a rack label are racks of their own: 6 of them, not 7.
        (
            pool("a", 7, 8, "rack"),
            Code::FailedPrecondition,
            "FAILURE_DOMAIN_NEED_NOT_SATISFIED",
        ),
        (
            api::CreatePoolRequest {
                root: "ssd".to_string(),
                ..pool("a", 1, 8, "host")
            },
            Code::FailedPrecondition,
            "NO_ENOUGH_OSD",
        ),
    ];
    for (req, code, reason) in cases {
        expect_err(m.create_pool(req.clone()).await, code, reason);
    }
    assert_eq!(
        fingerprint(&m, &[]).await,
        before,
        "refused CreatePool changed nothing"
    );

    // Boundaries that are accepted: 255-byte name, size 1 and 16, count 1 and the cap.
    let name_255 = "q".repeat(255);
    let p1 = m.create_pool(pool(&name_255, 3, 64, "host")).await.unwrap();
    assert_eq!((p1.pool_id, p1.pool_epoch), (1, 1));
    let p2 = m.create_pool(pool("single", 1, 1, "")).await.unwrap();
    let p3 = m.create_pool(pool("wide", 16, 4, "osd")).await.unwrap();
    let p4 = m
        .create_pool(pool("big", 2, 131_072, "host"))
        .await
        .unwrap();
    expect_err(
        m.create_pool(pool("single", 1, 1, "host")).await,
        Code::AlreadyExists,
        "POOL_NAME_EXISTS",
    );

    // Placement invariants over what the map says.
    let maps = pgmap(&m, &[]).await;
    assert_eq!(maps.len(), 4, "new pools are always visible");
    for p in maps.values() {
        assert_eq!(p.status, api::MapStatus::Full as i32);
        let info = p.pool.as_ref().unwrap();
        assert_eq!(p.pgs.len() as u32, info.pg_count);
        for pg in &p.pgs {
            assert_eq!(pg.members.len() as u32, info.pg_size, "size never reduced");
            let distinct: HashSet<u32> = pg.members.iter().copied().collect();
            assert_eq!(distinct.len(), pg.members.len(), "no OSD twice");
            assert!(
                pg.members.iter().all(|o| host_of.contains_key(o)),
                "only real OSDs"
            );
            if info.failure_domain == api::FailureDomain::Host as i32 {
                let hosts: HashSet<&String> = pg.members.iter().map(|o| &host_of[o]).collect();
                assert_eq!(hosts.len(), pg.members.len(), "one replica per host");
            }
            assert_eq!(pg.state, api::PgStateBit::Creating as u32);
            assert!(pg.core < 4);
        }
    }
    assert_eq!(maps[&p4.pool_id].pgs.len(), 131_072);

    // Epoch semantics: unchanged, client ahead, and pools the client did not list.
    let e1 = p1.pool_epoch;
    let maps = pgmap(&m, &[(p1.pool_id, e1), (p2.pool_id, e1 + 5)]).await;
    assert_eq!(maps[&p1.pool_id].status, api::MapStatus::Unchanged as i32);
    assert!(maps[&p1.pool_id].pgs.is_empty() && maps[&p1.pool_id].pool.is_none());
    assert_eq!(maps[&p2.pool_id].status, api::MapStatus::ClientAhead as i32);
    assert_eq!(
        maps[&p3.pool_id].status,
        api::MapStatus::Full as i32,
        "unlisted: full"
    );
    let om = m
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await
        .unwrap();
    let now = om.epoch;
    for (asked, status) in [
        (now, api::MapStatus::Unchanged),
        (now + 1, api::MapStatus::ClientAhead),
        (now - 1, api::MapStatus::Full),
    ] {
        let r = m
            .get_osd_map(api::GetOsdMapRequest {
                osd_id: 1,
                epoch: asked,
            })
            .await
            .unwrap();
        assert_eq!(r.status, status as i32, "asked {asked}");
        assert_eq!(r.osdmap.is_some(), status == api::MapStatus::Full);
        assert!(r.leader_epoch > 0);
    }
    let both = m
        .get_cluster_map(api::GetClusterMapRequest {
            osdmap: Some(api::GetOsdMapRequest {
                osd_id: 0,
                epoch: now,
            }),
            pgmap: Some(api::GetPgMapRequest {
                pool_epochs: [(p1.pool_id, e1)].into_iter().collect(),
            }),
        })
        .await
        .unwrap();
    assert_eq!(
        both.osdmap.unwrap().status,
        api::MapStatus::Unchanged as i32
    );
    assert_eq!(both.pgmap.unwrap().pools.len(), 4);

    // GetPgOsdInfo: all pools, one pool, an unknown pool.
    let info = m
        .get_pg_osd_info(api::GetPgOsdInfoRequest {
            pool_ids: vec![p2.pool_id],
        })
        .await
        .unwrap();
    assert_eq!(info.pools.len(), 1);
    assert_eq!(info.pools[0].pgs.len(), 1);
    expect_err(
        m.get_pg_osd_info(api::GetPgOsdInfoRequest { pool_ids: vec![77] })
            .await,
        Code::NotFound,
        "POOL_NOT_FOUND",
    );

    // DeletePool: an explicit DELETED status, never absence; ids are never reused.
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.delete_pool(api::DeletePoolRequest {
            name: "nope".to_string(),
        })
        .await,
        Code::NotFound,
        "UNKNOWN_POOL_NAME",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);
    let d = m
        .delete_pool(api::DeletePoolRequest {
            name: "big".to_string(),
        })
        .await
        .unwrap();
    assert_eq!(d.pool_id, p4.pool_id);
    let maps = pgmap(&m, &[(p4.pool_id, 1), (p1.pool_id, e1)]).await;
    assert_eq!(maps[&p4.pool_id].status, api::MapStatus::Deleted as i32);
    assert_eq!(maps[&p4.pool_id].epoch, d.deleted_epoch);
    assert_eq!(
        maps.len(),
        4,
        "3 live pools + the deleted one the client asked about"
    );
    let again = m.create_pool(pool("big", 1, 8, "host")).await.unwrap();
    assert_eq!(again.pool_id, 5, "pool ids are never reused");
    let pools: Vec<String> = m
        .list_pools(api::ListPoolsRequest {})
        .await
        .unwrap()
        .pools
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        pools,
        [name_255, "single".into(), "wide".into(), "big".into()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images() {
    let mut c = TestCluster::new(1, ClusterOptions::default());
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 3, 3).await;
    m.create_pool(pool("rbd", 3, 8, "host")).await.unwrap();
    m.create_pool(pool("other", 1, 8, "host")).await.unwrap();

    let name_512 = "i".repeat(512);
    let first = m
        .create_image(image("rbd", &name_512, 1 << 30, 0))
        .await
        .unwrap()
        .image
        .unwrap();
    assert_eq!(
        (first.id, first.object_size, first.pool_id),
        (1, 4 << 20, 1)
    );
    let read = [("rbd", name_512.as_str()), ("rbd", "vm")];
    let before = fingerprint(&m, &read).await;
    let name_513 = "i".repeat(513);
    let cases = [
        (
            image("nope", "vm", 4096, 0),
            Code::NotFound,
            "UNKNOWN_POOL_NAME",
        ),
        (
            image("rbd", "", 4096, 0),
            Code::InvalidArgument,
            "INVALID_IMAGE_NAME",
        ),
        (
            image("rbd", &name_513, 4096, 0),
            Code::InvalidArgument,
            "IMAGE_NAME_TOO_LONG",
        ),
        (
            image("rbd", &name_512, 4096, 0),
            Code::AlreadyExists,
            "IMAGE_EXISTS",
        ),
        (
            image("rbd", "vm", 0, 0),
            Code::InvalidArgument,
            "INVALID_IMAGE_SIZE",
        ),
        (
            image("rbd", "vm", 1000, 0),
            Code::InvalidArgument,
            "INVALID_IMAGE_SIZE",
        ),
        (
            image("rbd", "vm", 4096, 2048),
            Code::InvalidArgument,
            "INVALID_OBJECT_SIZE",
        ),
        (
            image("rbd", "vm", 4096, 5000),
            Code::InvalidArgument,
            "INVALID_OBJECT_SIZE",
        ),
    ];
    for (req, code, reason) in cases {
        expect_err(m.create_image(req.clone()).await, code, reason);
    }
    assert_eq!(
        fingerprint(&m, &read).await,
        before,
        "refused CreateImage changed nothing"
    );

    let vm = m
        .create_image(image("rbd", "vm", 8192, 4096))
        .await
        .unwrap()
        .image
        .unwrap();
    assert_eq!(vm.id, 2);
    // The same name in another pool is a different image.
    assert_eq!(
        m.create_image(image("other", "vm", 512, 0))
            .await
            .unwrap()
            .image
            .unwrap()
            .id,
        3
    );
    let resize = |size, allow_shrink| api::ResizeImageRequest {
        pool_name: "rbd".to_string(),
        image_name: "vm".to_string(),
        size,
        allow_shrink,
    };
    let before = fingerprint(&m, &read).await;
    expect_err(
        m.resize_image(resize(4096, false)).await,
        Code::FailedPrecondition,
        "IMAGE_SHRINK_NOT_ALLOWED",
    );
    expect_err(
        m.resize_image(resize(4097, true)).await,
        Code::InvalidArgument,
        "INVALID_IMAGE_SIZE",
    );
    expect_err(
        m.resize_image(api::ResizeImageRequest {
            image_name: "ghost".to_string(),
            ..resize(8192, false)
        })
        .await,
        Code::NotFound,
        "IMAGE_NOT_FOUND",
    );
    assert_eq!(fingerprint(&m, &read).await, before);
    let grown = m
        .resize_image(resize(1 << 20, false))
        .await
        .unwrap()
        .image
        .unwrap();
    assert_eq!(grown.size, 1 << 20);
    let shrunk = m
        .resize_image(resize(4096, true))
        .await
        .unwrap()
        .image
        .unwrap();
    assert_eq!(shrunk.size, 4096);

    expect_err(
        m.get_image_info(api::GetImageInfoRequest {
            pool_name: "rbd".to_string(),
            image_name: "ghost".to_string(),
        })
        .await,
        Code::NotFound,
        "IMAGE_NOT_FOUND",
    );
    expect_err(
        m.remove_image(api::RemoveImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "ghost".to_string(),
        })
        .await,
        Code::NotFound,
        "IMAGE_NOT_FOUND",
    );
    let removed = m
        .remove_image(api::RemoveImageRequest {
            pool_name: "rbd".to_string(),
            image_name: "vm".to_string(),
        })
        .await
        .unwrap();
    assert_eq!(removed.id, 2);
    let again = m
        .create_image(image("rbd", "vm", 4096, 0))
        .await
        .unwrap()
        .image
        .unwrap();
    assert_eq!(again.id, 4, "image ids are never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_protocol() {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"600s\"\nosd_out_after = \"600s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 4, 4).await;
    let p = m
        .create_pool(pool("rbd", 3, 16, "host"))
        .await
        .unwrap()
        .pool_id;
    let pgs = pgmap(&m, &[]).await.remove(&p).unwrap().pgs;
    let pg0 = pgs[0].clone();

    let elected =
        |leader: u32, pool: u32, pg: u32, members: Vec<u32>| api::LeaderBeElectedRequest {
            leader_id: leader,
            pool_id: pool,
            pg_id: pg,
            members,
            new_members: Vec::new(),
        };
    let before = fingerprint(&m, &[]).await;
    let bad = [
        (
            elected(pg0.members[0], 99, 0, pg0.members.clone()),
            Code::NotFound,
            "POOL_NOT_FOUND",
        ),
        (
            elected(pg0.members[0], p, 16, pg0.members.clone()),
            Code::NotFound,
            "PG_NOT_FOUND",
        ),
        (
            elected(pg0.members[0], p, 0, vec![]),
            Code::InvalidArgument,
            "INVALID_MEMBERS",
        ),
        (
            elected(pg0.members[0], p, 0, vec![pg0.members[0], pg0.members[0]]),
            Code::InvalidArgument,
            "INVALID_MEMBERS",
        ),
        (
            elected(1, p, 0, vec![1, 2, 77]),
            Code::InvalidArgument,
            "INVALID_MEMBERS",
        ),
    ];
    for (req, code, reason) in bad {
        expect_err(m.leader_be_elected(req.clone()).await, code, reason);
    }
    let outsider = (1..=4).find(|o| !pg0.members.contains(o)).unwrap();
    expect_err(
        m.leader_be_elected(elected(outsider, p, 0, pg0.members.clone()))
            .await,
        Code::InvalidArgument,
        "LEADER_NOT_MEMBER",
    );
    expect_err(
        m.pg_member_change_finish(api::PgMemberChangeFinishRequest {
            result: 0,
            pool_id: p,
            pg_id: 0,
            members: pg0.members.clone(),
            leader_id: pg0.members[0],
        })
        .await,
        Code::FailedPrecondition,
        "PG_NOT_REMAPPED",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);

    // creating → active on the first leader report.
    let r = m
        .leader_be_elected(elected(pg0.members[0], p, 0, pg0.members.clone()))
        .await
        .unwrap();
    assert_eq!(r.state, api::PgStateBit::Active as u32);
    assert_eq!(r.version, r.pool_epoch);

    // Out of a member → the reconciler remaps its PGs; finish → active with the new members.
    m.osd_out(api::OsdOutRequest {
        osd_id: pg0.members[1],
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    let remapped = loop {
        let pg = pgmap(&m, &[]).await.remove(&p).unwrap().pgs.remove(0);
        if !pg.new_members.is_empty() {
            break pg;
        }
        assert!(std::time::Instant::now() < deadline, "never remapped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(remapped.state & api::PgStateBit::Remapped as u32 != 0);
    assert!(!remapped.new_members.contains(&pg0.members[1]));
    assert_eq!(remapped.new_members.len(), 3);
    let before = fingerprint(&m, &[]).await;
    expect_err(
        m.pg_member_change_finish(api::PgMemberChangeFinishRequest {
            result: 0,
            pool_id: p,
            pg_id: 0,
            members: remapped.members.clone(),
            leader_id: remapped.new_members[0],
        })
        .await,
        Code::FailedPrecondition,
        "PG_MEMBERS_MISMATCH",
    );
    assert_eq!(fingerprint(&m, &[]).await, before);
    // A failed attempt stays visible and the PG stays remapped.
    let failed = m
        .pg_member_change_finish(api::PgMemberChangeFinishRequest {
            result: -5,
            pool_id: p,
            pg_id: 0,
            members: remapped.members.clone(),
            leader_id: remapped.new_members[0],
        })
        .await
        .unwrap();
    assert!(failed.version > remapped.version);
    let pg = pgmap(&m, &[]).await.remove(&p).unwrap().pgs.remove(0);
    assert_eq!(
        (pg.change_failures, pg.new_members.clone()),
        (1, remapped.new_members.clone())
    );
    let done = m
        .pg_member_change_finish(api::PgMemberChangeFinishRequest {
            result: 0,
            pool_id: p,
            pg_id: 0,
            members: remapped.new_members.clone(),
            leader_id: remapped.new_members[0],
        })
        .await
        .unwrap();
    assert_eq!(done.state, api::PgStateBit::Active as u32);
    let pg = pgmap(&m, &[]).await.remove(&p).unwrap().pgs.remove(0);
    assert_eq!(pg.members, remapped.new_members);
    assert!(pg.new_members.is_empty());
    let status = m
        .get_cluster_status(api::GetClusterStatusRequest {})
        .await
        .unwrap();
    assert_eq!(status.pgs, 16);
    let counted: u64 = status.pg_states.iter().map(|s| s.count).sum();
    assert_eq!(counted, 16, "every state combination counted");
}

/// A monitor with OSDs 1..=6 on three hosts (as in the issue: a PG's members are one OSD per
/// host, three OSDs are outsiders) and pool "rbd" of 8 size-3 PGs, still creating.
async fn six_osds_and_a_pool() -> (TestCluster, MonitorClient, u32) {
    let mut c = TestCluster::new(
        1,
        ClusterOptions {
            extra_config: "osd_down_after = \"600s\"\nosd_out_after = \"600s\"".to_string(),
            ..ClusterOptions::default()
        },
    );
    c.start_all();
    c.wait_leader(&[0], LONG);
    let m = c.client(0);
    boot_osds(&m, 1, 6, 3).await;
    let p = m
        .create_pool(pool("rbd", 3, 8, "host"))
        .await
        .unwrap()
        .pool_id;
    (c, m, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_pg_reports_are_refused_and_change_nothing() {
    let (_c, m, p) = six_osds_and_a_pool().await;
    // An OSD that has an id but never booted.
    let never = m
        .apply_id(api::ApplyIdRequest { uuid: uuid(40) })
        .await
        .unwrap()
        .osd_id;
    let map = pgmap(&m, &[]).await.remove(&p).unwrap();
    let pg1 = map.pgs[1].clone();
    let members = pg1.members.clone();
    let outsiders: Vec<u32> = (1..=6).filter(|o| !members.contains(o)).collect();
    assert_eq!(outsiders.len(), 3);
    let elected =
        |leader: u32, members: Vec<u32>, new_members: Vec<u32>| api::LeaderBeElectedRequest {
            leader_id: leader,
            pool_id: p,
            pg_id: 1,
            members,
            new_members,
        };
    let before = fingerprint(&m, &[]).await;

    // The report: the outsiders name themselves the members; then with the true list.
    for &o in &outsiders {
        for list in [outsiders.clone(), members.clone()] {
            expect_err(
                m.leader_be_elected(elected(o, list, vec![])).await,
                Code::InvalidArgument,
                "LEADER_NOT_MEMBER",
            );
        }
    }
    let forged = vec![members[0], outsiders[0], outsiders[1]];
    let refused = [
        (
            elected(members[0], forged, vec![]),
            Code::FailedPrecondition,
            "PG_MEMBERS_MISMATCH",
        ),
        (
            elected(members[0], members.clone(), outsiders.clone()),
            Code::FailedPrecondition,
            "PG_MEMBERS_MISMATCH",
        ),
        (
            elected(never, vec![never, members[1], members[2]], vec![]),
            Code::FailedPrecondition,
            "PG_REPORTER_NOT_UP",
        ),
        (
            elected(404, members.clone(), vec![]),
            Code::NotFound,
            "OSD_NOT_FOUND",
        ),
    ];
    for (req, code, reason) in refused {
        expect_err(m.leader_be_elected(req).await, code, reason);
    }
    let finish = |leader_id: u32| api::PgMemberChangeFinishRequest {
        result: -1,
        pool_id: p,
        pg_id: 1,
        members: Vec::new(),
        leader_id,
    };
    expect_err(
        m.pg_member_change_finish(finish(0)).await,
        Code::InvalidArgument,
        "PG_REPORTER_MISSING",
    );
    expect_err(
        m.pg_member_change_finish(finish(outsiders[0])).await,
        Code::InvalidArgument,
        "LEADER_NOT_MEMBER",
    );

    // Nothing moved: not the PG (still creating, no leader), not the pool epoch, nothing else.
    assert_eq!(fingerprint(&m, &[]).await, before);
    let after = pgmap(&m, &[]).await.remove(&p).unwrap();
    assert_eq!(after.epoch, map.epoch, "the pool epoch moved");
    assert_eq!(after.pgs[1].state, api::PgStateBit::Creating as u32);
    assert_eq!(after.pgs[1].leader, 0);

    // The true report, in raft's own order, is accepted.
    let mut reordered = members.clone();
    reordered.reverse();
    let r = m
        .leader_be_elected(elected(members[0], reordered, vec![]))
        .await
        .unwrap();
    assert_eq!(r.state, api::PgStateBit::Active as u32);
    assert_eq!(r.pool_epoch, map.epoch + 1);
    let pg = pgmap(&m, &[]).await.remove(&p).unwrap().pgs.remove(1);
    assert_eq!((pg.members, pg.leader), (members.clone(), members[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_statistics_count_each_osd_once_and_only_from_members() {
    let (c, m, p) = six_osds_and_a_pool().await;
    let map = pgmap(&m, &[]).await.remove(&p).unwrap();
    let members = map.pgs[0].members.clone();
    let outsider = (1..=6).find(|o| !members.contains(o)).unwrap();
    let writes = |bytes: u64| api::PgIoCounters {
        read_bytes: 0,
        write_bytes: bytes,
        read_ops: 0,
        write_ops: bytes / 4096,
    };
    let stats = |osd_id: u32, pg: &str, bytes: u64| api::DataStatisticsRequest {
        osd_id,
        pgs: [(pg.to_string(), writes(bytes))].into(),
    };
    let series = "fastblock_pool_write_bytes_total{pool=\"rbd\"}";
    let pg0 = format!("{p}.0");

    // Two members alternate with unchanged totals (the case: kept per PG, each switch
    // counted 1,000,000 again) until the status has a rate window of two samples or more: the
    // pool total stays at 1,000,000 and the write rate at 0.
    let deadline = std::time::Instant::now() + LONG;
    let io = loop {
        for (osd, bytes) in [(members[0], 1_000_000), (members[1], 0)] {
            let r = m.data_statistics(stats(osd, &pg0, bytes)).await.unwrap();
            assert_eq!((r.ignored, r.not_member), (0, 0));
        }
        assert_eq!(c.metric(0, series), Some(1_000_000.0));
        let io = m
            .get_cluster_status(api::GetClusterStatusRequest {})
            .await
            .unwrap()
            .client_io
            .unwrap();
        if io.window_seconds > 0.0 {
            break io;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no rate window: {io:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(io.write_bytes_per_sec, 0.0, "{io:?}");

    // An outsider's entry is skipped and counted; a never-booted OSD is refused.
    let r = m
        .data_statistics(stats(outsider, &pg0, 1 << 40))
        .await
        .unwrap();
    assert_eq!((r.ignored, r.not_member), (0, 1));
    let never = m
        .apply_id(api::ApplyIdRequest { uuid: uuid(40) })
        .await
        .unwrap()
        .osd_id;
    expect_err(
        m.data_statistics(stats(never, &pg0, 1 << 40)).await,
        Code::FailedPrecondition,
        "PG_REPORTER_NOT_UP",
    );
    expect_err(
        m.data_statistics(api::DataStatisticsRequest {
            osd_id: members[0],
            pgs: [(pg0.clone(), writes(1)), (format!("{p}.0x0"), writes(2))].into(),
        })
        .await,
        Code::InvalidArgument,
        "DUPLICATE_PG_NAME",
    );
    assert_eq!(c.metric(0, series), Some(1_000_000.0));

    // Past 2^64 the exported counter stays at the top instead of wrapping to a lower value.
    m.data_statistics(stats(members[0], &pg0, u64::MAX))
        .await
        .unwrap();
    m.data_statistics(stats(members[1], &pg0, u64::MAX))
        .await
        .unwrap();
    let top = c.metric(0, series).expect("exported");
    assert_eq!(top, u64::MAX as f64);
    m.data_statistics(stats(members[0], &pg0, 5)).await.unwrap();
    assert_eq!(c.metric(0, series), Some(top), "the counter went back");
}

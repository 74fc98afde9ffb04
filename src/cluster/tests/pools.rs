//! CreatePool (validation, placement invariants, records) and DeletePool (tombstones, cleanup).

use std::collections::HashSet;

use super::*;
use crate::cluster::placement::PlacementError;
use crate::cluster::{
    ClusterState, Epoch, FailureDomain, MAX_PG_COUNT, PG_CHUNK, PgState, PoolArgs, RecordKey,
};

fn create(s: &mut ClusterState, args: PoolArgs) -> Applied<reply::PoolCreated> {
    run(s, command::CreatePool(args))
}

fn refuse_pool(s: &mut ClusterState, args: PoolArgs, expected: ClusterError) {
    refuse(s, command::CreatePool(args), expected);
}

/// `cluster(n, hosts)` with every OSD labelled into `rack{host % racks}`.
fn racked(n: u32, hosts: u32, racks: u32) -> ClusterState {
    let mut s = cluster(n, hosts);
    for i in 1..=n {
        run(
            &mut s,
            command::SetLocation {
                id: OsdId(i),
                host: None,
                rack: Some(format!("rack{}", (i % hosts) % racks)),
                root: None,
            },
        );
    }
    s
}

// ---- validation -------------------------------------------------------------------------------

#[test]
fn pool_names_must_be_1_to_255_bytes() {
    let mut s = cluster(3, 3);
    refuse_pool(
        &mut s,
        pool_args("", 3, 8, "host"),
        ClusterError::InvalidPoolName(0),
    );
    refuse_pool(
        &mut s,
        pool_args(&"p".repeat(256), 3, 8, "host"),
        ClusterError::InvalidPoolName(256),
    );
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    refuse_pool(
        &mut s,
        pool_args(&"é".repeat(128), 3, 8, "host"),
        ClusterError::InvalidPoolName(256),
    );
    let name = "p".repeat(255);
    let id = pool(&mut s, &name, 3, 8, "host");
    assert_eq!(get_pool(&s, id).name, name);
    assert_eq!(s.pool_by_name(&name).map(|p| p.id), Some(id));
}

#[test]
fn a_duplicate_pool_name_is_refused() {
    let mut s = cluster(3, 3);
    pool(&mut s, "rbd", 3, 8, "host");
    refuse_pool(
        &mut s,
        pool_args("rbd", 1, 1, "osd"),
        ClusterError::PoolNameExists("rbd".to_string()),
    );
    // Names are case sensitive.
    pool(&mut s, "RBD", 3, 8, "host");
}

#[test]
fn pg_size_must_be_1_to_16() {
    let mut s = cluster(17, 17);
    refuse_pool(
        &mut s,
        pool_args("p0", 0, 8, "osd"),
        ClusterError::InvalidPgSize(0),
    );
    refuse_pool(
        &mut s,
        pool_args("p17", 17, 8, "osd"),
        ClusterError::InvalidPgSize(17),
    );
    let one = pool(&mut s, "p1", 1, 8, "osd");
    assert!(pgs(&s, one).iter().all(|(_, p)| p.members.len() == 1));
    let sixteen = pool(&mut s, "p16", 16, 8, "osd");
    for (_, p) in pgs(&s, sixteen) {
        assert_valid_placement(&s, sixteen, &p.members);
    }
}

// The spec's cap is 65,536 "or the documented cap": the state machine's is `MAX_PG_COUNT`.
const _: () = assert!(MAX_PG_COUNT >= 65_536);

#[test]
fn pg_count_must_be_1_to_the_cap() {
    let mut s = cluster(3, 3);
    refuse_pool(
        &mut s,
        pool_args("c0", 1, 0, "osd"),
        ClusterError::InvalidPgCount(0),
    );
    refuse_pool(
        &mut s,
        pool_args("over", 1, MAX_PG_COUNT + 1, "osd"),
        ClusterError::InvalidPgCount(MAX_PG_COUNT + 1),
    );
    refuse_pool(
        &mut s,
        pool_args("huge", 1, u32::MAX, "osd"),
        ClusterError::InvalidPgCount(u32::MAX),
    );
    let one = pool(&mut s, "c1", 1, 1, "osd");
    assert_eq!(get_pool(&s, one).pgs.len(), 1);
    for (name, count) in [("c65536", 65_536), ("max", MAX_PG_COUNT)] {
        let id = pool(&mut s, name, 1, count, "osd");
        let p = get_pool(&s, id);
        assert_eq!(p.pgs.len(), count as usize);
        assert_eq!(p.pgs.chunk_count(), count.div_ceil(PG_CHUNK));
    }
}

#[test]
fn an_empty_failure_domain_means_host_and_unknown_ones_are_refused() {
    let mut s = cluster(6, 3);
    let id = pool(&mut s, "default-fd", 3, 16, "");
    assert_eq!(get_pool(&s, id).failure_domain, FailureDomain::Host);
    for fd in ["datacenter", "Host", "hosts", " host"] {
        refuse_pool(
            &mut s,
            pool_args("x", 3, 16, fd),
            ClusterError::UnknownFailureDomain(fd.to_string()),
        );
    }
}

#[test]
fn host_failure_domain_needs_size_hosts() {
    let mut s = cluster(4, 2);
    refuse_pool(
        &mut s,
        pool_args("p", 3, 8, "host"),
        ClusterError::Placement(PlacementError::FailureDomainNotSatisfied {
            domains: 2,
            needed: 3,
            failure_domain: FailureDomain::Host,
            root: "default".to_string(),
        }),
    );
    // The same size fits one replica per OSD.
    pool(&mut s, "p", 3, 8, "osd");
}

#[test]
fn size_above_the_number_of_in_osds_is_refused() {
    let mut s = cluster(4, 4);
    run(&mut s, command::OsdOut { id: OsdId(4) });
    // A new, never booted OSD does not count either.
    apply_id(&mut s, &uuid(50));
    for fd in ["osd", "host"] {
        refuse_pool(
            &mut s,
            pool_args("p", 4, 8, fd),
            ClusterError::Placement(PlacementError::NoEnoughOsd {
                available: 3,
                needed: 4,
                root: "default".to_string(),
            }),
        );
    }
}

#[test]
fn an_unknown_root_has_no_osds() {
    let mut s = cluster(3, 3);
    let mut args = pool_args("p", 1, 8, "osd");
    args.root = "ssd".to_string();
    refuse_pool(
        &mut s,
        args.clone(),
        ClusterError::Placement(PlacementError::NoEnoughOsd {
            available: 0,
            needed: 1,
            root: "ssd".to_string(),
        }),
    );
    args.root = "bad root".to_string();
    let e = refuse_any(&mut s, command::CreatePool(args));
    assert!(
        matches!(e, ClusterError::InvalidLocation { field: "root", .. }),
        "{e:?}"
    );
}

#[test]
fn a_pool_under_a_labelled_root_uses_only_its_osds() {
    let mut s = cluster(6, 6);
    for i in [2, 4, 6] {
        run(
            &mut s,
            command::SetLocation {
                id: OsdId(i),
                host: None,
                rack: None,
                root: Some("ssd".to_string()),
            },
        );
    }
    let mut args = pool_args("fast", 3, 32, "host");
    args.root = "ssd".to_string();
    let id = create(&mut s, args).reply.id;
    assert_eq!(get_pool(&s, id).root, "ssd");
    for (_, p) in pgs(&s, id) {
        let mut m: Vec<u32> = p.members.iter().map(|o| o.0).collect();
        m.sort_unstable();
        assert_eq!(m, [2, 4, 6]);
    }
    // The default root has the other three.
    let d = pool(&mut s, "slow", 3, 32, "host");
    assert_eq!(get_pool(&s, d).root, "default");
    for (_, p) in pgs(&s, d) {
        assert!(p.members.iter().all(|o| o.0 % 2 == 1), "{:?}", p.members);
    }
}

#[test]
fn rack_failure_domain_puts_replicas_in_distinct_racks() {
    let mut s = racked(6, 3, 2);
    refuse_pool(
        &mut s,
        pool_args("r3", 3, 8, "rack"),
        ClusterError::Placement(PlacementError::FailureDomainNotSatisfied {
            domains: 2,
            needed: 3,
            failure_domain: FailureDomain::Rack,
            root: "default".to_string(),
        }),
    );
    let id = pool(&mut s, "r2", 2, 64, "rack");
    for (_, p) in pgs(&s, id) {
        assert_valid_placement(&s, id, &p.members);
        let racks: HashSet<_> = p
            .members
            .iter()
            .map(|m| s.osd(*m).unwrap().location.rack.clone().unwrap())
            .collect();
        assert_eq!(racks.len(), 2, "{:?}", p.members);
    }
}

#[test]
fn root_failure_domain_needs_as_many_roots_as_replicas() {
    let mut s = cluster(4, 4);
    refuse_pool(
        &mut s,
        pool_args("p", 2, 8, "root"),
        ClusterError::Placement(PlacementError::FailureDomainNotSatisfied {
            domains: 1,
            needed: 2,
            failure_domain: FailureDomain::Root,
            root: "default".to_string(),
        }),
    );
    let id = pool(&mut s, "p", 1, 8, "root");
    assert_eq!(get_pool(&s, id).failure_domain, FailureDomain::Root);
}

#[test]
fn a_refused_create_does_not_use_up_a_pool_id() {
    let mut s = cluster(3, 3);
    refuse_any(&mut s, command::CreatePool(pool_args("p", 4, 8, "osd")));
    assert_eq!(pool(&mut s, "p", 3, 8, "host"), PoolId(1));
}

// ---- success ----------------------------------------------------------------------------------

#[test]
fn create_pool_places_every_pg_creating_on_distinct_in_osds() {
    let mut s = cluster(9, 3);
    let osdmap = s.osdmap_epoch();
    let a = create(&mut s, pool_args("rbd", 3, 600, "host"));
    assert_eq!(
        a.reply,
        reply::PoolCreated {
            id: PoolId(1),
            epoch: Epoch(1)
        }
    );
    assert_eq!(s.osdmap_epoch(), osdmap, "a pool is not an osdmap change");
    let p = get_pool(&s, PoolId(1));
    assert_eq!(
        (p.name.as_str(), p.size, p.pg_count, p.epoch),
        ("rbd", 3, 600, Epoch(1))
    );
    assert_eq!(p.failure_domain, FailureDomain::Host);
    assert_eq!(p.root, "default");
    assert_eq!(p.pgs.len(), 600);
    for (_, pg) in p.pgs.iter() {
        assert_eq!(pg.state, PgState::CREATING);
        assert_eq!(pg.target, None);
        assert_eq!(pg.leader, None);
        assert_eq!(pg.version, Epoch(1));
        assert!(pg.core < 2, "core {} of 2", pg.core);
        assert_valid_placement(&s, p.id, &pg.members);
    }
    // Records: every chunk in the prelude, the pool and the counters in the transaction.
    assert_eq!(
        a.prelude,
        (0..3)
            .map(|i| RecordKey::PgChunk(PoolId(1), i))
            .collect::<Vec<_>>()
    );
    assert!(a.touched.contains(&RecordKey::Pool(PoolId(1))));
    assert!(a.touched.contains(&RecordKey::Counters));
    assert!(a.cleanup.is_empty());
    for key in a.prelude.iter().chain(&a.touched) {
        assert!(s.record(key).is_some(), "{key:?}");
    }
}

#[test]
fn chunk_keys_round_up() {
    let mut s = cluster(3, 3);
    for (i, (count, chunks)) in [(1, 1), (255, 1), (256, 1), (257, 2), (512, 2), (513, 3)]
        .into_iter()
        .enumerate()
    {
        let a = create(&mut s, pool_args(&format!("p{i}"), 1, count, "osd"));
        assert_eq!(a.prelude.len(), chunks, "{count} PGs");
    }
}

#[test]
fn create_pool_never_places_on_out_or_new_osds() {
    let mut s = cluster(6, 6);
    run(&mut s, command::OsdOut { id: OsdId(3) });
    run(&mut s, command::OsdStop { id: OsdId(5) });
    run(
        &mut s,
        command::MarkOut {
            ids: vec![OsdId(5)],
            guards: NO_GUARDS,
        },
    );
    let fresh = apply_id(&mut s, &uuid(50));
    let id = pool(&mut s, "p", 3, 128, "host");
    for (_, p) in pgs(&s, id) {
        assert_valid_placement(&s, id, &p.members);
        for bad in [OsdId(3), OsdId(5), fresh] {
            assert!(!p.members.contains(&bad), "{:?}", p.members);
        }
    }
}

#[test]
fn pgs_on_down_osds_start_undersize_or_down() {
    let mut s = cluster(3, 3);
    run(
        &mut s,
        command::MarkDown {
            ids: vec![OsdId(1)],
        },
    );
    let id = pool(&mut s, "p", 3, 4, "host");
    for (_, p) in pgs(&s, id) {
        assert_eq!(p.state, PgState::CREATING.with(PgState::UNDERSIZE));
    }
    run(
        &mut s,
        command::MarkDown {
            ids: vec![OsdId(2)],
        },
    );
    let id = pool(&mut s, "q", 3, 4, "host");
    for (_, p) in pgs(&s, id) {
        assert_eq!(p.state, PgState::CREATING.with(PgState::DOWN));
    }
}

#[test]
fn pools_spread_over_every_osd_and_core() {
    let mut s = cluster(6, 3);
    let id = pool(&mut s, "p", 3, 256, "host");
    let mut per_osd = std::collections::HashMap::new();
    let mut cores = HashSet::new();
    for (_, p) in pgs(&s, id) {
        cores.insert(p.core);
        for m in &p.members {
            *per_osd.entry(*m).or_insert(0u32) += 1;
        }
    }
    assert_eq!(per_osd.len(), 6, "every OSD holds PGs");
    assert_eq!(cores.len(), 2, "both cores serve PGs");
}

#[test]
fn placement_is_deterministic() {
    let mut a = cluster(8, 4);
    let mut b = cluster(8, 4);
    pool(&mut a, "p", 3, 200, "host");
    pool(&mut b, "p", 3, 200, "host");
    assert!(a == b);
}

#[test]
fn pool_ids_increase_and_are_never_reused() {
    let mut s = cluster(3, 3);
    assert_eq!(pool(&mut s, "a", 3, 8, "host"), PoolId(1));
    assert_eq!(pool(&mut s, "b", 3, 8, "host"), PoolId(2));
    run(
        &mut s,
        command::DeletePool {
            name: "b".to_string(),
        },
    );
    assert_eq!(pool(&mut s, "b", 3, 8, "host"), PoolId(3));
    run(
        &mut s,
        command::DeletePool {
            name: "a".to_string(),
        },
    );
    assert_eq!(pool(&mut s, "c", 3, 8, "host"), PoolId(4));
    assert_eq!(s.counters().next_pool_id, 5);
}

#[test]
fn create_delete_create_gives_id_2() {
    let mut s = cluster(3, 3);
    pool(&mut s, "rbd", 3, 8, "host");
    run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    assert_eq!(pool(&mut s, "rbd", 3, 8, "host"), PoolId(2));
}

// ---- DeletePool -------------------------------------------------------------------------------

#[test]
fn delete_of_an_unknown_pool_is_refused() {
    let mut s = cluster(3, 3);
    pool(&mut s, "rbd", 3, 8, "host");
    for name in ["", "nope", "RBD"] {
        refuse(
            &mut s,
            command::DeletePool {
                name: name.to_string(),
            },
            ClusterError::UnknownPoolName(name.to_string()),
        );
    }
    // A deleted pool is unknown too.
    run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    refuse(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
        ClusterError::UnknownPoolName("rbd".to_string()),
    );
}

#[test]
fn delete_pool_leaves_a_tombstone_and_cleans_up_pgs_and_images() {
    let mut s = cluster(3, 3);
    let keep = pool(&mut s, "keep", 3, 8, "host");
    let id = pool(&mut s, "rbd", 3, 600, "host");
    elect_all(&mut s, id);
    let epoch = get_pool(&s, id).epoch;
    assert!(epoch > Epoch(1));
    for name in ["vm1", "vm2"] {
        run(
            &mut s,
            command::CreateImage {
                pool: "rbd".to_string(),
                name: name.to_string(),
                size: 1 << 30,
                object_size: 0,
            },
        );
    }
    run(
        &mut s,
        command::CreateImage {
            pool: "keep".to_string(),
            name: "vm1".to_string(),
            size: 1 << 20,
            object_size: 0,
        },
    );
    let images: Vec<RecordKey> = s
        .images()
        .filter(|i| i.pool == id)
        .map(|i| RecordKey::Image(i.pool, i.id))
        .collect();
    assert_eq!(images.len(), 2);
    let osdmap = s.osdmap_epoch();

    let a = run(
        &mut s,
        command::DeletePool {
            name: "rbd".to_string(),
        },
    );
    assert_eq!(
        a.reply,
        reply::PoolDeleted {
            id,
            epoch: epoch.next()
        }
    );
    assert!(s.pool(id).is_none());
    assert!(s.pool_by_name("rbd").is_none());
    let t = s.tombstone(id).expect("tombstone");
    assert_eq!(
        (t.pool, t.name.as_str(), t.deleted_epoch),
        (id, "rbd", epoch.next())
    );
    assert!(a.touched.contains(&RecordKey::Pool(id)));
    assert!(a.touched.contains(&RecordKey::Tombstone(id)));
    assert_eq!(s.record(&RecordKey::Pool(id)), None, "the pool record goes");
    assert!(s.record(&RecordKey::Tombstone(id)).is_some());
    // Every chunk and every image of the pool is cleaned up; nothing else.
    let mut expected: Vec<RecordKey> = (0..3).map(|i| RecordKey::PgChunk(id, i)).collect();
    expected.extend(images);
    let mut cleanup = a.cleanup.clone();
    cleanup.sort();
    expected.sort();
    assert_eq!(cleanup, expected);
    for key in &a.cleanup {
        assert_eq!(s.record(key), None, "{key:?}");
    }
    assert_eq!(s.images().filter(|i| i.pool == id).count(), 0);
    assert!(s.image(id, "vm1").is_none());
    // The other pool and its image are untouched; the osdmap did not move.
    assert_eq!(get_pool(&s, keep).epoch, Epoch(1));
    assert!(s.image(keep, "vm1").is_some());
    assert_eq!(s.osdmap_epoch(), osdmap);
    // The name is free again; the new pool gets a new id and its own epochs.
    let again = pool(&mut s, "rbd", 3, 8, "host");
    assert_ne!(again, id);
    assert!(s.image(again, "vm1").is_none());
    assert!(s.tombstone(id).is_some(), "the old tombstone stays");
}

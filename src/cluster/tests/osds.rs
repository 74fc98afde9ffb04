//! The osdmap commands: ApplyId, Boot, OsdStop, the failure detector's MarkDown / MarkUp /
//! MarkOut, OsdOut / OsdIn, SetLocation, SetWeight, Purge, flags, and group epochs.

use super::*;
use crate::cluster::{
    BlobKey, BootInstance, ClusterFlag, ClusterState, DownReason, Epoch, Liveness, Membership,
    OutReason, RecordKey, ShardArg, Weight,
};

fn boot_with(
    id: u32,
    n: u128,
    change: impl FnOnce(&mut crate::cluster::BootArgs),
) -> command::Boot {
    let mut a = boot_args(OsdId(id), &uuid(n), id, 1);
    change(&mut a);
    command::Boot(a)
}

fn shard(i: u32, port: u32, raw_port: u32) -> ShardArg {
    ShardArg {
        shard: i,
        core_id: i,
        port,
        raw_port,
    }
}

fn liveness(s: &ClusterState, id: u32) -> Liveness {
    osd(s, id).liveness
}

fn out_reason(s: &ClusterState, id: u32) -> Option<OutReason> {
    match osd(s, id).membership {
        Membership::In { .. } => None,
        Membership::Out { reason, .. } => Some(reason),
    }
}

fn up_instance(s: &ClusterState, id: u32) -> Option<u64> {
    match liveness(s, id) {
        Liveness::Up { instance, .. } => Some(instance.0),
        _ => None,
    }
}

fn mark_down(s: &mut ClusterState, id: &[u32]) -> Applied<reply::OsdMap> {
    run(s, command::MarkDown { ids: ids(id) })
}

fn mark_out(s: &mut ClusterState, id: &[u32]) -> Applied<reply::MarkedOut> {
    run(
        s,
        command::MarkOut {
            ids: ids(id),
            guards: NO_GUARDS,
        },
    )
}

fn stop(s: &mut ClusterState, id: u32) -> Applied<reply::OsdMap> {
    run(s, command::OsdStop { id: OsdId(id) })
}

// ---- ApplyId ----------------------------------------------------------------------------------

#[test]
fn apply_id_hands_out_the_smallest_unused_positive_id() {
    let mut s = ClusterState::default();
    assert_eq!(apply_id(&mut s, &uuid(101)), OsdId(1));
    assert_eq!(apply_id(&mut s, &uuid(102)), OsdId(2));
    assert_eq!(apply_id(&mut s, &uuid(103)), OsdId(3));
    // OSD 2 never booted: it is down and out, so it can be purged.
    run(&mut s, command::Purge { id: OsdId(2) });
    assert_eq!(apply_id(&mut s, &uuid(104)), OsdId(2), "the hole is reused");
    assert_eq!(apply_id(&mut s, &uuid(105)), OsdId(4));
    // The purged uuid is a new OSD now.
    assert_eq!(apply_id(&mut s, &uuid(102)), OsdId(5));
}

#[test]
fn apply_id_of_a_new_uuid_bumps_the_osdmap_epoch_once_and_adds_a_new_out_osd() {
    let mut s = ClusterState::default();
    let before = s.osdmap_epoch();
    let a = run(&mut s, command::ApplyId { uuid: uuid(7) });
    assert_eq!(s.osdmap_epoch(), before.next());
    assert_eq!(
        a.reply,
        reply::AppliedId {
            id: OsdId(1),
            osdmap_epoch: before.next()
        }
    );
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(1))));
    assert!(a.touched.contains(&RecordKey::OsdMapMeta));
    let o = osd(&s, 1);
    assert_eq!(o.liveness, Liveness::New);
    assert_eq!(out_reason(&s, 1), Some(OutReason::New));
    assert_eq!(o.address, None);
    assert_eq!(o.last_change, before.next());
}

#[test]
fn apply_id_is_idempotent_for_the_same_uuid() {
    let mut s = ClusterState::default();
    let id = apply_id(&mut s, &uuid(7));
    let epoch = s.osdmap_epoch();
    let a = assert_no_op(&mut s, command::ApplyId { uuid: uuid(7) });
    assert_eq!(
        a.reply,
        reply::AppliedId {
            id,
            osdmap_epoch: epoch
        }
    );
    assert_eq!(s.osd_count(), 1);
}

#[test]
fn every_uuid_form_maps_to_the_same_osd() {
    let hyphenated = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let forms = [
        hyphenated.to_string(),
        hyphenated.to_uppercase(),
        format!("{{{hyphenated}}}"),
        format!("urn:uuid:{hyphenated}"),
        hyphenated.replace('-', ""),
        hyphenated.replace('-', "").to_uppercase(),
    ];
    let mut s = ClusterState::default();
    let id = apply_id(&mut s, &forms[0]);
    for form in &forms {
        let a = assert_no_op(&mut s, command::ApplyId { uuid: form.clone() });
        assert!(
            matches!(a.reply, reply::AppliedId { id: got, .. } if got == id),
            "{form}: {a:?}"
        );
    }
    assert_eq!(s.osd_count(), 1);
    // Boot accepts any form of the same uuid too.
    let mut args = boot_args(id, &forms[3], 0, 1);
    args.uuid = forms[3].clone();
    run(&mut s, command::Boot(args));
    assert!(osd(&s, id.0).is_up());
}

#[test]
fn invalid_uuids_are_refused() {
    let good = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let bad = [
        String::new(),
        good[..35].to_string(),
        format!("{good}0"),
        good.replace('b', "g"),
        "00000000-0000-0000-0000-000000000000".to_string(),
        "0".repeat(32),
        "garbage".to_string(),
        "6ba7b8109dad-11d1-80b4-00c04fd430c8-".to_string(),
        format!("{{{good}"),
        "osd-uuid".to_string(),
    ];
    let mut s = cluster(3, 3);
    for b in bad {
        refuse(
            &mut s,
            command::ApplyId { uuid: b.clone() },
            ClusterError::InvalidUuid(b),
        );
    }
}

// ---- Boot: success ----------------------------------------------------------------------------

#[test]
fn first_boot_marks_the_osd_up_and_in_and_stores_its_config() {
    let mut s = ClusterState::default();
    let id = apply_id(&mut s, &uuid(1));
    assert_eq!(s.core_num(), None);
    let epoch = s.osdmap_epoch();
    let mut args = boot_args(id, &uuid(1), 4, 77);
    args.config = "osd_memory = 4G".to_string();
    let a = run(&mut s, command::Boot(args));
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(
        a.reply,
        reply::Booted {
            osdmap_epoch: epoch.next(),
            held_down: false
        }
    );
    assert!(a.touched.contains(&RecordKey::Osd(id)), "{:?}", a.touched);
    assert!(
        a.touched.contains(&RecordKey::OsdMapMeta),
        "{:?}",
        a.touched
    );
    assert_eq!(
        a.blobs,
        vec![(BlobKey::OsdConfig(id), Some(b"osd_memory = 4G".to_vec()))]
    );
    assert_eq!(s.core_num(), Some(2));
    let o = osd(&s, id.0);
    assert_eq!(
        o.liveness,
        Liveness::Up {
            instance: BootInstance(77),
            since: epoch.next()
        }
    );
    assert_eq!(
        o.membership,
        Membership::In {
            since: epoch.next()
        }
    );
    assert_eq!(o.address, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(o.location.host, "host4");
    assert_eq!(o.location.root, crate::cluster::DEFAULT_ROOT);
    assert_eq!(o.core_num, 2);
    assert_eq!(o.shards.len(), 2);
    assert_eq!(o.shards[1].port, 7001);
    assert_eq!(o.shards[1].raw_port, 8001);
    assert_eq!(o.last_change, epoch.next());
}

#[test]
fn boot_accepts_ipv6_addresses() {
    let mut s = cluster(2, 2);
    for (i, addr) in ["::1", "2001:db8::7", "fe80::1:2:3:4"]
        .into_iter()
        .enumerate()
    {
        run(
            &mut s,
            boot_with(1, 1, |a| {
                a.address = addr.to_string();
                a.instance = 1;
                a.host = "host1".to_string();
                a.size = i as u64;
            }),
        );
        assert_eq!(osd(&s, 1).address, Some(addr.parse().unwrap()), "{addr}");
    }
}

#[test]
fn boot_accepts_the_extreme_valid_values() {
    let mut s = cluster(1, 1);
    run(
        &mut s,
        boot_with(1, 1, |a| {
            a.host = "h".repeat(255);
            a.rack = "r".repeat(255);
            a.root = "default".to_string();
            a.shards = vec![shard(0, 1, 65535), shard(1, 65534, 2)];
            a.config = "x".repeat(256 * 1024);
        }),
    );
    let o = osd(&s, 1);
    assert_eq!(o.location.rack.as_deref(), Some("r".repeat(255).as_str()));
    assert_eq!(o.shards[0].raw_port, 65535);
}

#[test]
fn double_boot_with_the_same_instance_changes_nothing() {
    let mut s = cluster(3, 3);
    let a = assert_no_op(&mut s, reboot(2, 3, 1));
    assert!(matches!(
        a.reply,
        reply::Booted {
            held_down: false,
            ..
        }
    ));
}

#[test]
fn a_changed_config_is_stored_again_on_a_double_boot() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    let a = run(&mut s, boot_with(1, 1, |a| a.config = "new".to_string()));
    assert_eq!(
        a.blobs,
        vec![(BlobKey::OsdConfig(OsdId(1)), Some(b"new".to_vec()))]
    );
    assert_eq!(
        s.osdmap_epoch(),
        epoch.next(),
        "the config hash is in the map"
    );
    assert_eq!(up_instance(&s, 1), Some(1));
}

#[test]
fn boot_with_another_instance_while_up_is_refused() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        reboot(2, 3, 2),
        ClusterError::OsdAlreadyUp(OsdId(2)),
    );
}

#[test]
fn after_osd_stop_a_new_instance_boots_at_once() {
    let mut s = cluster(3, 3);
    stop(&mut s, 2);
    run(&mut s, reboot(2, 3, 2));
    assert_eq!(up_instance(&s, 2), Some(2));
    assert!(osd(&s, 2).is_in());
}

#[test]
fn after_a_mark_down_a_new_instance_boots_at_once() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    run(&mut s, reboot(2, 3, 2));
    assert_eq!(up_instance(&s, 2), Some(2));
}

// ---- Boot: refusals ---------------------------------------------------------------------------

#[test]
fn boot_of_an_unknown_id_is_refused() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        boot(9, 9, 0, 1),
        ClusterError::OsdNotFound(OsdId(9)),
    );
    refuse(
        &mut s,
        boot(0, 1, 0, 1),
        ClusterError::OsdNotFound(OsdId(0)),
    );
}

#[test]
fn boot_with_the_uuid_of_another_osd_is_refused() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        boot(1, 2, 1, 5),
        ClusterError::UuidMismatch {
            id: OsdId(1),
            given: uuid(2),
        },
    );
    // An unknown (valid) uuid is a mismatch too.
    refuse(
        &mut s,
        boot(1, 99, 1, 5),
        ClusterError::UuidMismatch {
            id: OsdId(1),
            given: uuid(99),
        },
    );
}

#[test]
fn boot_with_an_unparsable_uuid_is_refused() {
    let mut s = cluster(3, 3);
    for bad in ["", "not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        refuse(
            &mut s,
            boot_with(1, 1, |a| a.uuid = bad.to_string()),
            ClusterError::InvalidUuid(bad.to_string()),
        );
    }
}

#[test]
fn boot_instance_zero_is_refused() {
    let mut s = cluster(3, 3);
    refuse(&mut s, reboot(1, 3, 0), ClusterError::InvalidBootInstance);
    // Also on a first boot.
    let mut s = ClusterState::default();
    apply_id(&mut s, &uuid(1));
    refuse(&mut s, boot(1, 1, 0, 0), ClusterError::InvalidBootInstance);
}

#[test]
fn zero_cores_are_refused() {
    let mut fresh = ClusterState::default();
    apply_id(&mut fresh, &uuid(1));
    let mut booted = cluster(2, 2);
    for s in [&mut fresh, &mut booted] {
        refuse(
            s,
            boot_with(1, 1, |a| {
                a.core_num = 0;
                a.shards.clear();
            }),
            ClusterError::InvalidCoreNum,
        );
    }
    assert_eq!(fresh.core_num(), None);
}

#[test]
fn core_num_must_match_the_clusters() {
    let mut s = cluster(2, 2);
    for cores in [1, 4] {
        refuse(
            &mut s,
            boot_with(1, 1, |a| {
                a.core_num = cores;
                a.shards = (0..cores).map(|i| shard(i, 7000 + i, 8000 + i)).collect();
            }),
            ClusterError::CoreNumMismatch {
                cluster: 2,
                given: cores,
            },
        );
    }
    // A new OSD is held to the cluster's count as well.
    let id = apply_id(&mut s, &uuid(50));
    refuse(
        &mut s,
        command::Boot({
            let mut a = boot_args(id, &uuid(50), 0, 1);
            a.core_num = 4;
            a.shards = (0..4).map(|i| shard(i, 7000 + i, 8000 + i)).collect();
            a
        }),
        ClusterError::CoreNumMismatch {
            cluster: 2,
            given: 4,
        },
    );
}

#[test]
fn boot_address_must_be_an_ip_literal() {
    let mut s = cluster(2, 2);
    for addr in [
        "host1",
        "1.2.3",
        "",
        "256.1.1.1",
        "10.0.0.1:7000",
        "[::1]",
        " 10.0.0.1",
        "localhost",
    ] {
        refuse(
            &mut s,
            boot_with(1, 1, |a| a.address = addr.to_string()),
            ClusterError::InvalidAddress(addr.to_string()),
        );
    }
}

#[test]
fn boot_ports_must_be_in_1_to_65535() {
    let mut s = cluster(2, 2);
    let cases = [
        (vec![shard(0, 0, 8000), shard(1, 7001, 8001)], 0, 0),
        (vec![shard(0, 7000, 8000), shard(1, 65536, 8001)], 1, 65536),
        (vec![shard(0, 7000, 8000), shard(1, 7001, 70000)], 1, 70000),
    ];
    for (shards, bad_shard, port) in cases {
        refuse(
            &mut s,
            boot_with(1, 1, |a| a.shards = shards),
            ClusterError::InvalidPort {
                shard: bad_shard,
                port,
            },
        );
    }
}

#[test]
fn a_raw_port_of_zero_means_the_shard_has_none() {
    // The C++ OSD without a raw server reports raw_port 0 (LEGACY-PROTOCOL.md §7.2).
    let mut s = cluster(2, 2);
    let uuid = Uuid::from_u128(1).to_string();
    s.begin_group();
    s.apply(&command::OsdStop { id: OsdId(1) }).unwrap();
    s.begin_group();
    let mut a = boot_args(OsdId(1), &uuid, 1, 9);
    a.shards = vec![shard(0, 7000, 0), shard(1, 7001, 0)];
    s.apply(&command::Boot(a)).unwrap();
    let o = s.osd(OsdId(1)).unwrap();
    assert!(o.is_up());
    assert_eq!((o.shards[0].raw_port, o.shards[1].raw_port), (0, 0));
}

#[test]
fn boot_shards_must_be_exactly_one_per_core() {
    let mut s = cluster(2, 2);
    let cases = [
        // Fewer shards than cores.
        vec![shard(0, 7000, 8000)],
        // More shards than cores.
        vec![
            shard(0, 7000, 8000),
            shard(1, 7001, 8001),
            shard(2, 7002, 8002),
        ],
        // A shard index not below core_num.
        vec![shard(0, 7000, 8000), shard(2, 7002, 8002)],
        // Shard 0 twice, shard 1 missing.
        vec![shard(0, 7000, 8000), shard(0, 7001, 8001)],
        vec![],
    ];
    for shards in cases {
        let e = refuse_any(&mut s, boot_with(1, 1, |a| a.shards = shards.clone()));
        assert!(
            matches!(e, ClusterError::InvalidShards(_)),
            "{shards:?}: {e:?}"
        );
    }
}

#[test]
fn boot_location_labels_must_be_valid() {
    let mut s = cluster(2, 2);
    let long = "h".repeat(256);
    let host_cases = ["", "my host", "a\tb", "a\nb", long.as_str()];
    for host in host_cases {
        let e = refuse_any(&mut s, boot_with(1, 1, |a| a.host = host.to_string()));
        assert!(
            matches!(e, ClusterError::InvalidLocation { field: "host", .. }),
            "{host:?}: {e:?}"
        );
    }
    let e = refuse_any(&mut s, boot_with(1, 1, |a| a.rack = "rack 1".to_string()));
    assert!(matches!(
        e,
        ClusterError::InvalidLocation { field: "rack", .. }
    ));
    let e = refuse_any(&mut s, boot_with(1, 1, |a| a.root = "r".repeat(256)));
    assert!(matches!(
        e,
        ClusterError::InvalidLocation { field: "root", .. }
    ));
}

#[test]
fn boot_config_text_over_256_kib_is_refused() {
    let mut s = cluster(2, 2);
    let e = refuse_any(
        &mut s,
        boot_with(1, 1, |a| a.config = "x".repeat(256 * 1024 + 1)),
    );
    assert_eq!(e, ClusterError::ConfigTooLarge(256 * 1024 + 1));
}

#[test]
fn a_refused_first_boot_does_not_set_the_clusters_core_num() {
    let mut s = ClusterState::default();
    apply_id(&mut s, &uuid(1));
    refuse(
        &mut s,
        boot_with(1, 1, |a| a.address = "nope".to_string()),
        ClusterError::InvalidAddress("nope".to_string()),
    );
    assert_eq!(s.core_num(), None);
    assert_eq!(osd(&s, 1).liveness, Liveness::New);
}

// ---- Boot under flags, and the in/out policy ----------------------------------------------------

#[test]
fn noup_holds_a_booting_osd_down_until_the_flag_is_cleared() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    let id = apply_id(&mut s, &uuid(10));
    let a = run(&mut s, boot(id.0, 10, 0, 3));
    assert!(matches!(
        a.reply,
        reply::Booted {
            held_down: true,
            ..
        }
    ));
    assert_eq!(
        liveness(&s, id.0),
        Liveness::HeldDown {
            instance: BootInstance(3)
        }
    );
    assert_eq!(out_reason(&s, id.0), Some(OutReason::New), "not in yet");
    assert_eq!(s.core_num(), Some(2));

    let epoch = s.osdmap_epoch();
    let a = run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(a.touched, [RecordKey::OsdMapMeta], "the flag alone");
    assert_eq!(s.deferred_releases(usize::MAX), [id]);
    let a = release(&mut s);
    assert_eq!(s.osdmap_epoch(), epoch.next().next());
    assert!(a.touched.contains(&RecordKey::Osd(id)));
    assert_eq!(up_instance(&s, id.0), Some(3));
    assert!(osd(&s, id.0).is_in(), "in on its first boot");
    // The OSDs that were up all along were not rewritten.
    assert!(!a.touched.contains(&RecordKey::Osd(OsdId(1))));
    assert!(s.deferred_releases(usize::MAX).is_empty());
    assert_no_op(&mut s, command::ReleaseDeferred { ids: vec![id] });
}

#[test]
fn a_release_for_an_osd_whose_flag_is_set_again_changes_nothing() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    let id = apply_id(&mut s, &uuid(10));
    run(&mut s, boot(id.0, 10, 0, 3));
    assert!(s.deferred_releases(usize::MAX).is_empty(), "noup still set");
    // A release decided before the flag was set again is not applied blindly.
    assert_no_op(&mut s, command::ReleaseDeferred { ids: vec![id] });
    assert!(matches!(liveness(&s, id.0), Liveness::HeldDown { .. }));
    // Unknown ids are ignored.
    assert_no_op(
        &mut s,
        command::ReleaseDeferred {
            ids: vec![OsdId(999)],
        },
    );
}

#[test]
fn thousands_of_held_down_osds_are_released_in_parts() {
    // The replay of a cleared noup is level-triggered: the flag command stays one small
    // record however many OSDs wait, and the releases are taken in bounded parts.
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    let mut held = Vec::new();
    for n in 0..3000u32 {
        let id = apply_id(&mut s, &uuid(1000 + u128::from(n)));
        run(&mut s, boot(id.0, 1000 + u128::from(n), n % 50, 1));
        held.push(id);
    }
    let a = run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    assert_eq!(a.touched, [RecordKey::OsdMapMeta]);
    let first = s.deferred_releases(48);
    assert_eq!(first, held[..48]);
    let a = run(&mut s, command::ReleaseDeferred { ids: first });
    assert_eq!(
        a.touched
            .iter()
            .filter(|k| matches!(k, RecordKey::Osd(_)))
            .count(),
        48
    );
    while !s.deferred_releases(1).is_empty() {
        let part = s.deferred_releases(48);
        run(&mut s, command::ReleaseDeferred { ids: part });
    }
    assert!(held.iter().all(|id| up_instance(&s, id.0) == Some(1)));
}

#[test]
fn noup_holds_a_rebooting_osd_down_and_keeps_it_in() {
    let mut s = cluster(2, 2);
    stop(&mut s, 1);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, reboot(1, 2, 2));
    assert_eq!(
        liveness(&s, 1),
        Liveness::HeldDown {
            instance: BootInstance(2)
        }
    );
    assert!(osd(&s, 1).is_in());
    run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    release(&mut s);
    assert_eq!(up_instance(&s, 1), Some(2));
}

#[test]
fn noin_keeps_a_first_boot_out_until_the_flag_is_cleared() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoIn));
    let id = apply_id(&mut s, &uuid(10));
    let a = run(&mut s, boot(id.0, 10, 0, 3));
    assert!(matches!(
        a.reply,
        reply::Booted {
            held_down: false,
            ..
        }
    ));
    assert_eq!(up_instance(&s, id.0), Some(3));
    assert_eq!(out_reason(&s, id.0), Some(OutReason::DeferredByNoIn));

    run(&mut s, command::UnsetFlag(ClusterFlag::NoIn));
    let a = release(&mut s);
    assert!(a.touched.contains(&RecordKey::Osd(id)));
    assert!(osd(&s, id.0).is_in());
}

#[test]
fn noin_does_not_move_an_osd_that_is_already_in() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoIn));
    stop(&mut s, 1);
    run(&mut s, reboot(1, 2, 2));
    assert!(osd(&s, 1).is_in());
}

#[test]
fn noup_and_noin_together_release_in_either_order() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, command::SetFlag(ClusterFlag::NoIn));
    let id = apply_id(&mut s, &uuid(10));
    run(&mut s, boot(id.0, 10, 0, 3));
    // noin cleared first: the OSD is not up yet, so it stays out.
    run(&mut s, command::UnsetFlag(ClusterFlag::NoIn));
    release(&mut s);
    assert!(matches!(liveness(&s, id.0), Liveness::HeldDown { .. }));
    assert!(!osd(&s, id.0).is_in());
    // noup cleared: up, and in on its first boot.
    run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    release(&mut s);
    assert_eq!(up_instance(&s, id.0), Some(3));
    assert!(osd(&s, id.0).is_in());
}

#[test]
fn a_manually_out_osd_stays_out_when_it_reboots() {
    let mut s = cluster(3, 3);
    run(&mut s, command::OsdOut { id: OsdId(2) });
    stop(&mut s, 2);
    run(&mut s, reboot(2, 3, 2));
    assert_eq!(up_instance(&s, 2), Some(2));
    assert_eq!(out_reason(&s, 2), Some(OutReason::Manual));
    // And when a heartbeat brings it back after a mark down.
    mark_down(&mut s, &[2]);
    run(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 2,
        },
    );
    assert_eq!(out_reason(&s, 2), Some(OutReason::Manual));
}

#[test]
fn an_auto_out_osd_comes_back_in_when_it_boots() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    mark_out(&mut s, &[2]);
    assert_eq!(out_reason(&s, 2), Some(OutReason::Auto));
    run(&mut s, reboot(2, 3, 2));
    assert_eq!(up_instance(&s, 2), Some(2));
    assert!(osd(&s, 2).is_in());
}

#[test]
fn an_auto_out_osd_comes_back_in_when_its_heartbeat_marks_it_up() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    mark_out(&mut s, &[2]);
    let epoch = s.osdmap_epoch();
    let a = run(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
    );
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(2))));
    assert_eq!(up_instance(&s, 2), Some(1));
    assert!(osd(&s, 2).is_in());
}

#[test]
fn under_noin_an_auto_out_osd_coming_back_waits_for_the_flag() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    mark_out(&mut s, &[2]);
    run(&mut s, command::SetFlag(ClusterFlag::NoIn));
    run(&mut s, reboot(2, 3, 2));
    assert_eq!(out_reason(&s, 2), Some(OutReason::DeferredByNoIn));
    run(&mut s, command::UnsetFlag(ClusterFlag::NoIn));
    release(&mut s);
    assert!(osd(&s, 2).is_in());
}

#[test]

fn a_repeated_boot_of_an_up_osd_under_noup_does_not_claim_it_is_held_down() {
    let mut s = cluster(2, 2);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    let a = run(&mut s, reboot(1, 2, 1));
    assert_eq!(up_instance(&s, 1), Some(1), "the running OSD stays up");
    // BootResponse.held_down is documented as "the noup flag holds the OSD down".
    assert!(
        matches!(
            a.reply,
            reply::Booted {
                held_down: false,
                ..
            }
        ),
        "{:?}",
        a.reply
    );
}

// ---- OsdStop ----------------------------------------------------------------------------------

#[test]
fn osd_stop_marks_an_up_osd_down_now_and_forgets_its_instance() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    let a = stop(&mut s, 2);
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(
        a.reply,
        reply::OsdMap {
            osdmap_epoch: epoch.next()
        }
    );
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(2))));
    assert_eq!(
        liveness(&s, 2),
        Liveness::Down {
            instance: None,
            since: epoch.next(),
            reason: DownReason::Stopped
        }
    );
    assert!(osd(&s, 2).is_in(), "a stop is not an instant out");
    assert_eq!(osd(&s, 2).boot_instance(), None);
}

#[test]
fn osd_stop_of_an_unknown_or_never_booted_osd_is_refused() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        command::OsdStop { id: OsdId(9) },
        ClusterError::OsdNotFound(OsdId(9)),
    );
    let id = apply_id(&mut s, &uuid(40));
    refuse(
        &mut s,
        command::OsdStop { id },
        ClusterError::OsdNotBooted(id),
    );
}

#[test]
fn stopping_twice_changes_nothing_the_second_time() {
    let mut s = cluster(3, 3);
    stop(&mut s, 2);
    assert_no_op(&mut s, command::OsdStop { id: OsdId(2) });
}

#[test]
fn osd_stop_of_a_marked_down_osd_forgets_its_instance_and_keeps_its_down_epoch() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    let since = match liveness(&s, 2) {
        Liveness::Down { since, .. } => since,
        l => panic!("{l:?}"),
    };
    stop(&mut s, 2);
    assert_eq!(
        liveness(&s, 2),
        Liveness::Down {
            instance: None,
            since,
            reason: DownReason::Stopped
        }
    );
    refuse(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
        ClusterError::OsdNotBooted(OsdId(2)),
    );
}

#[test]
fn osd_stop_of_a_held_down_osd_marks_it_down() {
    let mut s = cluster(2, 2);
    stop(&mut s, 1);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, reboot(1, 2, 2));
    stop(&mut s, 1);
    assert!(matches!(
        liveness(&s, 1),
        Liveness::Down {
            instance: None,
            reason: DownReason::Stopped,
            ..
        }
    ));
    // Nothing left for the flag to release.
    run(&mut s, command::UnsetFlag(ClusterFlag::NoUp));
    assert!(s.deferred_releases(usize::MAX).is_empty());
    assert!(!osd(&s, 1).is_up());
}

// ---- MarkDown / MarkUp / MarkOut ----------------------------------------------------------------

#[test]
fn mark_down_keeps_the_instance_so_a_heartbeat_brings_it_back() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    let a = mark_down(&mut s, &[2]);
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(2))));
    assert_eq!(
        liveness(&s, 2),
        Liveness::Down {
            instance: Some(BootInstance(1)),
            since: epoch.next(),
            reason: DownReason::NoHeartbeat
        }
    );
    assert!(osd(&s, 2).is_in());
    run(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
    );
    assert_eq!(up_instance(&s, 2), Some(1));
    assert_eq!(s.osdmap_epoch(), Epoch(epoch.0 + 2));
}

#[test]
fn mark_down_of_several_osds_bumps_once() {
    let mut s = cluster(4, 4);
    let epoch = s.osdmap_epoch();
    mark_down(&mut s, &[1, 3]);
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert!(!osd(&s, 1).is_up() && !osd(&s, 3).is_up());
    assert!(osd(&s, 2).is_up() && osd(&s, 4).is_up());
}

#[test]
fn mark_down_ignores_unknown_and_already_down_osds() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    let a = assert_no_op(&mut s, command::MarkDown { ids: ids(&[2, 9]) });
    assert_eq!(
        a.reply,
        reply::OsdMap {
            osdmap_epoch: s.osdmap_epoch()
        }
    );
}

#[test]
fn mark_up_with_another_instance_is_stale() {
    let mut s = cluster(3, 3);
    // Up with another instance.
    refuse(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 5,
        },
        ClusterError::StaleBootInstance(OsdId(2)),
    );
    // Marked down with another instance.
    mark_down(&mut s, &[2]);
    refuse(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 5,
        },
        ClusterError::StaleBootInstance(OsdId(2)),
    );
}

#[test]
fn mark_up_needs_a_booted_osd() {
    let mut s = cluster(3, 3);
    stop(&mut s, 2);
    refuse(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
        ClusterError::OsdNotBooted(OsdId(2)),
    );
    let id = apply_id(&mut s, &uuid(40));
    refuse(
        &mut s,
        command::MarkUp { id, instance: 1 },
        ClusterError::OsdNotBooted(id),
    );
    refuse(
        &mut s,
        command::MarkUp {
            id: OsdId(9),
            instance: 1,
        },
        ClusterError::OsdNotFound(OsdId(9)),
    );
}

#[test]
fn mark_up_of_an_up_osd_with_its_instance_is_a_no_op() {
    let mut s = cluster(3, 3);
    assert_no_op(
        &mut s,
        command::MarkUp {
            id: OsdId(2),
            instance: 1,
        },
    );
}

#[test]
fn nodown_makes_mark_down_a_no_op() {
    let mut s = cluster(3, 3);
    run(&mut s, command::SetFlag(ClusterFlag::NoDown));
    assert_no_op(&mut s, command::MarkDown { ids: ids(&[1, 2]) });
    assert!(osd(&s, 1).is_up());
    // A planned stop is not a failure detection: it still marks down.
    stop(&mut s, 1);
    assert!(!osd(&s, 1).is_up());
}

#[test]
fn noout_makes_mark_out_a_no_op() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    run(&mut s, command::SetFlag(ClusterFlag::NoOut));
    assert_no_op(
        &mut s,
        command::MarkOut {
            ids: ids(&[2]),
            guards: NO_GUARDS,
        },
    );
    assert!(osd(&s, 2).is_in());
    // An operator's out still works under noout.
    run(&mut s, command::OsdOut { id: OsdId(2) });
    assert!(!osd(&s, 2).is_in());
}

#[test]
fn mark_out_only_affects_down_and_in_osds() {
    let mut s = cluster(5, 5);
    mark_down(&mut s, &[2, 3]);
    run(&mut s, command::OsdOut { id: OsdId(3) });
    let epoch = s.osdmap_epoch();
    // 1: up+in, 2: down+in, 3: down+out (manual), 9: unknown.
    let a = mark_out(&mut s, &[1, 2, 3, 9]);
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(
        a.touched
            .iter()
            .filter(|k| **k == RecordKey::Osd(OsdId(2)))
            .count(),
        1
    );
    assert!(!a.touched.contains(&RecordKey::Osd(OsdId(1))));
    assert!(!a.touched.contains(&RecordKey::Osd(OsdId(3))));
    assert!(osd(&s, 1).is_in());
    assert_eq!(out_reason(&s, 2), Some(OutReason::Auto));
    assert_eq!(out_reason(&s, 3), Some(OutReason::Manual));
    // Again: nothing left to do.
    assert_no_op(
        &mut s,
        command::MarkOut {
            ids: ids(&[1, 2, 3]),
            guards: NO_GUARDS,
        },
    );
}

// ---- OsdOut / OsdIn ---------------------------------------------------------------------------

#[test]
fn osd_out_marks_an_osd_out_by_the_operator_and_repeats_are_no_ops() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    run(&mut s, command::OsdOut { id: OsdId(2) });
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(
        osd(&s, 2).membership,
        Membership::Out {
            reason: OutReason::Manual,
            since: epoch.next()
        }
    );
    assert!(osd(&s, 2).is_up(), "out is not down");
    assert_no_op(&mut s, command::OsdOut { id: OsdId(2) });
}

#[test]
fn osd_out_of_an_auto_out_osd_makes_the_out_manual() {
    let mut s = cluster(3, 3);
    mark_down(&mut s, &[2]);
    mark_out(&mut s, &[2]);
    run(&mut s, command::OsdOut { id: OsdId(2) });
    assert_eq!(out_reason(&s, 2), Some(OutReason::Manual));
    run(&mut s, reboot(2, 3, 2));
    assert!(!osd(&s, 2).is_in(), "the operator's out wins");
}

#[test]
fn an_osd_marked_out_before_its_first_boot_stays_out() {
    let mut s = cluster(2, 2);
    let id = apply_id(&mut s, &uuid(40));
    run(&mut s, command::OsdOut { id });
    assert_eq!(out_reason(&s, id.0), Some(OutReason::Manual));
    run(&mut s, boot(id.0, 40, 0, 1));
    assert_eq!(up_instance(&s, id.0), Some(1));
    assert_eq!(out_reason(&s, id.0), Some(OutReason::Manual));
    run(&mut s, command::OsdIn { id });
    assert!(osd(&s, id.0).is_in());
}

#[test]
fn osd_in_of_an_out_and_up_osd_marks_it_in_and_repeats_are_no_ops() {
    let mut s = cluster(3, 3);
    run(&mut s, command::OsdOut { id: OsdId(2) });
    let epoch = s.osdmap_epoch();
    let a = run(&mut s, command::OsdIn { id: OsdId(2) });
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(2))));
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(
        osd(&s, 2).membership,
        Membership::In {
            since: epoch.next()
        }
    );
    assert_no_op(&mut s, command::OsdIn { id: OsdId(2) });
}

#[test]
fn osd_in_of_a_down_osd_is_refused() {
    let mut s = cluster(3, 3);
    // Stopped and out.
    run(&mut s, command::OsdOut { id: OsdId(2) });
    stop(&mut s, 2);
    refuse(
        &mut s,
        command::OsdIn { id: OsdId(2) },
        ClusterError::OsdIsDown(OsdId(2)),
    );
    // Never booted.
    let id = apply_id(&mut s, &uuid(40));
    refuse(&mut s, command::OsdIn { id }, ClusterError::OsdIsDown(id));
    // Held down by noup.
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, boot(id.0, 40, 0, 1));
    refuse(&mut s, command::OsdIn { id }, ClusterError::OsdIsDown(id));
}

#[test]
fn osd_in_of_a_down_but_in_osd_is_a_no_op() {
    let mut s = cluster(3, 3);
    stop(&mut s, 2);
    assert_no_op(&mut s, command::OsdIn { id: OsdId(2) });
}

#[test]
fn osd_out_and_in_of_unknown_osds_are_refused() {
    let mut s = cluster(3, 3);
    refuse(
        &mut s,
        command::OsdOut { id: OsdId(9) },
        ClusterError::OsdNotFound(OsdId(9)),
    );
    refuse(
        &mut s,
        command::OsdIn { id: OsdId(9) },
        ClusterError::OsdNotFound(OsdId(9)),
    );
}

// ---- SetLocation / SetWeight ------------------------------------------------------------------

/// host, rack, root, and the field a refusal names.
type Labels<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str);

fn set_location(
    id: u32,
    host: Option<&str>,
    rack: Option<&str>,
    root: Option<&str>,
) -> command::SetLocation {
    command::SetLocation {
        id: OsdId(id),
        host: host.map(str::to_string),
        rack: rack.map(str::to_string),
        root: root.map(str::to_string),
    }
}

#[test]
fn set_location_validates_every_label() {
    let mut s = cluster(3, 3);
    let long = "x".repeat(256);
    // (host, rack, root, the field refused)
    let cases: [Labels; 9] = [
        (Some(""), None, None, "host"),
        (Some("my host"), None, None, "host"),
        (Some("a\u{7}b"), None, None, "host"),
        (Some(long.as_str()), None, None, "host"),
        (None, Some("rack 1"), None, "rack"),
        (None, Some(long.as_str()), None, "rack"),
        (None, None, Some(""), "root"),
        (None, None, Some("ssd root"), "root"),
        (None, None, Some(long.as_str()), "root"),
    ];
    for (host, rack, root, field) in cases {
        let e = refuse_any(&mut s, set_location(1, host, rack, root));
        assert!(
            matches!(e, ClusterError::InvalidLocation { field: f, .. } if f == field),
            "{host:?} {rack:?} {root:?}: {e:?}"
        );
    }
    // A valid host does not sneak in when the rack is refused.
    let e = refuse_any(&mut s, set_location(1, Some("new"), Some("bad rack"), None));
    assert!(matches!(e, ClusterError::InvalidLocation { .. }));
    assert_eq!(osd(&s, 1).location.host, "host1");
    refuse(
        &mut s,
        set_location(9, Some("h"), None, None),
        ClusterError::OsdNotFound(OsdId(9)),
    );
}

#[test]
fn set_location_changes_labels_and_an_empty_rack_removes_it() {
    let mut s = cluster(3, 3);
    let name = "n".repeat(255);
    let epoch = s.osdmap_epoch();
    let a = run(
        &mut s,
        set_location(1, Some(&name), Some("rack-a"), Some("ssd")),
    );
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(1))));
    assert_eq!(s.osdmap_epoch(), epoch.next());
    let l = osd(&s, 1).location.clone();
    assert_eq!(
        (l.host.as_str(), l.rack.as_deref(), l.root.as_str()),
        (name.as_str(), Some("rack-a"), "ssd")
    );
    // None keeps a label.
    run(&mut s, set_location(1, None, None, Some("default")));
    assert_eq!(osd(&s, 1).location.rack.as_deref(), Some("rack-a"));
    // An empty rack removes it.
    run(&mut s, set_location(1, None, Some(""), None));
    assert_eq!(osd(&s, 1).location.rack, None);
    assert_eq!(osd(&s, 1).location.host, name);
}

#[test]
fn set_location_to_the_current_labels_is_a_no_op() {
    let mut s = cluster(3, 3);
    assert_no_op(
        &mut s,
        set_location(1, Some("host1"), Some(""), Some("default")),
    );
    assert_no_op(&mut s, set_location(1, None, None, None));
}

#[test]
fn set_weight_accepts_0_to_100() {
    let mut s = cluster(3, 3);
    for (w, milli) in [(0.0, 0), (1.5, 1500), (100.0, 100_000), (0.001, 1)] {
        run(
            &mut s,
            command::SetWeight {
                id: OsdId(1),
                weight: w,
            },
        );
        assert_eq!(osd(&s, 1).weight, Weight(milli), "{w}");
    }
}

#[test]
fn set_weight_refuses_out_of_range_and_non_finite_weights() {
    let mut s = cluster(3, 3);
    for w in [
        -1.0,
        -0.001,
        100.5,
        1e9,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        refuse(
            &mut s,
            command::SetWeight {
                id: OsdId(1),
                weight: w,
            },
            ClusterError::InvalidWeight,
        );
    }
    refuse(
        &mut s,
        command::SetWeight {
            id: OsdId(9),
            weight: 1.0,
        },
        ClusterError::OsdNotFound(OsdId(9)),
    );
}

#[test]
fn set_weight_to_the_current_weight_is_a_no_op() {
    let mut s = cluster(3, 3);
    assert_no_op(
        &mut s,
        command::SetWeight {
            id: OsdId(1),
            weight: 1.0,
        },
    );
    run(
        &mut s,
        command::SetWeight {
            id: OsdId(1),
            weight: 2.5,
        },
    );
    assert_no_op(
        &mut s,
        command::SetWeight {
            id: OsdId(1),
            weight: 2.5,
        },
    );
}

// ---- Purge ------------------------------------------------------------------------------------

#[test]
fn purge_refuses_an_osd_that_is_up_or_in() {
    let mut s = cluster(4, 4);
    // up + in
    refuse(
        &mut s,
        command::Purge { id: OsdId(1) },
        ClusterError::OsdNotDownAndOut(OsdId(1)),
    );
    // up + out
    run(&mut s, command::OsdOut { id: OsdId(2) });
    refuse(
        &mut s,
        command::Purge { id: OsdId(2) },
        ClusterError::OsdNotDownAndOut(OsdId(2)),
    );
    // down + in
    stop(&mut s, 3);
    refuse(
        &mut s,
        command::Purge { id: OsdId(3) },
        ClusterError::OsdNotDownAndOut(OsdId(3)),
    );
    // held down + out
    run(&mut s, command::OsdOut { id: OsdId(4) });
    stop(&mut s, 4);
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, reboot(4, 4, 2));
    refuse(
        &mut s,
        command::Purge { id: OsdId(4) },
        ClusterError::OsdNotDownAndOut(OsdId(4)),
    );
    refuse(
        &mut s,
        command::Purge { id: OsdId(9) },
        ClusterError::OsdNotFound(OsdId(9)),
    );
}

#[test]
fn purge_refuses_an_osd_that_still_holds_pgs() {
    let mut s = cluster(4, 4);
    let p = pool(&mut s, "rbd", 3, 32, "host");
    let holding = pgs(&s, p)
        .iter()
        .filter(|(_, pg)| pg.members.contains(&OsdId(2)))
        .count();
    assert!(holding > 0);
    run(&mut s, command::OsdOut { id: OsdId(2) });
    stop(&mut s, 2);
    refuse(
        &mut s,
        command::Purge { id: OsdId(2) },
        ClusterError::OsdHasPgs {
            osd: OsdId(2),
            pgs: holding,
        },
    );
    // Still held while the PGs are remapped (2 is a member until the change finishes).
    let list = s.pgs_needing_refresh(p, usize::MAX);
    run(&mut s, command::RefreshPgs { pool: p, pgs: list });
    refuse(
        &mut s,
        command::Purge { id: OsdId(2) },
        ClusterError::OsdHasPgs {
            osd: OsdId(2),
            pgs: holding,
        },
    );
}

#[test]
fn purge_refuses_an_osd_that_is_only_in_a_target() {
    let mut s = cluster(5, 5);
    let p = pool(&mut s, "rbd", 3, 1, "host");
    let members = pg(&s, p, 0).members;
    run(&mut s, command::OsdOut { id: members[0] });
    run(
        &mut s,
        command::RefreshPgs {
            pool: p,
            pgs: vec![PgId(0)],
        },
    );
    let target = pg(&s, p, 0).target.expect("remapped").members;
    let newcomer = *target.iter().find(|m| !members.contains(m)).unwrap();
    run(&mut s, command::OsdOut { id: newcomer });
    run(&mut s, command::OsdStop { id: newcomer });
    refuse(
        &mut s,
        command::Purge { id: newcomer },
        ClusterError::OsdHasPgs {
            osd: newcomer,
            pgs: 1,
        },
    );
}

#[test]
fn purge_removes_the_osd_and_its_config_and_frees_its_id() {
    let mut s = cluster(3, 3);
    run(&mut s, command::OsdOut { id: OsdId(2) });
    stop(&mut s, 2);
    let epoch = s.osdmap_epoch();
    let a = run(&mut s, command::Purge { id: OsdId(2) });
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert!(a.touched.contains(&RecordKey::Osd(OsdId(2))));
    assert!(a.touched.contains(&RecordKey::OsdMapMeta));
    assert_eq!(s.record(&RecordKey::Osd(OsdId(2))), None);
    assert!(a.blobs.contains(&(BlobKey::OsdConfig(OsdId(2)), None)));
    assert!(s.osd(OsdId(2)).is_none());
    assert_eq!(s.osd_count(), 2);
    // Its old uuid is unknown now; a new uuid gets the freed id.
    refuse(&mut s, reboot(2, 3, 3), ClusterError::OsdNotFound(OsdId(2)));
    assert_eq!(apply_id(&mut s, &uuid(77)), OsdId(2));
    assert_eq!(osd(&s, 2).liveness, Liveness::New);
    assert!(!osd(&s, 2).is_in());
}

#[test]
fn a_never_booted_osd_can_be_purged() {
    let mut s = cluster(2, 2);
    let id = apply_id(&mut s, &uuid(50));
    run(&mut s, command::Purge { id });
    assert!(s.osd(id).is_none());
}

// ---- Flags ------------------------------------------------------------------------------------

#[test]
fn set_flag_twice_bumps_once() {
    let mut s = cluster(2, 2);
    let epoch = s.osdmap_epoch();
    let a = run(&mut s, command::SetFlag(ClusterFlag::NoOut));
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert_eq!(a.touched, vec![RecordKey::OsdMapMeta]);
    assert!(s.flags().contains(ClusterFlag::NoOut));
    assert_eq!(
        a.reply,
        reply::Flags {
            flags: s.flags(),
            osdmap_epoch: epoch.next()
        }
    );
    let a = assert_no_op(&mut s, command::SetFlag(ClusterFlag::NoOut));
    assert_eq!(
        a.reply,
        reply::Flags {
            flags: s.flags(),
            osdmap_epoch: epoch.next()
        }
    );
}

#[test]
fn flags_are_independent() {
    let mut s = cluster(2, 2);
    for f in ClusterFlag::ALL {
        run(&mut s, command::SetFlag(f));
    }
    assert_eq!(s.flags().iter().count(), 5);
    run(&mut s, command::UnsetFlag(ClusterFlag::NoRebalance));
    assert!(!s.flags().contains(ClusterFlag::NoRebalance));
    assert!(s.flags().contains(ClusterFlag::NoOut));
    assert!(s.flags().contains(ClusterFlag::NoIn));
}

#[test]
fn unset_flag_of_a_flag_not_set_is_a_no_op() {
    let mut s = cluster(2, 2);
    for f in ClusterFlag::ALL {
        assert_no_op(&mut s, command::UnsetFlag(f));
    }
    run(&mut s, command::SetFlag(ClusterFlag::NoDown));
    run(&mut s, command::UnsetFlag(ClusterFlag::NoDown));
    assert_no_op(&mut s, command::UnsetFlag(ClusterFlag::NoDown));
}

// ---- Groups -----------------------------------------------------------------------------------

#[test]
fn two_osdmap_changes_in_one_group_bump_the_epoch_once() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    s.begin_group();
    let a = s.apply(&command::OsdOut { id: OsdId(1) }).unwrap();
    let b = s.apply(&command::SetFlag(ClusterFlag::NoOut)).unwrap();
    let c = s.apply(&command::ApplyId { uuid: uuid(50) }).unwrap();
    assert_eq!(s.osdmap_epoch(), epoch.next());
    assert!(matches!(a.reply, reply::OsdMap { osdmap_epoch } if osdmap_epoch == epoch.next()));
    assert!(matches!(b.reply, reply::Flags { osdmap_epoch, .. } if osdmap_epoch == epoch.next()));
    assert!(
        matches!(c.reply, reply::AppliedId { osdmap_epoch, .. } if osdmap_epoch == epoch.next())
    );
    // Every record the group changed carries the group's epoch.
    assert_eq!(osd(&s, 1).last_change, epoch.next());
    assert_eq!(osd(&s, 4).last_change, epoch.next());

    s.begin_group();
    s.apply(&command::OsdIn { id: OsdId(1) }).unwrap();
    assert_eq!(
        s.osdmap_epoch(),
        Epoch(epoch.0 + 2),
        "a new group bumps again"
    );
}

#[test]
fn a_refused_command_inside_a_group_keeps_the_groups_bump() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    s.begin_group();
    s.apply(&command::OsdOut { id: OsdId(1) }).unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(&command::OsdIn { id: OsdId(9) }),
        Err(ClusterError::OsdNotFound(OsdId(9)))
    );
    assert!(s == before);
    s.apply(&command::OsdOut { id: OsdId(2) }).unwrap();
    assert_eq!(s.osdmap_epoch(), epoch.next());
}

#[test]
fn a_no_op_does_not_use_up_the_groups_bump() {
    let mut s = cluster(3, 3);
    let epoch = s.osdmap_epoch();
    s.begin_group();
    s.apply(&command::OsdIn { id: OsdId(1) }).unwrap();
    assert_eq!(s.osdmap_epoch(), epoch);
    s.apply(&command::OsdOut { id: OsdId(1) }).unwrap();
    assert_eq!(s.osdmap_epoch(), epoch.next());
}

#[test]
fn boot_refuses_non_unicast_addresses_and_reused_ports() {
    let mut s = cluster(2, 2);
    for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1"] {
        let e = refuse_any(&mut s, boot_with(1, 1, |a| a.address = bad.to_string()));
        assert_eq!(e, ClusterError::InvalidAddress(bad.to_string()));
    }
    let e = refuse_any(
        &mut s,
        boot_with(1, 1, |a| {
            a.shards = vec![shard(0, 7000, 8000), shard(1, 7000, 8001)]
        }),
    );
    assert!(matches!(e, ClusterError::InvalidShards(_)), "{e:?}");
}

fn marked_out(
    a: &Applied<reply::MarkedOut>,
) -> (Vec<OsdId>, Vec<(OsdId, crate::cluster::OutRefusal)>) {
    (a.reply.marked.clone(), a.reply.refused.clone())
}

#[test]
fn auto_out_keeps_the_minimum_in_ratio() {
    use crate::cluster::{OutGuards, OutRefusal};
    // 8 OSDs on 8 hosts; 3 down. 0.75 × 8 = 6 must stay in: only 2 of the 3 may go out.
    let mut s = cluster(8, 8);
    run(
        &mut s,
        command::MarkDown {
            ids: ids(&[1, 2, 3]),
        },
    );
    let guards = OutGuards {
        min_in_ratio: 0.75,
        subtree_limit: None,
    };
    let a = run(
        &mut s,
        command::MarkOut {
            ids: ids(&[1, 2, 3]),
            guards,
        },
    );
    let (marked, refused) = marked_out(&a);
    assert_eq!(marked, ids(&[1, 2]));
    assert_eq!(refused, vec![(OsdId(3), OutRefusal::MinInRatio)]);
    assert!(osd(&s, 3).is_in());
}

#[test]
fn auto_out_never_takes_a_whole_subtree() {
    use crate::cluster::{OutGuards, OutRefusal, SubtreeLimit};
    // 12 OSDs on 4 hosts (3 each); every OSD of host 1 down, and one OSD of host 2.
    let mut s = cluster(12, 4);
    let host1: Vec<u32> = (1..=12).filter(|i| i % 4 == 1).collect();
    let down: Vec<u32> = host1.iter().copied().chain([2]).collect();
    run(&mut s, command::MarkDown { ids: ids(&down) });
    let guards = OutGuards {
        min_in_ratio: 0.0,
        subtree_limit: Some(SubtreeLimit::Host),
    };
    let a = run(
        &mut s,
        command::MarkOut {
            ids: ids(&down),
            guards,
        },
    );
    let (marked, refused) = marked_out(&a);
    assert_eq!(marked, ids(&[2]), "a single failed OSD goes out");
    assert_eq!(
        refused,
        host1
            .iter()
            .map(|i| (OsdId(*i), OutRefusal::WholeSubtreeDown(SubtreeLimit::Host)))
            .collect::<Vec<_>>(),
        "a whole dead host stays in"
    );
    // With racks: host 1 and host 3 in rack r1; host 3 up, so host 1's OSDs may go out.
    for i in (1..=12).filter(|i| i % 4 == 1 || i % 4 == 3) {
        run(
            &mut s,
            command::SetLocation {
                id: OsdId(i),
                host: None,
                rack: Some("r1".to_string()),
                root: None,
            },
        );
    }
    let a = run(
        &mut s,
        command::MarkOut {
            ids: ids(&host1),
            guards: OutGuards {
                min_in_ratio: 0.0,
                subtree_limit: Some(SubtreeLimit::Rack),
            },
        },
    );
    assert_eq!(marked_out(&a).0, ids(&host1), "the rack still has up OSDs");
}

#[test]
fn the_rack_limit_holds_a_dead_rack_and_spares_unracked_hosts() {
    use crate::cluster::{OutGuards, OutRefusal, SubtreeLimit};
    let guards = OutGuards {
        min_in_ratio: 0.0,
        subtree_limit: Some(SubtreeLimit::Rack),
    };
    // 8 OSDs on 4 hosts without rack labels: a dead host is not a dead rack.
    let mut s = cluster(8, 4);
    run(&mut s, command::MarkDown { ids: ids(&[1, 5]) });
    let a = run(
        &mut s,
        command::MarkOut {
            ids: ids(&[1, 5]),
            guards,
        },
    );
    assert_eq!(marked_out(&a).0, ids(&[1, 5]));
    // Hosts 2 and 3 (OSDs 2, 6, 3, 7) form rack r9, which dies entirely: it stays in.
    for i in [2, 6, 3, 7] {
        run(
            &mut s,
            command::SetLocation {
                id: OsdId(i),
                host: None,
                rack: Some("r9".to_string()),
                root: None,
            },
        );
    }
    run(
        &mut s,
        command::MarkDown {
            ids: ids(&[2, 6, 3, 7]),
        },
    );
    let a = run(
        &mut s,
        command::MarkOut {
            ids: ids(&[2, 6, 3, 7]),
            guards,
        },
    );
    let (marked, refused) = marked_out(&a);
    assert!(marked.is_empty());
    assert_eq!(refused.len(), 4);
    assert!(
        refused
            .iter()
            .all(|(_, r)| *r == OutRefusal::WholeSubtreeDown(SubtreeLimit::Rack))
    );
}

//! The PG lifecycle: LeaderBeElected, the remap flow (OsdOut → RefreshPgs → target →
//! MemberChangeFinish / LeaderBeElected), degraded PGs, and a records round trip of a state
//! holding every kind of entity.

use std::collections::HashSet;

use super::*;
use crate::cluster::{ClusterFlag, ClusterState, Epoch, PgState, REFRESH_BATCH, RecordKey};

const X: OsdId = OsdId(1);

/// 6 OSDs on 3 hosts (host0: 3, 6; host1: 1, 4; host2: 2, 5), pool "rbd" of 64 size-3 PGs
/// with one replica per host, every PG active.
fn active_pool() -> (ClusterState, PoolId) {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 64, "host");
    elect_all(&mut s, p);
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.state, PgState::ACTIVE);
    }
    (s, p)
}

fn elect(
    leader: OsdId,
    pool: PoolId,
    pg: u32,
    members: &[OsdId],
    new: &[OsdId],
) -> command::LeaderBeElected {
    command::LeaderBeElected {
        leader,
        pool,
        pg: PgId(pg),
        members: members.to_vec(),
        new_members: new.to_vec(),
    }
}

/// A PgMemberChangeFinish reported by the first OSD listed (none for an empty list).
fn finish(result: i32, pool: PoolId, pg: u32, members: &[OsdId]) -> command::MemberChangeFinish {
    finish_by(members.first().copied(), result, pool, pg, members)
}

fn finish_by(
    reporter: Option<OsdId>,
    result: i32,
    pool: PoolId,
    pg: u32,
    members: &[OsdId],
) -> command::MemberChangeFinish {
    command::MemberChangeFinish {
        reporter,
        result,
        pool,
        pg: PgId(pg),
        members: members.to_vec(),
    }
}

/// Runs RefreshPgs on every PG that needs it; returns how many changed.
fn refresh(s: &mut ClusterState, pool: PoolId) -> usize {
    let list = s.pgs_needing_refresh(pool, usize::MAX);
    run(s, command::RefreshPgs { pool, pgs: list })
        .reply
        .changed
}

/// The PGs of `pool` holding `osd` as a member, by id.
fn holding(s: &ClusterState, pool: PoolId, osd: OsdId) -> Vec<PgId> {
    pgs(s, pool)
        .into_iter()
        .filter(|(_, p)| p.members.contains(&osd))
        .map(|(id, _)| id)
        .collect()
}

fn list(ids: &[OsdId]) -> String {
    let v: Vec<String> = ids.iter().map(|i| i.0.to_string()).collect();
    format!("[{}]", v.join(","))
}

fn first_pg_holding(s: &ClusterState, pool: PoolId, osd: OsdId) -> u32 {
    holding(s, pool, osd)[0].0
}

fn first_pg_not_holding(s: &ClusterState, pool: PoolId, osd: OsdId) -> u32 {
    pgs(s, pool)
        .into_iter()
        .find(|(_, p)| !p.members.contains(&osd))
        .expect("a PG without the OSD")
        .0
        .0
}

/// Out X and remap its PGs; returns the id of one of them.
fn remapped() -> (ClusterState, PoolId, u32) {
    let (mut s, p) = active_pool();
    run(&mut s, command::OsdOut { id: X });
    refresh(&mut s, p);
    let id = first_pg_holding(&s, p, X);
    assert!(pg(&s, p, id).target.is_some());
    (s, p, id)
}

// ---- LeaderBeElected: refusals ----------------------------------------------------------------

#[test]
fn leader_be_elected_refuses_unknown_pools_and_pgs() {
    let (mut s, p) = active_pool();
    let m = pg(&s, p, 0).members;
    refuse(
        &mut s,
        elect(m[0], PoolId(9), 0, &m, &[]),
        ClusterError::PoolNotFound(PoolId(9)),
    );
    refuse(
        &mut s,
        elect(m[0], p, 64, &m, &[]),
        ClusterError::PgNotFound {
            pool: p,
            pg: PgId(64),
        },
    );
}

#[test]
fn leader_be_elected_refuses_bad_member_lists() {
    let (mut s, p) = active_pool();
    let m = pg(&s, p, 0).members;
    let cases = [
        (vec![], vec![]),
        (vec![m[0], m[1], m[0]], vec![]),
        (vec![m[0], OsdId(99)], vec![]),
        (vec![m[0], OsdId(0)], vec![]),
        (m.clone(), vec![m[1], m[1]]),
        (m.clone(), vec![OsdId(99)]),
    ];
    for (members, new) in cases {
        let e = refuse_any(&mut s, elect(m[0], p, 0, &members, &new));
        assert!(
            matches!(e, ClusterError::InvalidMembers(_)),
            "{members:?} {new:?}: {e:?}"
        );
    }
}

#[test]
fn the_leader_must_be_a_member_or_a_new_member() {
    let (mut s, p) = active_pool();
    let m = pg(&s, p, 0).members;
    let stranger = (1..=6).map(OsdId).find(|o| !m.contains(o)).unwrap();
    refuse(
        &mut s,
        elect(stranger, p, 0, &m, &[]),
        ClusterError::LeaderNotMember {
            leader: stranger,
            pool: p,
            pg: PgId(0),
        },
    );
    // A leader among the new members of the change in progress is fine.
    run(&mut s, command::OsdOut { id: m[1] });
    refresh(&mut s, p);
    let target = pg(&s, p, 0).target.expect("remapped").members;
    let newcomer = *target.iter().find(|o| !m.contains(o)).unwrap();
    run(&mut s, elect(newcomer, p, 0, &m, &target));
    assert_eq!(pg(&s, p, 0).leader, Some(newcomer));
}

// ---- forged reports: who may report, and what --------------------------------------------------

/// A pool of 64 size-3 PGs on `cluster(6, 3)`, still creating: each PG has three outsiders.
fn creating_pool() -> (ClusterState, PoolId) {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 64, "host");
    (s, p)
}

/// The OSDs of `cluster(6, 3)` a PG does not involve (neither member nor target member).
fn outsiders(s: &ClusterState, pool: PoolId, id: u32) -> Vec<OsdId> {
    let g = pg(s, pool, id);
    (1..=6).map(OsdId).filter(|o| !g.involves(*o)).collect()
}

/// The refusal of a report whose lists are not those of `g`, PG `id` as the monitor holds it.
fn not_held(g: &Pg, pool: PoolId, id: u32, reported: String) -> ClusterError {
    let held = match &g.target {
        Some(t) => format!("members {}, target {}", list(&g.members), list(&t.members)),
        None => format!("members {}, no change in progress", list(&g.members)),
    };
    ClusterError::MembersNotHeld {
        pool,
        pg: PgId(id),
        reported,
        held,
    }
}

fn not_member(leader: OsdId, pool: PoolId, pg: u32) -> ClusterError {
    ClusterError::LeaderNotMember {
        leader,
        pool,
        pg: PgId(pg),
    }
}

#[test]
fn outsiders_cannot_report_themselves_leader_with_any_list() {
    // The case: the three OSDs a creating PG does not involve report it with
    // osd_list = themselves. Each is refused and the PG stays creating, no epoch moves.
    let (mut s, p) = creating_pool();
    let m = pg(&s, p, 1).members;
    let out = outsiders(&s, p, 1);
    assert_eq!(out.len(), 3);
    for &o in &out {
        refuse(&mut s, elect(o, p, 1, &out, &[]), not_member(o, p, 1));
        // Told LEADER_NOT_MEMBER with the true list, it is refused with a false one too...
        refuse(&mut s, elect(o, p, 1, &m, &[]), not_member(o, p, 1));
        let mut swapped = m.clone();
        swapped[2] = o;
        refuse(&mut s, elect(o, p, 1, &swapped, &[]), not_member(o, p, 1));
        // ...and as a new member of a change the monitor never asked for.
        refuse(&mut s, elect(o, p, 1, &m, &[o]), not_member(o, p, 1));
    }
    assert_eq!(pg(&s, p, 1).state, PgState::CREATING);
    assert_eq!(pg(&s, p, 1).leader, None);
}

#[test]
fn a_member_must_report_the_members_the_monitor_holds() {
    let (mut s, p) = creating_pool();
    let held = pg(&s, p, 1);
    let m = held.members.clone();
    let out = outsiders(&s, p, 1);
    let forged = [m[0], out[0], out[1]];
    refuse(
        &mut s,
        elect(m[0], p, 1, &forged, &[]),
        not_held(&held, p, 1, format!("members {}", list(&forged))),
    );
    // A subset is not the list.
    refuse(
        &mut s,
        elect(m[0], p, 1, &m[..2], &[]),
        not_held(&held, p, 1, format!("members {}", list(&m[..2]))),
    );
    // New members of a change the monitor never asked for.
    refuse(
        &mut s,
        elect(m[0], p, 1, &m, &out),
        not_held(
            &held,
            p,
            1,
            format!("members {} with new members {}", list(&m), list(&out)),
        ),
    );
    // More OSDs than any PG has are refused before anything is looked up or echoed.
    let long: Vec<OsdId> = (1..=17).map(OsdId).collect();
    refuse(
        &mut s,
        elect(m[0], p, 1, &long, &[]),
        ClusterError::InvalidMembers("17 OSDs listed; a PG has at most 16".to_string()),
    );
    // The true list in any order is the list: accepted, and the monitor's order stays.
    let mut reordered = m.clone();
    reordered.reverse();
    run(&mut s, elect(m[0], p, 1, &reordered, &[]));
    assert_eq!(pg(&s, p, 1).members, m);
    assert_eq!(pg(&s, p, 1).state, PgState::ACTIVE);
}

#[test]
fn only_an_up_osd_may_report_itself_leader() {
    let (mut s, p) = creating_pool();
    let m = pg(&s, p, 1).members;
    refuse(
        &mut s,
        elect(OsdId(99), p, 1, &m, &[]),
        ClusterError::OsdNotFound(OsdId(99)),
    );
    // An OSD that was given an id but never booted, with the true list or one naming it.
    let never = apply_id(&mut s, &uuid(40));
    refuse(
        &mut s,
        elect(never, p, 1, &m, &[]),
        ClusterError::ReporterNotUp(never),
    );
    refuse(
        &mut s,
        elect(never, p, 1, &[never, m[1], m[2]], &[]),
        ClusterError::ReporterNotUp(never),
    );
    // Members that are down (failure detector), stopped, or held down by noup.
    run(&mut s, command::MarkDown { ids: vec![m[0]] });
    run(&mut s, command::OsdStop { id: m[1] });
    run(&mut s, command::SetFlag(ClusterFlag::NoUp));
    run(&mut s, command::OsdStop { id: m[2] });
    run(&mut s, reboot(m[2].0, 3, 2));
    assert!(matches!(
        osd(&s, m[2].0).liveness,
        crate::cluster::Liveness::HeldDown { .. }
    ));
    for member in m.iter().copied() {
        refuse(
            &mut s,
            elect(member, p, 1, &m, &[]),
            ClusterError::ReporterNotUp(member),
        );
    }
    assert_eq!(pg(&s, p, 1).state, PgState::CREATING);
}

#[test]
fn reports_on_a_remapped_pg_name_its_members_or_its_target() {
    let (mut s, p, id) = remapped();
    let current = pg(&s, p, id);
    let target = current.target.clone().unwrap().members;
    let kept = *target.iter().find(|o| current.members.contains(o)).unwrap();
    let newcomer = *target
        .iter()
        .find(|o| !current.members.contains(o))
        .unwrap();
    // New members other than the target.
    let partial = [kept, newcomer];
    refuse(
        &mut s,
        elect(kept, p, id, &current.members, &partial),
        not_held(
            &current,
            p,
            id,
            format!(
                "members {} with new members {}",
                list(&current.members),
                list(&partial)
            ),
        ),
    );
    // The target as the members while a change is still said to run.
    refuse(
        &mut s,
        elect(kept, p, id, &target, &current.members),
        not_held(
            &current,
            p,
            id,
            format!(
                "members {} with new members {}",
                list(&target),
                list(&current.members)
            ),
        ),
    );
    // A target member is not in the raft group before the change starts...
    refuse(
        &mut s,
        elect(newcomer, p, id, &current.members, &[]),
        not_member(newcomer, p, id),
    );
    // ...and the leaving member is not in it once the change is done.
    refuse(&mut s, elect(X, p, id, &target, &[]), not_member(X, p, id));
    assert!(pg(&s, p, id).state.contains(PgState::REMAPPED));
}

#[test]
fn member_change_finish_needs_an_up_reporter_holding_the_pg() {
    let (mut s, p, id) = remapped();
    let current = pg(&s, p, id);
    let target = current.target.clone().unwrap().members;
    let newcomer = *target
        .iter()
        .find(|o| !current.members.contains(o))
        .unwrap();
    let outsider = outsiders(&s, p, id)[0];
    refuse(
        &mut s,
        finish_by(None, 0, p, id, &target),
        ClusterError::ReporterMissing,
    );
    refuse(
        &mut s,
        finish_by(Some(OsdId(99)), 0, p, id, &target),
        ClusterError::OsdNotFound(OsdId(99)),
    );
    // An outsider can neither finish the change nor fail it.
    refuse(
        &mut s,
        finish_by(Some(outsider), 0, p, id, &target),
        not_member(outsider, p, id),
    );
    refuse(
        &mut s,
        finish_by(Some(outsider), -5, p, id, &[]),
        not_member(outsider, p, id),
    );
    let never = apply_id(&mut s, &uuid(40));
    refuse(
        &mut s,
        finish_by(Some(never), 0, p, id, &target),
        ClusterError::ReporterNotUp(never),
    );
    run(
        &mut s,
        command::MarkDown {
            ids: vec![newcomer],
        },
    );
    refuse(
        &mut s,
        finish_by(Some(newcomer), 0, p, id, &target),
        ClusterError::ReporterNotUp(newcomer),
    );
    assert_eq!(pg(&s, p, id).change_failures, 0);
    // The leaving member, still up, may report the change it led.
    run(&mut s, finish_by(Some(X), 0, p, id, &target));
    assert_eq!(pg(&s, p, id).members, target);
    assert_eq!(pg(&s, p, id).target, None);
}

// ---- LeaderBeElected: success -----------------------------------------------------------------

#[test]
fn a_first_leader_report_makes_a_creating_pg_active() {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 300, "host");
    let m = pg(&s, p, 257).members;
    let before = pg(&s, p, 0);
    let a = run(&mut s, elect(m[1], p, 257, &m, &[]));
    assert_eq!(get_pool(&s, p).epoch, Epoch(2));
    let after = pg(&s, p, 257);
    assert_eq!(after.state, PgState::ACTIVE);
    assert_eq!(after.version, Epoch(2));
    assert_eq!(after.leader, Some(m[1]));
    assert_eq!(after.members, m, "the members do not move");
    assert_eq!(
        a.reply,
        reply::Pg {
            pool_epoch: Epoch(2),
            state: PgState::ACTIVE.0,
            version: Epoch(2)
        }
    );
    assert!(a.touched.contains(&RecordKey::Pool(p)));
    assert!(a.touched.contains(&RecordKey::PgChunk(p, 1)));
    assert!(!a.touched.contains(&RecordKey::PgChunk(p, 0)));
    assert_eq!(pg(&s, p, 0), before, "other PGs are untouched");
    assert_eq!(pg(&s, p, 0).state, PgState::CREATING);
}

#[test]
fn a_leader_report_with_one_of_three_down_gives_active_undersize() {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 16, "host");
    let m = pg(&s, p, 0).members;
    run(&mut s, command::MarkDown { ids: vec![m[2]] });
    run(&mut s, elect(m[0], p, 0, &m, &[]));
    assert_eq!(pg(&s, p, 0).state, PgState::ACTIVE.with(PgState::UNDERSIZE));
}

#[test]
fn a_leader_report_with_two_of_three_down_gives_down() {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 16, "host");
    let m = pg(&s, p, 0).members;
    run(
        &mut s,
        command::MarkDown {
            ids: vec![m[1], m[2]],
        },
    );
    run(&mut s, elect(m[0], p, 0, &m, &[]));
    assert_eq!(pg(&s, p, 0).state, PgState::DOWN);
}

#[test]
fn the_same_leader_report_twice_is_a_no_op() {
    let (mut s, p) = active_pool();
    let m = pg(&s, p, 3).members;
    run(&mut s, elect(m[1], p, 3, &m, &[]));
    let epoch = get_pool(&s, p).epoch;
    let a = assert_no_op(&mut s, elect(m[1], p, 3, &m, &[]));
    assert_eq!(get_pool(&s, p).epoch, epoch);
    assert!(matches!(a.reply, reply::Pg { pool_epoch, .. } if pool_epoch == epoch));
    // A new leader is a change.
    run(&mut s, elect(m[2], p, 3, &m, &[]));
    assert_eq!(get_pool(&s, p).epoch, epoch.next());
    assert_eq!(pg(&s, p, 3).leader, Some(m[2]));
}

#[test]
fn leader_reports_in_one_group_bump_the_pool_once() {
    let mut s = cluster(6, 3);
    let p = pool(&mut s, "rbd", 3, 8, "host");
    let other = pool(&mut s, "other", 3, 8, "host");
    elect_all(&mut s, p);
    assert_eq!(get_pool(&s, p).epoch, Epoch(2));
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.version, Epoch(2));
    }
    assert_eq!(
        get_pool(&s, other).epoch,
        Epoch(1),
        "pool epochs are per pool"
    );
}

// ---- the remap flow ---------------------------------------------------------------------------

#[test]
fn an_out_osd_gets_exactly_its_pgs_remapped() {
    let (mut s, p) = active_pool();
    let before: Vec<_> = pgs(&s, p);
    let epoch = get_pool(&s, p).epoch;
    let osdmap = s.osdmap_epoch();
    run(&mut s, command::OsdOut { id: X });
    assert_eq!(s.osdmap_epoch(), osdmap.next());
    assert_eq!(get_pool(&s, p).epoch, epoch, "the out alone changes no PG");

    let expected = holding(&s, p, X);
    assert!(!expected.is_empty());
    assert_eq!(s.pgs_needing_refresh(p, usize::MAX), expected);
    assert_eq!(s.pgs_needing_refresh(p, 2), expected[..2].to_vec());

    // Refresh every PG: only the ones holding X change.
    let all: Vec<PgId> = before.iter().map(|(id, _)| *id).collect();
    let a = run(&mut s, command::RefreshPgs { pool: p, pgs: all });
    assert_eq!(
        a.reply,
        reply::Refreshed {
            changed: expected.len()
        }
    );
    let new_epoch = get_pool(&s, p).epoch;
    assert_eq!(new_epoch, epoch.next());
    for (id, old) in before {
        let now = pg(&s, p, id.0);
        if !expected.contains(&id) {
            assert_eq!(now, old, "{id} does not hold {X}");
            continue;
        }
        assert_eq!(
            now.members, old.members,
            "members move only when the OSDs say so"
        );
        assert_eq!(now.version, new_epoch);
        assert_eq!(now.state, PgState::ACTIVE.with(PgState::REMAPPED), "{id}");
        let target = now.target.clone().expect("a target");
        assert_eq!(target.core, old.core);
        // The out OSD is replaced; every other member stays, in order.
        assert!(!target.members.contains(&X));
        let kept: Vec<OsdId> = old.members.iter().copied().filter(|m| *m != X).collect();
        let target_kept: Vec<OsdId> = target
            .members
            .iter()
            .copied()
            .filter(|m| old.members.contains(m))
            .collect();
        assert_eq!(
            target_kept, kept,
            "{id}: {:?} → {:?}",
            old.members, target.members
        );
        let new: Vec<_> = target
            .members
            .iter()
            .filter(|m| !old.members.contains(m))
            .collect();
        assert_eq!(new.len(), 1, "{:?} → {:?}", old.members, target.members);
        assert_valid_placement(&s, p, &target.members);
        assert!(a.touched.contains(&RecordKey::PgChunk(p, 0)));
    }
    assert!(s.pgs_needing_refresh(p, usize::MAX).is_empty());
    // Refreshing again changes nothing.
    let all: Vec<PgId> = pgs(&s, p).iter().map(|(id, _)| *id).collect();
    assert_no_op(&mut s, command::RefreshPgs { pool: p, pgs: all });
}

#[test]
fn refresh_pgs_refuses_an_unknown_pool_and_skips_unknown_pgs() {
    let (mut s, p) = active_pool();
    refuse(
        &mut s,
        command::RefreshPgs {
            pool: PoolId(9),
            pgs: vec![PgId(0)],
        },
        ClusterError::PoolNotFound(PoolId(9)),
    );
    assert_no_op(
        &mut s,
        command::RefreshPgs {
            pool: p,
            pgs: vec![PgId(64), PgId(u32::MAX)],
        },
    );
    assert!(s.pgs_needing_refresh(PoolId(9), 10).is_empty());
}

#[test]
fn member_change_finish_on_a_pg_without_target_is_refused() {
    let (mut s, p, _) = remapped();
    let id = first_pg_not_holding(&s, p, X);
    let m = pg(&s, p, id).members;
    refuse(
        &mut s,
        finish(0, p, id, &m),
        ClusterError::PgNotRemapped {
            pool: p,
            pg: PgId(id),
        },
    );
    refuse(
        &mut s,
        finish(0, PoolId(9), id, &m),
        ClusterError::PoolNotFound(PoolId(9)),
    );
    refuse(
        &mut s,
        finish(0, p, 64, &m),
        ClusterError::PgNotFound {
            pool: p,
            pg: PgId(64),
        },
    );
}

#[test]
fn member_change_finish_with_other_members_than_the_target_is_refused() {
    let (mut s, p, id) = remapped();
    let current = pg(&s, p, id);
    let target = current.target.clone().unwrap().members;
    refuse(
        &mut s,
        finish(0, p, id, &current.members),
        ClusterError::MembersMismatch {
            pool: p,
            pg: PgId(id),
            reported: list(&current.members),
            target: list(&target),
        },
    );
    // A subset of the target is not the target.
    refuse(
        &mut s,
        finish(0, p, id, &target[..2]),
        ClusterError::MembersMismatch {
            pool: p,
            pg: PgId(id),
            reported: list(&target[..2]),
            target: list(&target),
        },
    );
    let e = refuse_any(&mut s, finish(0, p, id, &[]));
    assert!(matches!(e, ClusterError::InvalidMembers(_)), "{e:?}");
    let e = refuse_any(&mut s, finish(0, p, id, &[target[0], target[0], target[1]]));
    assert!(matches!(e, ClusterError::InvalidMembers(_)), "{e:?}");
}

#[test]
fn a_long_reported_member_list_is_refused_without_quoting_it() {
    // More members than a PG can have: refused by its length before it is compared or quoted.
    let (mut s, p, id) = remapped();
    let mut all: Vec<OsdId> = s.osds().map(|o| o.id).collect();
    for n in 100..140 {
        all.push(apply_id(&mut s, &uuid(n)));
    }
    assert!(list(&all).len() > crate::cluster::ECHO_BYTES);
    let e = refuse_any(&mut s, finish(0, p, id, &all));
    assert_eq!(
        e,
        ClusterError::InvalidMembers(format!("{} OSDs listed; a PG has at most 16", all.len()))
    );
}

#[test]
fn member_change_finish_success_adopts_the_target() {
    let (mut s, p, id) = remapped();
    let target = pg(&s, p, id).target.unwrap();
    let epoch = get_pool(&s, p).epoch;
    // The OSDs may list the members in any order.
    let mut reported = target.members.clone();
    reported.reverse();
    let a = run(&mut s, finish(0, p, id, &reported));
    let now = pg(&s, p, id);
    assert_eq!(
        now.members, target.members,
        "the planned order (primary first) is kept"
    );
    assert_eq!(now.core, target.core);
    assert_eq!(now.target, None);
    assert_eq!(now.state, PgState::ACTIVE);
    assert_eq!(now.change_failures, 0);
    assert_eq!(now.version, epoch.next());
    assert_eq!(
        a.reply,
        reply::Pg {
            pool_epoch: epoch.next(),
            state: PgState::ACTIVE.0,
            version: epoch.next()
        }
    );
    assert!(!s.pgs_needing_refresh(p, usize::MAX).contains(&PgId(id)));
    // A second finish: the change is over.
    refuse(
        &mut s,
        finish(0, p, id, &reported),
        ClusterError::PgNotRemapped {
            pool: p,
            pg: PgId(id),
        },
    );
}

#[test]
fn a_failed_member_change_stays_remapped_and_is_made_visible() {
    let (mut s, p, id) = remapped();
    let before = pg(&s, p, id);
    for attempt in 1..=2 {
        let epoch = get_pool(&s, p).epoch;
        let a = run(&mut s, finish(-5, p, id, &before.members));
        let now = pg(&s, p, id);
        assert_eq!(now.target, before.target);
        assert_eq!(now.members, before.members);
        assert!(now.state.contains(PgState::REMAPPED));
        assert_eq!(now.change_failures, attempt);
        assert_eq!(
            now.version,
            epoch.next(),
            "each failure is a visible change"
        );
        assert!(a.touched.contains(&RecordKey::Pool(p)));
    }
    // A failure may report no members at all.
    run(&mut s, finish_by(Some(before.members[0]), 1, p, id, &[]));
    assert_eq!(pg(&s, p, id).change_failures, 3);
    // Success resets the count.
    let target = before.target.unwrap().members;
    run(&mut s, finish(0, p, id, &target));
    assert_eq!(pg(&s, p, id).change_failures, 0);
}

#[test]
fn a_leader_report_of_the_target_members_adopts_the_target() {
    let (mut s, p, id) = remapped();
    let target = pg(&s, p, id).target.unwrap();
    let mut reported = target.members.clone();
    reported.rotate_left(1);
    run(&mut s, elect(reported[0], p, id, &reported, &[]));
    let now = pg(&s, p, id);
    assert_eq!(now.members, target.members);
    assert_eq!(now.target, None);
    assert_eq!(now.state, PgState::ACTIVE);
    assert_eq!(now.leader, Some(reported[0]));
}

#[test]
fn a_leader_report_during_the_change_keeps_the_target() {
    let (mut s, p, id) = remapped();
    let before = pg(&s, p, id);
    let target = before.target.clone().unwrap().members;
    let leader = before.members[1];
    run(&mut s, elect(leader, p, id, &before.members, &target));
    let now = pg(&s, p, id);
    assert_eq!(now.target, before.target);
    assert!(now.state.contains(PgState::REMAPPED));
    assert_eq!(now.leader, Some(leader));
}

#[test]
fn marking_the_out_osd_in_again_aborts_the_change_at_the_next_leader_report() {
    let (mut s, p, id) = remapped();
    run(&mut s, command::OsdIn { id: X });
    let m = pg(&s, p, id).members;
    assert!(m.contains(&X));
    run(&mut s, elect(m[0], p, id, &m, &[]));
    let now = pg(&s, p, id);
    assert_eq!(now.target, None);
    assert_eq!(now.members, m);
    assert_eq!(now.state, PgState::ACTIVE);
    assert_eq!(now.change_failures, 0);
    assert!(!s.pgs_needing_refresh(p, usize::MAX).contains(&PgId(id)));
}

#[test]

fn marking_the_out_osd_in_does_not_abort_a_change_already_in_flight() {
    let (mut s, p, id) = remapped();
    let before = pg(&s, p, id);
    let target = before.target.clone().unwrap();
    run(&mut s, command::OsdIn { id: X });
    // The raft group is in joint consensus: the old members plus the target as new members.
    // The monitor cannot call that change off any more; the OSDs will finish it.
    let leader = before.members[0];
    run(
        &mut s,
        elect(leader, p, id, &before.members, &target.members),
    );
    assert_eq!(
        pg(&s, p, id).target,
        Some(target.clone()),
        "the target was dropped while the OSDs were applying it"
    );
    // Today the abort makes this finish fail with PgNotRemapped, and the monitor's members
    // never learn the real raft membership.
    run(&mut s, finish(0, p, id, &target.members));
    assert_eq!(pg(&s, p, id).members, target.members);
}

#[test]

fn moving_an_osd_into_the_host_of_another_member_remaps_its_pgs() {
    let (mut s, p) = active_pool();
    let m = pg(&s, p, 0).members;
    let host_of_b = osd(&s, m[1].0).location.host.clone();
    run(
        &mut s,
        command::SetLocation {
            id: m[0],
            host: Some(host_of_b),
            rack: None,
            root: None,
        },
    );
    // PG 0 now has two replicas on one host.
    assert!(s.pgs_needing_refresh(p, usize::MAX).contains(&PgId(0)));
    refresh(&mut s, p);
    let target = pg(&s, p, 0).target.expect("remapped").members;
    assert_valid_placement(&s, p, &target);
}

#[test]

fn moving_an_osd_to_another_root_remaps_its_pgs() {
    let (mut s, p) = active_pool();
    let held = holding(&s, p, X);
    run(
        &mut s,
        command::SetLocation {
            id: X,
            host: None,
            rack: None,
            root: Some("ssd".to_string()),
        },
    );
    assert_eq!(s.pgs_needing_refresh(p, usize::MAX), held);
    refresh(&mut s, p);
    for id in held {
        let target = pg(&s, p, id.0).target.expect("remapped").members;
        assert!(!target.contains(&X));
        assert_valid_placement(&s, p, &target);
    }
}

#[test]
fn an_osd_going_down_degrades_exactly_its_pgs() {
    let (mut s, p) = active_pool();
    let before = pgs(&s, p);
    let epoch = get_pool(&s, p).epoch;
    let y = OsdId(2);
    run(&mut s, command::MarkDown { ids: vec![y] });
    let expected = holding(&s, p, y);
    assert_eq!(s.pgs_needing_refresh(p, usize::MAX), expected);
    assert_eq!(refresh(&mut s, p), expected.len());
    for (id, old) in before {
        let now = pg(&s, p, id.0);
        if expected.contains(&id) {
            assert_eq!(now.state, PgState::ACTIVE.with(PgState::UNDERSIZE));
            assert_eq!(now.members, old.members, "down is not out");
            assert_eq!(now.target, None);
            assert_eq!(now.version, epoch.next());
        } else {
            assert_eq!(now, old);
        }
    }
    // A second down OSD in the same PG makes it down.
    let id = expected[0];
    let other = *pg(&s, p, id.0).members.iter().find(|m| **m != y).unwrap();
    run(&mut s, command::MarkDown { ids: vec![other] });
    refresh(&mut s, p);
    assert_eq!(pg(&s, p, id.0).state, PgState::DOWN);
    // Back up: healthy again.
    run(
        &mut s,
        command::MarkUp {
            id: other,
            instance: 1,
        },
    );
    run(&mut s, command::MarkUp { id: y, instance: 1 });
    refresh(&mut s, p);
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.state, PgState::ACTIVE);
    }
}

#[test]
fn a_stopped_osd_degrades_its_pgs_and_its_auto_out_remaps_them() {
    let (mut s, p) = active_pool();
    let y = OsdId(2);
    run(&mut s, command::OsdStop { id: y });
    refresh(&mut s, p);
    let held = holding(&s, p, y);
    for id in &held {
        assert_eq!(
            pg(&s, p, id.0).state,
            PgState::ACTIVE.with(PgState::UNDERSIZE)
        );
    }
    run(
        &mut s,
        command::MarkOut {
            ids: vec![y],
            guards: NO_GUARDS,
        },
    );
    assert_eq!(s.pgs_needing_refresh(p, usize::MAX), held);
    refresh(&mut s, p);
    for id in &held {
        let now = pg(&s, p, id.0);
        assert_eq!(
            now.state,
            PgState::ACTIVE
                .with(PgState::UNDERSIZE)
                .with(PgState::REMAPPED)
        );
        let target = now.target.unwrap().members;
        assert!(!target.contains(&y));
        assert_valid_placement(&s, p, &target);
    }
}

#[test]
fn a_second_out_waits_for_the_first_change_to_finish() {
    let (mut s, p, id) = remapped();
    let first = pg(&s, p, id);
    let first_target = first.target.clone().unwrap();
    // Out a member that the first target keeps.
    let y = *first_target
        .members
        .iter()
        .find(|m| first.members.contains(m))
        .unwrap();
    run(&mut s, command::OsdOut { id: y });
    assert!(
        !s.pgs_needing_refresh(p, usize::MAX).contains(&PgId(id)),
        "a remapped PG is not remapped again"
    );
    run(
        &mut s,
        command::RefreshPgs {
            pool: p,
            pgs: vec![PgId(id)],
        },
    );
    assert_eq!(
        pg(&s, p, id).target,
        Some(first_target.clone()),
        "the first target stays"
    );
    // The first change finishes; the second one starts at the next refresh.
    run(&mut s, finish(0, p, id, &first_target.members));
    assert_eq!(pg(&s, p, id).members, first_target.members);
    assert!(s.pgs_needing_refresh(p, usize::MAX).contains(&PgId(id)));
    refresh(&mut s, p);
    let second = pg(&s, p, id).target.expect("remapped again").members;
    assert!(!second.contains(&y) && !second.contains(&X));
    assert_valid_placement(&s, p, &second);
    let kept: Vec<OsdId> = first_target
        .members
        .iter()
        .copied()
        .filter(|m| *m != y)
        .collect();
    assert!(kept.iter().all(|m| second.contains(m)));
}

#[test]
fn after_every_change_finishes_an_out_osd_can_be_purged() {
    let (mut s, p) = active_pool();
    run(&mut s, command::OsdOut { id: X });
    refresh(&mut s, p);
    for (id, pg) in pgs(&s, p) {
        if let Some(t) = pg.target {
            run(&mut s, finish(0, p, id.0, &t.members));
        }
    }
    assert!(holding(&s, p, X).is_empty());
    run(&mut s, command::OsdStop { id: X });
    run(&mut s, command::Purge { id: X });
    assert!(s.osd(X).is_none());
    for (_, pg) in pgs(&s, p) {
        assert_valid_placement(&s, p, &pg.members);
    }
}

#[test]
fn without_a_spare_domain_an_out_osd_is_not_replaced_and_the_size_is_kept() {
    let mut s = cluster(3, 3);
    let p = pool(&mut s, "rbd", 3, 8, "host");
    elect_all(&mut s, p);
    run(&mut s, command::OsdOut { id: X });
    refresh(&mut s, p);
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.target, None, "no OSD can take its place");
        assert_eq!(pg.members.len(), 3, "the size is never reduced");
        assert_eq!(pg.state, PgState::ACTIVE, "X still serves");
    }
    // Stopped: undersize until the domain is refilled.
    run(&mut s, command::OsdStop { id: X });
    refresh(&mut s, p);
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.state, PgState::ACTIVE.with(PgState::UNDERSIZE));
    }
    // A new OSD on X's host refills it.
    let id = apply_id(&mut s, &uuid(40));
    run(&mut s, boot(id.0, 40, 1, 1));
    refresh(&mut s, p);
    for (_, pg) in pgs(&s, p) {
        let target = pg.target.expect("remapped onto the new OSD").members;
        assert!(target.contains(&id));
        assert_valid_placement(&s, p, &target);
    }
}

#[test]
fn a_refresh_changes_at_most_one_batch() {
    let mut s = cluster(2, 2);
    let p = pool(&mut s, "p", 1, 600, "osd");
    run(&mut s, command::MarkDown { ids: ids(&[1, 2]) });
    let all = s.pgs_needing_refresh(p, usize::MAX);
    assert_eq!(all.len(), 600);
    let a = run(&mut s, command::RefreshPgs { pool: p, pgs: all });
    assert_eq!(
        a.reply,
        reply::Refreshed {
            changed: REFRESH_BATCH
        }
    );
    assert_eq!(
        s.pgs_needing_refresh(p, usize::MAX).len(),
        600 - REFRESH_BATCH
    );
}

#[test]
fn remapping_never_targets_out_osds() {
    let mut s = cluster(9, 3);
    let p = pool(&mut s, "rbd", 3, 128, "host");
    elect_all(&mut s, p);
    // Two OSDs of the same host go out one after the other, finishing in between.
    for out in [OsdId(1), OsdId(4)] {
        run(&mut s, command::OsdOut { id: out });
        refresh(&mut s, p);
        for (id, pg) in pgs(&s, p) {
            if let Some(t) = pg.target {
                assert_valid_placement(&s, p, &t.members);
                run(&mut s, finish(0, p, id.0, &t.members));
            }
        }
    }
    let used: HashSet<OsdId> = pgs(&s, p)
        .iter()
        .flat_map(|(_, pg)| pg.members.clone())
        .collect();
    assert!(!used.contains(&OsdId(1)) && !used.contains(&OsdId(4)));
    assert!(
        used.contains(&OsdId(7)),
        "the host's last OSD holds its replicas"
    );
}

// ---- records ----------------------------------------------------------------------------------

#[test]
fn records_round_trip_with_every_kind_of_entity() {
    let mut store = Store::default();
    let mut s = ClusterState::default();
    // Seven OSDs on four hosts; 7 never boots.
    for i in 1..=7u32 {
        store.step(
            &mut s,
            command::ApplyId {
                uuid: uuid(i.into()),
            },
        );
    }
    for i in 1..=6u32 {
        store.step(&mut s, boot(i, i.into(), i % 4, 1));
    }
    store.step(
        &mut s,
        command::SetLocation {
            id: OsdId(1),
            host: None,
            rack: Some("r1".to_string()),
            root: None,
        },
    );
    store.step(
        &mut s,
        command::SetWeight {
            id: OsdId(2),
            weight: 2.5,
        },
    );
    store.step(
        &mut s,
        command::CreatePool(pool_args("rbd", 3, 300, "host")),
    );
    store.step(&mut s, command::CreatePool(pool_args("gone", 2, 20, "osd")));
    store.step(&mut s, command::CreatePool(pool_args("small", 1, 4, "osd")));
    for (pool, name) in [
        ("rbd", "vm1"),
        ("rbd", "vm2"),
        ("gone", "vm1"),
        ("small", "x"),
    ] {
        store.step(
            &mut s,
            command::CreateImage {
                pool: pool.to_string(),
                name: name.to_string(),
                size: 1 << 30,
                object_size: 1 << 16,
            },
        );
    }
    store.step(
        &mut s,
        command::ResizeImage {
            pool: "rbd".to_string(),
            name: "vm1".to_string(),
            size: 2 << 30,
            allow_shrink: false,
        },
    );
    store.step(
        &mut s,
        command::RemoveImage {
            pool: "rbd".to_string(),
            name: "vm2".to_string(),
        },
    );
    store.step(
        &mut s,
        command::DeletePool {
            name: "gone".to_string(),
        },
    );
    let rbd = s.pool_by_name("rbd").unwrap().id;
    for (id, pg) in pgs(&s, rbd).into_iter().take(40) {
        store.step(&mut s, elect(pg.members[0], rbd, id.0, &pg.members, &[]));
    }
    // osd.3 goes out by hand: its PGs are remapped; one change fails once, one finishes.
    store.step(&mut s, command::OsdOut { id: OsdId(3) });
    let remapped = s.pgs_needing_refresh(rbd, usize::MAX);
    store.step(
        &mut s,
        command::RefreshPgs {
            pool: rbd,
            pgs: remapped.clone(),
        },
    );
    let failing = pg(&s, rbd, remapped[0].0);
    store.step(&mut s, finish(7, rbd, remapped[0].0, &failing.members));
    let done = pg(&s, rbd, remapped[1].0).target.unwrap();
    store.step(&mut s, finish(0, rbd, remapped[1].0, &done.members));
    // osd.4 is auto-out, osd.5 stopped, a new osd.8 deferred by noin, osd.6 held down by noup.
    store.step(
        &mut s,
        command::MarkDown {
            ids: vec![OsdId(4)],
        },
    );
    store.step(
        &mut s,
        command::MarkOut {
            ids: vec![OsdId(4)],
            guards: NO_GUARDS,
        },
    );
    store.step(&mut s, command::OsdStop { id: OsdId(5) });
    store.step(&mut s, command::SetFlag(ClusterFlag::NoIn));
    store.step(&mut s, command::ApplyId { uuid: uuid(8) });
    store.step(&mut s, boot(8, 8, 3, 1));
    store.step(&mut s, command::OsdStop { id: OsdId(6) });
    store.step(&mut s, command::SetFlag(ClusterFlag::NoUp));
    store.step(&mut s, boot(6, 6, 2, 2));
    let list = s.pgs_needing_refresh(rbd, usize::MAX);
    store.step(
        &mut s,
        command::RefreshPgs {
            pool: rbd,
            pgs: list,
        },
    );
    // An OSD purged after its PGs left it.
    store.step(&mut s, command::ApplyId { uuid: uuid(9) });
    store.step(&mut s, command::Purge { id: OsdId(9) });

    // Every kind of entity is in the state that round-tripped.
    assert!(s.tombstone(PoolId(2)).is_some());
    assert!(matches!(
        osd(&s, 6).liveness,
        crate::cluster::Liveness::HeldDown { .. }
    ));
    assert!(matches!(
        osd(&s, 4).membership,
        crate::cluster::Membership::Out {
            reason: crate::cluster::OutReason::Auto,
            ..
        }
    ));
    assert!(matches!(
        osd(&s, 3).membership,
        crate::cluster::Membership::Out {
            reason: crate::cluster::OutReason::Manual,
            ..
        }
    ));
    assert!(matches!(
        osd(&s, 8).membership,
        crate::cluster::Membership::Out {
            reason: crate::cluster::OutReason::DeferredByNoIn,
            ..
        }
    ));
    assert_eq!(osd(&s, 7).liveness, crate::cluster::Liveness::New);
    assert_eq!(pg(&s, rbd, remapped[0].0).change_failures, 1);
    assert!(pg(&s, rbd, remapped[0].0).state.contains(PgState::REMAPPED));
    assert!(s.flags().contains(ClusterFlag::NoIn));
    assert_eq!(s.core_num(), Some(2));
    assert!(
        store
            .blob(crate::cluster::BlobKey::OsdConfig(OsdId(1)))
            .is_some()
    );
    assert!(
        store
            .blob(crate::cluster::BlobKey::OsdConfig(OsdId(9)))
            .is_none()
    );
    assert!(s.image_count() == 2);
}

#[test]
fn pgs_that_cannot_be_refilled_are_not_listed_for_remap() {
    // One OSD per host, size 3 over 3 hosts: with one host out, no replacement exists.
    let mut s = cluster(3, 3);
    let p = pool(&mut s, "rbd", 3, 16, "host");
    elect_all(&mut s, p);
    run(&mut s, command::OsdOut { id: X });
    // X is still up, so the health bits are right; a remap is impossible: nothing to do, and
    // the reconciler does not spin on these PGs.
    assert!(s.pgs_needing_refresh(p, usize::MAX).is_empty());
    // Once X is also down, the health bits change and are listed again.
    run(&mut s, command::MarkDown { ids: vec![X] });
    assert_eq!(s.pgs_needing_refresh(p, usize::MAX).len(), 16);
    assert_eq!(refresh(&mut s, p), 16);
    assert!(s.pgs_needing_refresh(p, usize::MAX).is_empty());
    for (_, pg) in pgs(&s, p) {
        assert_eq!(pg.state, PgState::ACTIVE.with(PgState::UNDERSIZE));
        assert!(
            pg.target.is_none(),
            "size never silently reduced, no impossible target"
        );
    }
}

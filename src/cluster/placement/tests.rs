//! Unit tests of placement, replacement and rebalancing, and helpers the property tests share.

mod proptests;

use std::collections::BTreeSet;

use super::super::pool::FailureDomain;
use super::super::topology::{TopoOsd, Topology};
use super::super::types::{OsdId, PgId, PoolId, Weight};
use super::*;

pub(super) fn osd(id: u32, host: &str, cores: u32) -> TopoOsd {
    TopoOsd {
        id: OsdId(id),
        weight: Weight::DEFAULT,
        host: host.to_string(),
        rack: None,
        root: "default".to_string(),
        core_num: cores,
    }
}

/// `hosts` hosts of `per_host` OSDs with 4 cores each, ids from 1.
pub(super) fn grid(hosts: u32, per_host: u32) -> Vec<TopoOsd> {
    (0..hosts * per_host)
        .map(|i| osd(i + 1, &format!("h{}", i / per_host), 4))
        .collect()
}

pub(super) fn spec(size: u32, pg_count: u32, fd: FailureDomain) -> PoolSpec {
    PoolSpec {
        size,
        pg_count,
        failure_domain: fd,
        root: "default".to_string(),
    }
}

/// Every hard invariant of one placement, with a message naming the broken one.
pub(super) fn check_valid(topo: &Topology, spec: &PoolSpec, p: &Placement) -> Result<(), String> {
    if p.members.len() != spec.size as usize {
        return Err(format!("{} members, size {}", p.members.len(), spec.size));
    }
    let mut ids = BTreeSet::new();
    let mut domains = BTreeSet::new();
    for m in &p.members {
        let o = topo.get(*m).ok_or(format!("{m} is not usable"))?;
        if o.root != spec.root {
            return Err(format!("{m} is under root {}, not {}", o.root, spec.root));
        }
        if !ids.insert(*m) {
            return Err(format!("{m} twice"));
        }
        if !domains.insert(o.domain(spec.failure_domain)) {
            return Err(format!(
                "two members in {:?}",
                o.domain(spec.failure_domain)
            ));
        }
        if p.core >= o.core_num {
            return Err(format!("core {} on {m} with {} cores", p.core, o.core_num));
        }
    }
    Ok(())
}

pub(super) fn assert_valid(topo: &Topology, spec: &PoolSpec, placements: &[Placement]) {
    for (i, p) in placements.iter().enumerate() {
        if let Err(e) = check_valid(topo, spec, p) {
            panic!("PG {i} {p:?}: {e}");
        }
    }
}

/// max/mean over the usable OSDs of `count` per unit of weight.
fn max_over_mean(topo: &Topology, count: impl Fn(OsdId) -> u64) -> f64 {
    let per_weight: Vec<f64> = topo
        .osds()
        .iter()
        .map(|o| count(o.id) as f64 / o.weight.as_f64())
        .collect();
    let mean = per_weight.iter().sum::<f64>() / per_weight.len() as f64;
    per_weight.iter().copied().fold(0.0, f64::max) / mean
}

/// The largest max−min of PGs per core within one OSD.
fn worst_core_spread(topo: &Topology, loads: &Loads) -> u64 {
    topo.osds()
        .iter()
        .map(|o| {
            let per_core: Vec<u64> = (0..o.core_num).map(|c| loads.core(o.id, c)).collect();
            per_core.iter().max().unwrap() - per_core.iter().min().unwrap()
        })
        .max()
        .unwrap_or(0)
}

fn indexed(placements: Vec<Placement>) -> Vec<(PgId, Placement)> {
    placements
        .into_iter()
        .enumerate()
        .map(|(i, p)| (PgId(i as u32), p))
        .collect()
}

fn loads_of(pools: &[(PoolSpec, Vec<(PgId, Placement)>)]) -> Loads {
    Loads::from_pgs(
        pools
            .iter()
            .flat_map(|(_, pgs)| pgs.iter().map(|(_, p)| (p.members.as_slice(), p.core))),
    )
}

/// Runs rebalance rounds of at most `max_moves` (applying each) until one proposes nothing;
/// checks every move on the way. Returns (moves, rounds).
fn rebalance_until_done(
    topo: &Topology,
    pools: &mut [(PoolSpec, Vec<(PgId, Placement)>)],
    max_moves: usize,
) -> (usize, usize) {
    let (mut total, mut rounds) = (0, 0);
    loop {
        let moves = {
            let views: Vec<PoolView> = pools
                .iter()
                .enumerate()
                .map(|(i, (spec, pgs))| PoolView {
                    id: PoolId(i as u32),
                    spec,
                    pgs,
                })
                .collect();
            rebalance(topo, &views, max_moves)
        };
        if moves.is_empty() {
            return (total, rounds);
        }
        assert!(moves.len() <= max_moves);
        let moved: BTreeSet<(PoolId, PgId)> = moves.iter().map(|m| (m.pool, m.pg)).collect();
        assert_eq!(moved.len(), moves.len(), "one move per PG and round");
        for m in moves {
            let (spec, pgs) = &mut pools[m.pool.0 as usize];
            let current = &mut pgs[m.pg.0 as usize].1;
            let changed: Vec<usize> = (0..current.members.len())
                .filter(|&i| current.members[i] != m.to.members[i])
                .collect();
            assert_eq!(changed.len(), 1, "{current:?} → {:?}", m.to);
            assert_eq!(current.members[changed[0]], m.replaced);
            assert_eq!(m.to.members[changed[0]], m.by);
            assert_eq!(current.core, m.to.core);
            check_valid(topo, spec, &m.to).unwrap();
            *current = m.to;
        }
        total += moved.len();
        rounds += 1;
        assert!(rounds < 1000, "rebalance does not converge");
    }
}

#[test]
fn one_pool_is_balanced_in_pgs_primaries_and_cores() {
    let topo = Topology::from_topo_osds(grid(10, 10));
    let mut loads = Loads::default();
    let s = spec(3, 3333, FailureDomain::Host);
    let placed = place_pool(&topo, &mut loads, &s).unwrap();
    assert_eq!(placed.len(), 3333);
    assert_valid(&topo, &s, &placed);
    let pgs = max_over_mean(&topo, |id| loads.pgs(id));
    let primaries = max_over_mean(&topo, |id| loads.primaries(id));
    assert!(pgs <= 1.05, "PGs max/mean {pgs}");
    assert!(primaries <= 1.05, "primaries max/mean {primaries}");
    assert!(worst_core_spread(&topo, &loads) <= 1);
    let counted = Loads::from_pgs(placed.iter().map(|p| (p.members.as_slice(), p.core)));
    assert_eq!(counted, loads, "loads count exactly the new PGs");
}

#[test]
fn pools_created_one_after_another_are_balanced_together() {
    let topo = Topology::from_topo_osds(grid(10, 10));
    let mut loads = Loads::default();
    for (size, count, fd) in [
        (3, 1000, FailureDomain::Host),
        (2, 777, FailureDomain::Osd),
        (1, 500, FailureDomain::Host),
        (3, 1111, FailureDomain::Host),
        (4, 256, FailureDomain::Host),
    ] {
        let s = spec(size, count, fd);
        let placed = place_pool(&topo, &mut loads, &s).unwrap();
        assert_valid(&topo, &s, &placed);
        let pgs = max_over_mean(&topo, |id| loads.pgs(id));
        assert!(pgs <= 1.05, "PGs max/mean {pgs} after a size-{size} pool");
        let primaries: Vec<u64> = topo.osds().iter().map(|o| loads.primaries(o.id)).collect();
        let (lo, hi) = (
            primaries.iter().min().unwrap(),
            primaries.iter().max().unwrap(),
        );
        assert!(hi - lo <= 1, "primaries {lo}..{hi}");
        assert!(worst_core_spread(&topo, &loads) <= 1);
    }
}

#[test]
fn pgs_follow_weights() {
    let mut osds = grid(10, 10);
    for o in osds.iter_mut().filter(|o| o.id.0 % 5 == 0) {
        o.weight = Weight(2000);
    }
    let topo = Topology::from_topo_osds(osds);
    let mut loads = Loads::default();
    let s = spec(3, 4000, FailureDomain::Host);
    let placed = place_pool(&topo, &mut loads, &s).unwrap();
    assert_valid(&topo, &s, &placed);
    assert!(max_over_mean(&topo, |id| loads.pgs(id)) <= 1.05);
    assert!(max_over_mean(&topo, |id| loads.primaries(id)) <= 1.05);
    let mean = |heavy: bool| {
        let counts: Vec<u64> = topo
            .osds()
            .iter()
            .filter(|o| (o.weight.0 == 2000) == heavy)
            .map(|o| loads.pgs(o.id))
            .collect();
        counts.iter().sum::<u64>() as f64 / counts.len() as f64
    };
    let ratio = mean(true) / mean(false);
    assert!(
        (1.95..=2.05).contains(&ratio),
        "weight 2 gets {ratio}× the PGs"
    );
}

#[test]
fn every_failure_domain_level_holds() {
    let mut osds = Vec::new();
    for i in 0..24 {
        let mut o = osd(i + 1, &format!("h{}", i / 3), 2);
        o.rack = (i < 18).then(|| format!("r{}", i / 6));
        osds.push(o);
    }
    let topo = Topology::from_topo_osds(osds);
    for (fd, size) in [
        (FailureDomain::Osd, 5),
        (FailureDomain::Host, 5),
        // Racks r0..r2 and the unracked hosts h6 and h7: five rack-level domains.
        (FailureDomain::Rack, 5),
        (FailureDomain::Root, 1),
    ] {
        let mut loads = Loads::default();
        let s = spec(size, 200, fd);
        let placed = place_pool(&topo, &mut loads, &s).unwrap();
        assert_valid(&topo, &s, &placed);
    }
}

#[test]
fn impossible_pools_fail_with_a_reason_and_count_nothing() {
    let topo = Topology::from_topo_osds(grid(2, 3));
    let mut loads = Loads::default();
    let existing = place_pool(&topo, &mut loads, &spec(2, 10, FailureDomain::Host)).unwrap();
    let before = loads.clone();
    let cases = [
        (spec(7, 8, FailureDomain::Osd), "NoEnoughOsd 6"),
        (spec(3, 8, FailureDomain::Host), "FailureDomain 2"),
        (spec(3, 8, FailureDomain::Rack), "FailureDomain 2"),
        (spec(2, 8, FailureDomain::Root), "FailureDomain 1"),
        (
            PoolSpec {
                root: "nowhere".to_string(),
                ..spec(1, 8, FailureDomain::Host)
            },
            "NoEnoughOsd 0",
        ),
    ];
    for (s, want) in cases {
        let got = match place_pool(&topo, &mut loads, &s) {
            Err(PlacementError::NoEnoughOsd { available, .. }) => {
                format!("NoEnoughOsd {available}")
            }
            Err(PlacementError::FailureDomainNotSatisfied { domains, .. }) => {
                format!("FailureDomain {domains}")
            }
            Ok(_) => "placed".to_string(),
        };
        assert_eq!(got, want, "{s:?}");
        assert!(check(&topo, &s).is_err());
        assert_eq!(loads, before, "nothing counted on failure");
    }
    assert_eq!(existing.len(), 10);
}

#[test]
fn replace_changes_only_the_replaced_members_in_place() {
    let topo = Topology::from_topo_osds(grid(5, 2));
    let mut loads = Loads::default();
    let s = spec(3, 16, FailureDomain::Host);
    let placed = place_pool(&topo, &mut loads, &s).unwrap();
    for (slot, current) in placed.iter().enumerate().take(3) {
        loads.remove(&current.members, current.core);
        let out = current.members[slot];
        let next = replace(&topo, &loads, &s, current, &[out]).unwrap();
        check_valid(&topo, &s, &next).unwrap();
        assert!(!next.members.contains(&out));
        assert_eq!(next.core, current.core);
        for i in 0..3 {
            assert_eq!(next.members[i] == current.members[i], i != slot, "slot {i}");
        }
        loads.add(&current.members, current.core);
    }
    // Two at once.
    let current = &placed[5];
    loads.remove(&current.members, current.core);
    let next = replace(&topo, &loads, &s, current, &current.members[..2]).unwrap();
    check_valid(&topo, &s, &next).unwrap();
    assert_eq!(next.members[2], current.members[2]);
    assert!(!next.members.contains(&current.members[0]));
    assert!(!next.members.contains(&current.members[1]));
}

#[test]
fn replace_also_refills_members_that_are_no_longer_valid() {
    let topo = Topology::from_topo_osds(grid(5, 2));
    let s = spec(3, 1, FailureDomain::Host);
    let loads = Loads::default();
    // osd.99 is not usable; osd.2 shares host h0 with osd.1; a member too many.
    let current = Placement {
        members: vec![OsdId(1), OsdId(99), OsdId(2), OsdId(5)],
        core: 1,
    };
    let next = replace(&topo, &loads, &s, &current, &[]).unwrap();
    check_valid(&topo, &s, &next).unwrap();
    assert_eq!(next.members[0], OsdId(1));
    assert_eq!(next.core, 1);
    // Undersized: refilled at the end.
    let current = Placement {
        members: vec![OsdId(3)],
        core: 0,
    };
    let next = replace(&topo, &loads, &s, &current, &[]).unwrap();
    check_valid(&topo, &s, &next).unwrap();
    assert_eq!(next.members[0], OsdId(3));
}

#[test]
fn replace_moves_the_core_only_when_no_candidate_has_it() {
    let mut osds = grid(4, 1);
    for o in &mut osds[..3] {
        o.core_num = 8;
    }
    let topo = Topology::from_topo_osds(osds);
    let s = spec(3, 1, FailureDomain::Host);
    let current = Placement {
        members: vec![OsdId(1), OsdId(2), OsdId(3)],
        core: 6,
    };
    // osd.4 is the only candidate and has 4 cores.
    let next = replace(&topo, &Loads::default(), &s, &current, &[OsdId(3)]).unwrap();
    check_valid(&topo, &s, &next).unwrap();
    assert_eq!(next.members, [OsdId(1), OsdId(2), OsdId(4)]);
    assert!(next.core < 4);
}

#[test]
fn replace_fails_when_too_few_osds_remain() {
    let topo = Topology::from_topo_osds(grid(3, 1));
    let s = spec(3, 1, FailureDomain::Host);
    let current = Placement {
        members: vec![OsdId(1), OsdId(2), OsdId(3)],
        core: 0,
    };
    assert!(matches!(
        replace(&topo, &Loads::default(), &s, &current, &[OsdId(2)]),
        Err(PlacementError::NoEnoughOsd { available: 2, .. })
    ));
    let topo = Topology::from_topo_osds(grid(2, 2));
    assert!(matches!(
        replace(&topo, &Loads::default(), &s, &current, &[OsdId(2)]),
        Err(PlacementError::FailureDomainNotSatisfied { domains: 2, .. })
    ));
}

#[test]
fn an_osd_going_out_moves_exactly_its_pgs() {
    let topo = Topology::from_topo_osds(grid(10, 10));
    let s = spec(3, 3333, FailureDomain::Host);
    let mut loads = Loads::default();
    let mut placed = place_pool(&topo, &mut loads, &s).unwrap();
    let out = OsdId(42);
    let held = loads.pgs(out);
    let topo = Topology::from_topo_osds(grid(10, 10).into_iter().filter(|o| o.id != out).collect());
    let mut changed = 0;
    for p in placed.iter_mut().filter(|p| p.members.contains(&out)) {
        loads.remove(&p.members, p.core);
        let next = replace(&topo, &loads, &s, p, &[out]).unwrap();
        changed += next
            .members
            .iter()
            .zip(&p.members)
            .filter(|(a, b)| a != b)
            .count();
        loads.add(&next.members, next.core);
        *p = next;
    }
    assert_eq!(changed as u64, held);
    assert_valid(&topo, &s, &placed);
    assert!(max_over_mean(&topo, |id| loads.pgs(id)) <= 1.05);
    assert!(max_over_mean(&topo, |id| loads.primaries(id)) <= 1.05);
}

#[test]
fn a_new_osd_gets_its_fair_share_with_little_else_moving() {
    let mut osds = grid(10, 10);
    let s = spec(3, 3333, FailureDomain::Host);
    let topo = Topology::from_topo_osds(osds.clone());
    let placed = place_pool(&topo, &mut Loads::default(), &s).unwrap();
    let mut pools = vec![(s, indexed(placed))];
    assert_eq!(
        rebalance(&topo, &[view(&pools[0])], 1000),
        [],
        "a fresh pool is balanced"
    );
    osds.push(osd(101, "h3", 4));
    let topo = Topology::from_topo_osds(osds);
    let (moves, _) = rebalance_until_done(&topo, &mut pools, 166);
    let loads = loads_of(&pools);
    let fair = 3333.0 * 3.0 / 101.0;
    let got = loads.pgs(OsdId(101)) as f64;
    assert!(
        (fair - 3.0..=fair + 1.0).contains(&got),
        "{got} PGs, fair share {fair}"
    );
    assert!(
        moves as f64 <= fair + 2.0,
        "{moves} moves for a fair share of {fair}"
    );
    let primaries = loads.primaries(OsdId(101)) as f64;
    assert!(
        (primaries - 3333.0 / 101.0).abs() <= 2.0,
        "{primaries} primaries"
    );
    assert!(max_over_mean(&topo, |id| loads.pgs(id)) <= 1.05);
    assert!(max_over_mean(&topo, |id| loads.primaries(id)) <= 1.05);
    assert!(worst_core_spread(&topo, &loads) <= 1);
}

fn view(pool: &(PoolSpec, Vec<(PgId, Placement)>)) -> PoolView<'_> {
    PoolView {
        id: PoolId(0),
        spec: &pool.0,
        pgs: &pool.1,
    }
}

#[test]
fn rebalance_follows_new_weights_across_pools() {
    let mut osds = grid(10, 10);
    let topo = Topology::from_topo_osds(osds.clone());
    let mut loads = Loads::default();
    let mut pools = Vec::new();
    for s in [
        spec(3, 2000, FailureDomain::Host),
        spec(2, 1000, FailureDomain::Osd),
    ] {
        let placed = place_pool(&topo, &mut loads, &s).unwrap();
        pools.push((s, indexed(placed)));
    }
    for o in osds.iter_mut().filter(|o| o.host == "h0") {
        o.weight = Weight(1500);
    }
    let topo = Topology::from_topo_osds(osds);
    let (moves, rounds) = rebalance_until_done(&topo, &mut pools, 150);
    assert!(rounds > 1, "bounded by max_moves");
    let loads = loads_of(&pools);
    assert!(max_over_mean(&topo, |id| loads.pgs(id)) <= 1.05);
    assert!(max_over_mean(&topo, |id| loads.primaries(id)) <= 1.05);
    assert!(worst_core_spread(&topo, &loads) <= 1);
    // Host h0 should gain 8000 × (15/105 − 10/100) ≈ 343 PG slots.
    assert!((310..=380).contains(&moves), "{moves} moves");
}

#[test]
fn rebalance_with_no_budget_or_no_pools_proposes_nothing() {
    let topo = Topology::from_topo_osds(grid(3, 3));
    let s = spec(3, 30, FailureDomain::Host);
    let placed = indexed(place_pool(&topo, &mut Loads::default(), &s).unwrap());
    let pool = (s, placed);
    let bigger = Topology::from_topo_osds(grid(4, 3));
    assert!(!rebalance(&bigger, &[view(&pool)], 10).is_empty());
    assert_eq!(rebalance(&bigger, &[view(&pool)], 0), []);
    assert_eq!(rebalance(&bigger, &[], 10), []);
}

#[test]
fn results_do_not_depend_on_how_loads_were_built() {
    let topo = Topology::from_topo_osds(grid(6, 4));
    let mut loads = Loads::default();
    let first = place_pool(&topo, &mut loads, &spec(3, 500, FailureDomain::Host)).unwrap();
    let mut forward = Loads::from_pgs(first.iter().map(|p| (p.members.as_slice(), p.core)));
    let mut backward = Loads::from_pgs(first.iter().rev().map(|p| (p.members.as_slice(), p.core)));
    assert_eq!(forward, backward);
    let s = spec(2, 300, FailureDomain::Osd);
    assert_eq!(
        place_pool(&topo, &mut forward, &s).unwrap(),
        place_pool(&topo, &mut backward, &s).unwrap()
    );
}

#[test]
fn loads_forget_what_they_counted() {
    let mut loads = Loads::default();
    loads.add(&[OsdId(1), OsdId(2)], 3);
    loads.add(&[OsdId(2), OsdId(1)], 0);
    assert_eq!((loads.pgs(OsdId(1)), loads.primaries(OsdId(1))), (2, 1));
    assert_eq!(loads.core(OsdId(2), 3), 1);
    loads.remove(&[OsdId(1), OsdId(2)], 3);
    assert_eq!(loads, Loads::from_pgs([(&[OsdId(2), OsdId(1)][..], 0)]));
    loads.remove(&[OsdId(2), OsdId(1)], 0);
    assert_eq!(loads, Loads::default());
    loads.remove(&[OsdId(7)], 0);
    assert_eq!(loads.pgs(OsdId(7)), 0);
}

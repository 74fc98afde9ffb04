//! Property tests of the state machine: random topologies, pools and event sequences (out, in,
//! down, up, add, remove, reweight, finishing changes), each followed by the reconciler's work
//! (RefreshPgs until quiet, a rebalance round). After every step: no duplicate OSD in a PG,
//! never fewer members than the pool size, only existing OSDs, targets on usable OSDs with one
//! per failure domain; refused commands change nothing; a single out remaps exactly the PGs
//! the OSD held.

use std::collections::HashSet;

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::cluster::placement::PoolSpec;
use crate::cluster::topology::Topology;
use crate::cluster::{ClusterState, PgState, PoolArgs};

#[derive(Debug, Clone)]
struct Setup {
    /// OSDs per host; host i in rack i % racks when racks > 0.
    hosts: Vec<u32>,
    racks: u32,
    /// (size, pg count, failure domain)
    pools: Vec<(u32, u32, &'static str)>,
}

#[derive(Debug, Clone)]
enum Event {
    Out(usize),
    In(usize),
    Down(usize),
    Up(usize),
    Add(u32),
    Remove(usize),
    Reweight(usize, u32),
    FinishAll,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec(1u32..=5, 1..=10),
        0u32..=3,
        prop::collection::vec(
            (
                1u32..=4,
                1u32..=160,
                prop::sample::select(vec!["osd", "host", "rack"]),
            ),
            1..=3,
        ),
    )
        .prop_map(|(hosts, racks, pools)| Setup {
            hosts,
            racks,
            pools,
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0usize..64).prop_map(Event::Out),
        2 => (0usize..64).prop_map(Event::In),
        2 => (0usize..64).prop_map(Event::Down),
        2 => (0usize..64).prop_map(Event::Up),
        1 => (0u32..12).prop_map(Event::Add),
        1 => (0usize..64).prop_map(Event::Remove),
        1 => ((0usize..64), prop::sample::select(vec![0u32, 500, 1000, 2000])).prop_map(|(i, w)| Event::Reweight(i, w)),
        2 => Just(Event::FinishAll),
    ]
}

/// Boots the setup's OSDs and creates the pools that fit.
fn build(setup: &Setup) -> ClusterState {
    let mut s = ClusterState::default();
    let mut n = 0u32;
    for (h, count) in setup.hosts.iter().enumerate() {
        for _ in 0..*count {
            n += 1;
            add_osd(&mut s, n, h as u32, setup.racks);
        }
    }
    for (i, (size, count, fd)) in setup.pools.iter().enumerate() {
        s.begin_group();
        let _ = s.apply(&command::CreatePool(PoolArgs {
            name: format!("p{i}"),
            size: *size,
            pg_count: *count,
            failure_domain: fd.to_string(),
            root: String::new(),
        }));
    }
    s
}

fn add_osd(s: &mut ClusterState, n: u32, host: u32, racks: u32) {
    s.begin_group();
    let uuid = Uuid::from_u128(0xfb00_0000 + u128::from(n)).to_string();
    let Ok(a) = s.apply(&command::ApplyId { uuid: uuid.clone() }) else {
        return;
    };
    let id = a.reply.id;
    let mut args = boot_args(id, &uuid, host, 1);
    if racks > 0 {
        args.rack = format!("rack{}", host % racks);
    }
    s.begin_group();
    s.apply(&command::Boot(args)).expect("boot");
}

/// Applies a command; a refusal must leave the state exactly as it was.
fn try_apply<C: Command>(s: &mut ClusterState, cmd: C) -> Option<Applied<C::Reply>> {
    s.begin_group();
    let before = s.clone();
    match s.apply(&cmd) {
        Ok(a) => Some(a),
        Err(e) => {
            assert_eq!(
                *s, before,
                "{cmd:?} was refused ({e}) but changed the state"
            );
            None
        }
    }
}

/// Does what the reconciler does: RefreshPgs until nothing is out of date, then one rebalance
/// round.
fn reconcile(s: &mut ClusterState) {
    for _ in 0..50 {
        let mut any = false;
        let pools: Vec<PoolId> = s.pools().map(|p| p.id).collect();
        for pool in pools {
            let pgs = s.pgs_needing_refresh(pool, usize::MAX);
            if !pgs.is_empty() {
                let a = try_apply(s, command::RefreshPgs { pool, pgs }).expect("refresh");
                any |= a.reply.changed > 0;
            }
        }
        if !any {
            break;
        }
    }
    let budget = (s.pg_count() / 20).max(1);
    for (pool, moves) in s.plan_rebalance(budget) {
        try_apply(s, command::Rebalance { pool, moves }).expect("rebalance");
    }
}

/// The OSDs placement could use for a pool with this spec.
fn usable(s: &ClusterState, root: &str) -> HashSet<OsdId> {
    let topo = Topology::from_osds(s.osds().map(|o| &**o));
    topo.under_root(root).map(|o| o.id).collect()
}

fn check_invariants(s: &ClusterState) {
    let topo = Topology::from_osds(s.osds().map(|o| &**o));
    for p in s.pools() {
        let spec = PoolSpec {
            size: p.size,
            pg_count: p.pg_count,
            failure_domain: p.failure_domain,
            root: p.root.clone(),
        };
        let ok_for_pool = usable(s, &spec.root);
        let whole = crate::cluster::queries::Usable::new(s, p);
        let up = s.up_set();
        for (id, pg) in p.pgs.iter() {
            // The per-PG views used by PG reports agree with the whole-cluster ones.
            let involved: Vec<OsdId> = pg
                .members
                .iter()
                .chain(pg.target.iter().flat_map(|t| &t.members))
                .copied()
                .collect();
            let among = crate::cluster::queries::Usable::among(s, p, involved.iter().copied());
            assert_eq!(among.misplaced(&pg.members), whole.misplaced(&pg.members));
            if let Some(t) = &pg.target {
                assert_eq!(among.misplaced(&t.members), whole.misplaced(&t.members));
            }
            let up_among = s.up_among(involved.iter().copied());
            for m in &involved {
                assert_eq!(up_among.contains(m), up.contains(m), "{m} up");
            }
            let distinct: HashSet<OsdId> = pg.members.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                pg.members.len(),
                "{} {id}: duplicate member",
                p.id
            );
            assert_eq!(
                pg.members.len() as u32,
                p.size,
                "{} {id}: size reduced",
                p.id
            );
            for m in &pg.members {
                assert!(
                    s.osd(*m).is_some(),
                    "{} {id}: member {m} does not exist",
                    p.id
                );
            }
            if let Some(t) = &pg.target {
                assert_eq!(t.members.len() as u32, p.size, "{} {id}: target size", p.id);
                let distinct: HashSet<OsdId> = t.members.iter().copied().collect();
                assert_eq!(
                    distinct.len(),
                    t.members.len(),
                    "{} {id}: duplicate target",
                    p.id
                );
                // A target was valid when it was set; the topology may have moved on since
                // (it waits until the change ends), so only existence is checked here.
                for m in &t.members {
                    assert!(
                        s.osd(*m).is_some(),
                        "{} {id}: target {m} does not exist",
                        p.id
                    );
                }
                assert!(pg.state.contains(PgState::REMAPPED));
            } else if crate::cluster::placement::check(&topo, &spec).is_ok() {
                // Quiet PG of a placeable pool: its members are usable, one per domain.
                let mut domains = HashSet::new();
                for m in &pg.members {
                    assert!(
                        ok_for_pool.contains(m),
                        "{} {id}: member {m} not usable",
                        p.id
                    );
                    let d = topo.get(*m).map(|o| o.domain(spec.failure_domain));
                    assert!(
                        domains.insert(d),
                        "{} {id}: two members in one domain",
                        p.id
                    );
                }
            }
        }
    }
}

/// Completes every change in progress, as OSDs reporting success would: each reported by an up
/// OSD of the PG (a change with none up cannot finish).
fn finish_all(s: &mut ClusterState) {
    let work: Vec<(PoolId, PgId, OsdId, Vec<OsdId>)> = s
        .pools()
        .flat_map(|p| {
            p.pgs
                .iter()
                .filter_map(|(id, pg)| {
                    let t = pg.target.as_ref()?;
                    let reporter = t
                        .members
                        .iter()
                        .chain(&pg.members)
                        .copied()
                        .find(|m| s.osd(*m).is_some_and(|o| o.is_up()))?;
                    Some((p.id, id, reporter, t.members.clone()))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (pool, pg, reporter, members) in work {
        try_apply(
            s,
            command::MemberChangeFinish {
                reporter: Some(reporter),
                result: 0,
                pool,
                pg,
                members,
            },
        )
        .expect("finish");
    }
}

fn nth_osd(s: &ClusterState, i: usize) -> Option<OsdId> {
    let n = s.osd_count();
    (n > 0).then(|| s.osds().nth(i % n).map(|o| o.id)).flatten()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_through_random_events(setup in setup(), events in prop::collection::vec(event(), 1..16)) {
        let mut s = build(&setup);
        reconcile(&mut s);
        check_invariants(&s);
        let mut next = 1000;
        for e in events {
            match e {
                Event::Out(i) => {
                    if let Some(id) = nth_osd(&s, i) {
                        // A single out of an OSD in a quiet cluster remaps exactly its PGs.
                        let quiet = s.remapped_count() == 0 && s.osd(id).is_some_and(|o| o.is_in());
                        let held: usize = s.pools().map(|p| p.pgs.iter().filter(|(_, g)| g.members.contains(&id)).count()).sum();
                        try_apply(&mut s, command::OsdOut { id });
                        let pools: Vec<PoolId> = s.pools().map(|p| p.id).collect();
                        let mut placeable = true;
                        for pool in pools {
                            let p = s.pool(pool).unwrap();
                            let spec = PoolSpec { size: p.size, pg_count: p.pg_count, failure_domain: p.failure_domain, root: p.root.clone() };
                            placeable &= crate::cluster::placement::check(&Topology::from_osds(s.osds().map(|o| &**o)), &spec).is_ok();
                            let pgs = s.pgs_needing_refresh(pool, usize::MAX);
                            if !pgs.is_empty() {
                                try_apply(&mut s, command::RefreshPgs { pool, pgs });
                            }
                        }
                        if quiet && placeable {
                            prop_assert_eq!(s.remapped_count(), held, "a single out remaps exactly the PGs it held");
                        }
                    }
                }
                Event::In(i) => if let Some(id) = nth_osd(&s, i) { try_apply(&mut s, command::OsdIn { id }); },
                Event::Down(i) => if let Some(id) = nth_osd(&s, i) { try_apply(&mut s, command::MarkDown { ids: vec![id] }); },
                Event::Up(i) => if let Some(id) = nth_osd(&s, i) { try_apply(&mut s, command::MarkUp { id, instance: 1 }); },
                Event::Add(host) => {
                    next += 1;
                    add_osd(&mut s, next, host % setup.hosts.len() as u32, setup.racks);
                }
                Event::Remove(i) => if let Some(id) = nth_osd(&s, i) { try_apply(&mut s, command::Purge { id }); },
                Event::Reweight(i, w) => if let Some(id) = nth_osd(&s, i) {
                    try_apply(&mut s, command::SetWeight { id, weight: f64::from(w) / 1000.0 });
                },
                Event::FinishAll => finish_all(&mut s),
            }
            reconcile(&mut s);
            check_invariants(&s);
        }
        // Quiesce: finish everything and reconcile until nothing moves; the final state holds.
        for _ in 0..20 {
            finish_all(&mut s);
            reconcile(&mut s);
            if s.remapped_count() == 0 {
                break;
            }
        }
        check_invariants(&s);
    }
}

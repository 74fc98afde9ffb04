//! Property tests: random topologies, pools and event sequences (OSDs out, in, added,
//! reweighted; pools created and removed), with every hard invariant checked after each step.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::super::super::pool::FailureDomain;
use super::super::super::topology::{TopoOsd, Topology};
use super::super::super::types::{OsdId, PgId, PoolId, Weight};
use super::super::*;
use super::check_valid;

#[derive(Debug, Clone, PartialEq)]
struct HostGen {
    rack: Option<u8>,
    root: u8,
    osds: Vec<(u32, u32)>,
}

#[derive(Debug, Clone)]
struct PoolGen {
    size: u32,
    pg_count: u32,
    fd: FailureDomain,
    /// An index into the roots; one past the last names a root without OSDs.
    root: u8,
}

#[derive(Debug, Clone)]
enum Event {
    Out(usize),
    In(usize),
    Add {
        host: usize,
        weight: u32,
        cores: u32,
    },
    Reweight(usize, u32),
    CreatePool(PoolGen),
    RemovePool(usize),
}

fn weight() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(500),
        Just(1000),
        Just(1000),
        Just(2000),
        1..=5000u32
    ]
}

fn host(roots: u8) -> impl Strategy<Value = HostGen> {
    (
        proptest::option::of(0..4u8),
        0..roots,
        proptest::collection::vec((weight(), 1..=8u32), 1..=20),
    )
        .prop_map(|(rack, root, osds)| HostGen { rack, root, osds })
}

fn pool(roots: u8) -> impl Strategy<Value = PoolGen> {
    let fd = prop_oneof![
        Just(FailureDomain::Osd),
        Just(FailureDomain::Host),
        Just(FailureDomain::Rack),
        Just(FailureDomain::Root),
    ];
    // Mostly small pools keep the suite fast; some reach the largest count.
    let pg_count = prop_oneof![4 => 1..=128u32, 2 => 1..=1024u32, 1 => 1..=4096u32];
    // A root without OSDs now and then; a root-level domain mostly with its one replica.
    let root = prop_oneof![9 => 0..roots, 1 => Just(roots)];
    (fd, pg_count, root).prop_flat_map(|(fd, pg_count, root)| {
        let size = if fd == FailureDomain::Root {
            prop_oneof![4 => Just(1u32), 1 => 1..=5u32].boxed()
        } else {
            (1..=5u32).boxed()
        };
        size.prop_map(move |size| PoolGen {
            size,
            pg_count,
            fd,
            root,
        })
    })
}

fn event(roots: u8) -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => any::<prop::sample::Index>().prop_map(|i| Event::Out(i.index(usize::MAX))),
        2 => any::<prop::sample::Index>().prop_map(|i| Event::In(i.index(usize::MAX))),
        2 => (any::<prop::sample::Index>(), weight(), 1..=8u32).prop_map(|(h, weight, cores)| {
            Event::Add { host: h.index(usize::MAX), weight, cores }
        }),
        1 => (any::<prop::sample::Index>(), weight())
            .prop_map(|(i, w)| Event::Reweight(i.index(usize::MAX), w)),
        1 => pool(roots).prop_map(Event::CreatePool),
        1 => any::<prop::sample::Index>().prop_map(|i| Event::RemovePool(i.index(usize::MAX))),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    hosts: Vec<HostGen>,
    pools: Vec<PoolGen>,
    events: Vec<Event>,
}

fn scenario(max_hosts: usize, max_events: usize) -> impl Strategy<Value = Scenario> {
    (1..=3u8).prop_flat_map(move |roots| {
        (
            proptest::collection::vec(host(roots), 1..=max_hosts),
            proptest::collection::vec(pool(roots), 1..=3),
            proptest::collection::vec(event(roots), 0..=max_events),
        )
            .prop_map(|(hosts, pools, events)| Scenario {
                hosts,
                pools,
                events,
            })
    })
}

fn root_name(i: u8) -> String {
    format!("root{i}")
}

/// The cluster as the monitor would keep it: every OSD ever added (in or out) and the pools.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    osds: Vec<(TopoOsd, bool)>,
    hosts: Vec<HostGen>,
    pools: Vec<(PoolSpec, Vec<(PgId, Placement)>)>,
    /// Member slots changed so far: by replacement, by rebalancing.
    replaced: usize,
    rebalanced: usize,
}

impl Model {
    fn new(hosts: &[HostGen]) -> Model {
        let mut m = Model {
            osds: Vec::new(),
            hosts: hosts.to_vec(),
            pools: Vec::new(),
            replaced: 0,
            rebalanced: 0,
        };
        for (h, g) in hosts.iter().enumerate() {
            for &(weight, cores) in &g.osds {
                m.add_osd(h, weight, cores);
            }
        }
        m
    }

    fn add_osd(&mut self, host: usize, weight: u32, cores: u32) {
        let g = &self.hosts[host];
        let id = OsdId(self.osds.len() as u32 + 1);
        let osd = TopoOsd {
            id,
            weight: Weight(weight),
            host: format!("host{host}"),
            rack: g.rack.map(|r| format!("rack{r}")),
            root: root_name(g.root),
            core_num: cores,
        };
        self.osds.push((osd, true));
    }

    fn topology(&self) -> Topology {
        Topology::from_topo_osds(
            self.osds
                .iter()
                .filter(|(_, is_in)| *is_in)
                .map(|(o, _)| o.clone())
                .collect(),
        )
    }

    fn loads(&self) -> Loads {
        Loads::from_pgs(
            self.pools
                .iter()
                .flat_map(|(_, pgs)| pgs.iter().map(|(_, p)| (p.members.as_slice(), p.core))),
        )
    }

    fn create_pool(&mut self, g: &PoolGen) -> Result<(), TestCaseError> {
        let spec = PoolSpec {
            size: g.size,
            pg_count: g.pg_count,
            failure_domain: g.fd,
            root: root_name(g.root),
        };
        let topo = self.topology();
        let mut loads = self.loads();
        let before = loads.clone();
        match place_pool(&topo, &mut loads, &spec) {
            Ok(placed) => {
                prop_assert!(feasible(&topo, &spec, &[]));
                prop_assert_eq!(placed.len(), g.pg_count as usize);
                let pgs = placed.into_iter().enumerate();
                self.pools
                    .push((spec, pgs.map(|(i, p)| (PgId(i as u32), p)).collect()));
                prop_assert_eq!(loads, self.loads(), "loads gained exactly the new PGs");
            }
            Err(e) => {
                prop_assert!(!feasible(&topo, &spec, &[]), "{}", e);
                prop_assert_eq!(check(&topo, &spec), Err(e));
                prop_assert_eq!(loads, before, "loads changed on failure");
            }
        }
        Ok(())
    }

    /// What the monitor does after an osdmap change: every PG with a member that is no longer
    /// usable gets the usable rest kept and the others replaced; a PG that cannot be
    /// refilled stays as it is. Checks that exactly the unusable members' slots change.
    fn refill(&mut self) -> Result<(), TestCaseError> {
        let topo = self.topology();
        let mut loads = self.loads();
        for (spec, pgs) in &mut self.pools {
            for (_, p) in pgs.iter_mut() {
                let gone: Vec<OsdId> = p
                    .members
                    .iter()
                    .copied()
                    .filter(|m| topo.get(*m).is_none())
                    .collect();
                if gone.is_empty() {
                    continue;
                }
                loads.remove(&p.members, p.core);
                match replace(&topo, &loads, spec, p, &gone) {
                    Ok(next) => {
                        check_valid(&topo, spec, &next).map_err(TestCaseError::fail)?;
                        for (i, m) in p.members.iter().enumerate() {
                            prop_assert_eq!(next.members[i] == *m, !gone.contains(m));
                        }
                        self.replaced += gone.len();
                        *p = next;
                    }
                    Err(e) => prop_assert!(!feasible(&topo, spec, &gone), "{}", e),
                }
                loads.add(&p.members, p.core);
            }
        }
        Ok(())
    }

    /// Rebalance rounds of 5% of all PGs, applied one after another until a round proposes
    /// nothing; checks every move.
    fn rebalance(&mut self) -> Result<(), TestCaseError> {
        let topo = self.topology();
        let total: usize = self.pools.iter().map(|(_, pgs)| pgs.len()).sum();
        let max_moves = (total / 20).max(1);
        let mut potential = self.potential(&topo);
        for _round in 0..2000 {
            let moves = {
                let views: Vec<PoolView> = self
                    .pools
                    .iter()
                    .enumerate()
                    .map(|(i, (spec, pgs))| PoolView {
                        id: PoolId(i as u32),
                        spec,
                        pgs,
                    })
                    .collect();
                rebalance(&topo, &views, max_moves)
            };
            if moves.is_empty() {
                return Ok(());
            }
            prop_assert!(moves.len() <= max_moves);
            let pgs: BTreeSet<(PoolId, PgId)> = moves.iter().map(|m| (m.pool, m.pg)).collect();
            prop_assert_eq!(pgs.len(), moves.len(), "one move per PG");
            for m in moves {
                let (spec, pgs) = &mut self.pools[m.pool.0 as usize];
                let p = &mut pgs[m.pg.0 as usize].1;
                check_valid(&topo, spec, p).map_err(TestCaseError::fail)?;
                check_valid(&topo, spec, &m.to).map_err(TestCaseError::fail)?;
                let changed: Vec<usize> = (0..p.members.len())
                    .filter(|&i| p.members[i] != m.to.members[i])
                    .collect();
                prop_assert_eq!(changed.len(), 1);
                prop_assert_eq!(p.members[changed[0]], m.replaced);
                prop_assert_eq!(m.to.members[changed[0]], m.by);
                prop_assert_eq!(p.core, m.to.core);
                *p = m.to;
                self.rebalanced += 1;
            }
            let next = self.potential(&topo);
            prop_assert!(
                next < potential,
                "Σ (n² + p²)/w went from {potential} to {next}"
            );
            potential = next;
        }
        Err(TestCaseError::fail(
            "rebalance did not converge in 2000 rounds",
        ))
    }

    /// Σ (n² + p²)/w over the usable OSDs: what every rebalance round lowers.
    fn potential(&self, topo: &Topology) -> f64 {
        let loads = self.loads();
        topo.osds()
            .iter()
            .map(|o| {
                let (n, p) = (loads.pgs(o.id) as f64, loads.primaries(o.id) as f64);
                (n * n + p * p) / o.weight.as_f64()
            })
            .sum()
    }

    /// Every PG either satisfies every invariant or has a member that is not usable (its
    /// refill failed and left it as it was).
    fn check(&self) -> Result<(), TestCaseError> {
        let topo = self.topology();
        for (spec, pgs) in &self.pools {
            prop_assert_eq!(pgs.len(), spec.pg_count as usize);
            for (_, p) in pgs {
                if p.members.iter().all(|m| topo.get(*m).is_some()) {
                    check_valid(&topo, spec, p).map_err(TestCaseError::fail)?;
                } else {
                    prop_assert_eq!(p.members.len(), spec.size as usize);
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, e: &Event) -> Result<(), TestCaseError> {
        match *e {
            Event::Out(i) => {
                let i = i % self.osds.len();
                if !self.osds[i].1 {
                    return Ok(());
                }
                let id = self.osds[i].0.id;
                let clean = self.all_usable();
                let held = self.loads().pgs(id) as usize;
                let before = self.replaced;
                self.osds[i].1 = false;
                self.refill()?;
                // Only that OSD's PGs move, one slot each, when every refill succeeds.
                let unfilled = self.unusable_slots();
                if clean {
                    prop_assert_eq!(self.replaced - before + unfilled, held);
                }
            }
            Event::In(i) => {
                let i = i % self.osds.len();
                self.osds[i].1 = true;
                self.refill()?;
                self.rebalance()?;
            }
            Event::Add {
                host,
                weight,
                cores,
            } => {
                self.add_osd(host % self.hosts.len(), weight, cores);
                self.refill()?;
                self.rebalance()?;
            }
            Event::Reweight(i, w) => {
                let i = i % self.osds.len();
                self.osds[i].0.weight = Weight(w);
                self.refill()?;
                self.rebalance()?;
            }
            Event::CreatePool(ref g) => self.create_pool(g)?,
            Event::RemovePool(i) => {
                if !self.pools.is_empty() {
                    self.pools.remove(i % self.pools.len());
                    self.refill()?;
                    self.rebalance()?;
                }
            }
        }
        self.check()
    }

    fn all_usable(&self) -> bool {
        self.unusable_slots() == 0
    }

    fn unusable_slots(&self) -> usize {
        let topo = self.topology();
        self.pools
            .iter()
            .flat_map(|(_, pgs)| pgs.iter().flat_map(|(_, p)| &p.members))
            .filter(|m| topo.get(**m).is_none())
            .count()
    }
}

/// Whether `spec` could be placed without the OSDs in `excluded`, counted independently of
/// the code under test.
fn feasible(topo: &Topology, spec: &PoolSpec, excluded: &[OsdId]) -> bool {
    let usable: Vec<&TopoOsd> = topo
        .under_root(&spec.root)
        .filter(|o| !excluded.contains(&o.id))
        .collect();
    let domains: BTreeSet<_> = usable
        .iter()
        .map(|o| o.domain(spec.failure_domain))
        .collect();
    usable.len() >= spec.size as usize && domains.len() >= spec.size as usize
}

fn run(s: &Scenario) -> Result<Model, TestCaseError> {
    let mut m = Model::new(&s.hosts);
    for g in &s.pools {
        m.create_pool(g)?;
        m.check()?;
    }
    for e in &s.events {
        m.apply(e)?;
    }
    Ok(m)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_through_random_events(s in scenario(50, 12)) {
        let m = run(&s)?;
        eprintln!("osds {} pools {:?} events {} replaced {} rebalanced {}", m.osds.len(), m.pools.iter().map(|p| (p.0.size, p.0.pg_count, p.0.failure_domain)).collect::<Vec<_>>(), s.events.len(), m.replaced, m.rebalanced);
    }

    #[test]
    fn everything_is_deterministic(s in scenario(12, 4)) {
        prop_assert_eq!(run(&s)?, run(&s)?);
    }
}

/// A pool placed on a random topology, one of its PGs, and OSDs to remove from it (members
/// or not).
fn replace_case() -> impl Strategy<Value = (Vec<HostGen>, PoolGen, usize, Vec<usize>)> {
    (
        proptest::collection::vec(host(2), 1..=30),
        pool(2),
        any::<prop::sample::Index>(),
        proptest::collection::vec(0..12usize, 0..=3),
    )
        .prop_map(|(hosts, pool, pg, remove)| (hosts, pool, pg.index(usize::MAX), remove))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replace_keeps_the_rest_or_fails_for_a_reason(case in replace_case()) {
        let (hosts, g, pg, remove) = case;
        let mut m = Model::new(&hosts);
        m.create_pool(&g)?;
        let Some((spec, pgs)) = m.pools.first() else {
            return Ok(());
        };
        let topo = m.topology();
        let current = &pgs[pg % pgs.len()].1;
        // Indexes below the size pick members, the others any OSD.
        let remove: Vec<OsdId> = remove
            .iter()
            .map(|&r| match current.members.get(r) {
                Some(id) => *id,
                None => OsdId(r as u32 * 7 + 1),
            })
            .collect();
        let mut loads = m.loads();
        loads.remove(&current.members, current.core);
        match replace(&topo, &loads, spec, current, &remove) {
            Ok(next) => {
                check_valid(&topo, spec, &next).map_err(TestCaseError::fail)?;
                for (i, id) in current.members.iter().enumerate() {
                    prop_assert_eq!(next.members[i] == *id, !remove.contains(id));
                }
                if next.core != current.core {
                    // Only when too few OSDs that could join serve the PG's core.
                    let fd = spec.failure_domain;
                    let kept: BTreeSet<_> = current
                        .members
                        .iter()
                        .filter(|m| !remove.contains(m))
                        .filter_map(|m| topo.get(*m))
                        .map(|o| o.domain(fd))
                        .collect();
                    let serving: BTreeSet<_> = topo
                        .under_root(&spec.root)
                        .filter(|o| !remove.contains(&o.id) && o.core_num > current.core)
                        .map(|o| o.domain(fd))
                        .filter(|d| !kept.contains(d))
                        .collect();
                    prop_assert!(
                        serving.len() + kept.len() < spec.size as usize,
                        "the core changed needlessly"
                    );
                }
            }
            Err(e) => prop_assert!(!feasible(&topo, spec, &remove), "{}", e),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// On hosts that are alike and big enough for the fair share to fit the failure domains.
    #[test]
    fn a_new_osd_gets_about_its_fair_share(
        hosts in 5..=12u32,
        per_host in 2..=6u32,
        size in 1..=3u32,
        per_osd in 10..=60u32,
        fd in prop_oneof![Just(FailureDomain::Osd), Just(FailureDomain::Host)],
    ) {
        let host_gen = HostGen { rack: None, root: 0, osds: vec![(1000, 4); per_host as usize] };
        let mut m = Model::new(&vec![host_gen; hosts as usize]);
        let pg_count = hosts * per_host * per_osd / size;
        m.create_pool(&PoolGen { size, pg_count, fd, root: 0 })?;
        m.add_osd(0, 1000, 4);
        m.rebalance()?;
        let new = OsdId(hosts * per_host + 1);
        let fair = f64::from(size * pg_count) / f64::from(hosts * per_host + 1);
        let got = m.loads().pgs(new) as f64;
        prop_assert!(got >= fair - 2.5 && got <= fair + 1.0, "{} PGs for a fair share of {}", got, fair);
        prop_assert!(m.rebalanced as f64 <= fair + 2.0, "{} moves for a fair share of {}", m.rebalanced, fair);
    }
}

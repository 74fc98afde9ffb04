//! Measures placement quality and speed and prints markdown tables.
//!
//! `make bench` runs it (`cargo bench --bench placement`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fastblock_monitor::cluster::FailureDomain;
use fastblock_monitor::cluster::placement::{
    Loads, Placement, PoolSpec, PoolView, place_pool, rebalance, replace,
};
use fastblock_monitor::cluster::topology::{TopoOsd, Topology};
use fastblock_monitor::cluster::{OsdId, PgId, PoolId, Weight};

const CORES: u32 = 4;

fn osd(id: u32, host: u32, rack: Option<u32>) -> TopoOsd {
    TopoOsd {
        id: OsdId(id),
        weight: Weight::DEFAULT,
        host: format!("host{host}"),
        rack: rack.map(|r| format!("rack{r}")),
        root: "default".to_string(),
        core_num: CORES,
    }
}

/// `hosts` hosts of `per_host` OSDs, ids from 1; `rack_of` puts hosts in racks.
fn osds(hosts: u32, per_host: u32, rack_of: impl Fn(u32) -> Option<u32>) -> Vec<TopoOsd> {
    (0..hosts * per_host)
        .map(|i| osd(i + 1, i / per_host, rack_of(i / per_host)))
        .collect()
}

fn spec(size: u32, pg_count: u32, fd: FailureDomain) -> PoolSpec {
    PoolSpec {
        size,
        pg_count,
        failure_domain: fd,
        root: "default".to_string(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[derive(Clone)]
struct Cluster {
    osds: Vec<TopoOsd>,
    topo: Topology,
    pools: Vec<(PoolSpec, Vec<(PgId, Placement)>)>,
}

impl Cluster {
    fn new(osds: Vec<TopoOsd>) -> Cluster {
        let topo = Topology::from_topo_osds(osds.clone());
        Cluster {
            osds,
            topo,
            pools: Vec::new(),
        }
    }

    fn set_osds(&mut self, osds: Vec<TopoOsd>) {
        self.topo = Topology::from_topo_osds(osds.clone());
        self.osds = osds;
    }

    fn loads(&self) -> Loads {
        Loads::from_pgs(
            self.pools
                .iter()
                .flat_map(|(_, pgs)| pgs.iter().map(|(_, p)| (p.members.as_slice(), p.core))),
        )
    }

    fn create(&mut self, spec: PoolSpec) -> Duration {
        let mut loads = self.loads();
        let start = Instant::now();
        let placed = place_pool(&self.topo, &mut loads, &spec).expect("placeable");
        let took = start.elapsed();
        let pgs = placed
            .into_iter()
            .enumerate()
            .map(|(i, p)| (PgId(i as u32), p))
            .collect();
        self.pools.push((spec, pgs));
        took
    }

    fn slots(&self) -> u64 {
        self.pools
            .iter()
            .map(|(s, pgs)| u64::from(s.size) * pgs.len() as u64)
            .sum()
    }

    /// Takes `id` out and replaces it in every PG: (member slots changed, time).
    fn out(&mut self, id: OsdId) -> (u64, Duration) {
        let rest = self.osds.iter().filter(|o| o.id != id).cloned().collect();
        self.set_osds(rest);
        let mut loads = self.loads();
        let (mut changed, mut took) = (0, Duration::ZERO);
        for (spec, pgs) in &mut self.pools {
            for (_, p) in pgs.iter_mut().filter(|(_, p)| p.members.contains(&id)) {
                loads.remove(&p.members, p.core);
                let start = Instant::now();
                let next = replace(&self.topo, &loads, spec, p, &[id]).expect("replace");
                took += start.elapsed();
                let diff = next.members.iter().zip(&p.members).filter(|(a, b)| a != b);
                changed += diff.count() as u64;
                loads.add(&next.members, next.core);
                *p = next;
            }
        }
        (changed, took)
    }

    fn views(&self) -> Vec<PoolView<'_>> {
        self.pools
            .iter()
            .enumerate()
            .map(|(i, (spec, pgs))| PoolView {
                id: PoolId(i as u32),
                spec,
                pgs,
            })
            .collect()
    }

    /// Rebalance rounds of 5% of the PGs until one proposes nothing: (moves, rounds).
    fn rebalance_all(&mut self) -> (u64, u32) {
        let max = (self.pools.iter().map(|(_, p)| p.len()).sum::<usize>() / 20).max(1);
        let (mut moved, mut rounds) = (0, 0);
        loop {
            let moves = rebalance(&self.topo, &self.views(), max);
            if moves.is_empty() {
                return (moved, rounds);
            }
            rounds += 1;
            moved += moves.len() as u64;
            for m in moves {
                self.pools[m.pool.0 as usize].1[m.pg.0 as usize].1 = m.to;
            }
        }
    }

    fn fair_share(&self, id: OsdId) -> f64 {
        let w: u64 = self.topo.osds().iter().map(|o| u64::from(o.weight.0)).sum();
        let mine = self.topo.get(id).map_or(0, |o| u64::from(o.weight.0));
        self.slots() as f64 * mine as f64 / w as f64
    }

    /// max/mean PGs and primaries per unit of weight, and the worst per-core spread.
    fn balance(&self) -> String {
        let loads = self.loads();
        let ratio = |f: &dyn Fn(OsdId) -> u64| {
            let per_w: Vec<f64> = self
                .topo
                .osds()
                .iter()
                .map(|o| f(o.id) as f64 / o.weight.as_f64())
                .collect();
            let mean = per_w.iter().sum::<f64>() / per_w.len() as f64;
            per_w.iter().copied().fold(0.0, f64::max) / mean
        };
        let spread = self
            .topo
            .osds()
            .iter()
            .map(|o| {
                let c: Vec<u64> = (0..o.core_num).map(|c| loads.core(o.id, c)).collect();
                c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0)
            })
            .max()
            .unwrap_or(0);
        format!(
            "{:.3} | {:.3} | {spread}",
            ratio(&|id| loads.pgs(id)),
            ratio(&|id| loads.primaries(id))
        )
    }

    /// Distinct peers per OSD (mean): how widely a failed OSD's recovery spreads.
    fn peers(&self) -> f64 {
        let mut peers: Vec<BTreeSet<OsdId>> = vec![BTreeSet::new(); self.topo.osds().len()];
        for (_, pgs) in &self.pools {
            for (_, p) in pgs {
                for m in &p.members {
                    if let Some(i) = self.topo.index_of(*m) {
                        peers[i].extend(p.members.iter().filter(|x| *x != m));
                    }
                }
            }
        }
        peers.iter().map(|p| p.len() as f64).sum::<f64>() / peers.len() as f64
    }
}

fn balance_and_movement() {
    println!(
        "## Balance and movement (size 3, host failure domain, {CORES} cores per OSD, ~100 PGs per OSD)\n"
    );
    println!(
        "| OSDs | hosts | PGs | max/mean PGs | max/mean primaries | core spread | peers per OSD | out: slots moved / PGs held | in: moves / fair share (rounds) | after in: max/mean PGs \\| primaries \\| core spread | create |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (hosts, per_host) in [(5, 2), (10, 10), (100, 10)] {
        let n = hosts * per_host;
        let pg_count = n * 100 / 3;
        let mut c = Cluster::new(osds(hosts, per_host, |_| None));
        let took = c.create(spec(3, pg_count, FailureDomain::Host));
        let before = c.balance();
        let peers = c.peers();

        let mut out = c.clone();
        let victim = OsdId(n / 2);
        let held = out.loads().pgs(victim);
        let (changed, _) = out.out(victim);

        // The new OSD joins host 0.
        let mut grown = c.osds.clone();
        grown.push(osd(n + 1, 0, None));
        c.set_osds(grown);
        let (moved, rounds) = c.rebalance_all();
        let fair = c.fair_share(OsdId(n + 1));
        println!(
            "| {n} | {hosts} | {pg_count} | {before} | {peers:.1} | {changed}/{held} = {:.3} | {moved}/{fair:.1} = {:.3} ({rounds}) | {} | {} |",
            changed as f64 / held as f64,
            moved as f64 / fair,
            c.balance().replace(" | ", " \\| "),
            ms(took),
        );
    }
}

fn more_scenarios() {
    println!("\n## More scenarios (100 OSDs on 10 hosts, {CORES} cores each)\n");
    println!("| scenario | max/mean PGs | max/mean primaries | core spread |");
    println!("|---|---:|---:|---:|");
    let mut c = Cluster::new(osds(10, 10, |_| None));
    for (size, count, fd) in [
        (3, 1000, FailureDomain::Host),
        (2, 777, FailureDomain::Osd),
        (1, 500, FailureDomain::Host),
        (3, 1111, FailureDomain::Host),
        (4, 256, FailureDomain::Host),
    ] {
        c.create(spec(size, count, fd));
        println!(
            "| pools one after another: after pool {} (size {size}, {count} PGs, {fd} domain) | {} |",
            c.pools.len(),
            c.balance()
        );
    }

    let mut w = osds(10, 10, |_| None);
    for o in w.iter_mut().filter(|o| o.id.0 % 5 == 0) {
        o.weight = Weight(2000);
    }
    let mut c = Cluster::new(w);
    c.create(spec(3, 4000, FailureDomain::Host));
    println!(
        "| every 5th OSD weighs 2.0, 4000 PGs (per unit of weight) | {} |",
        c.balance()
    );

    let mut c = Cluster::new(osds(10, 10, |_| None));
    c.create(spec(3, 3333, FailureDomain::Host));
    let mut w = c.osds.clone();
    for o in w.iter_mut().filter(|o| o.id.0 <= 10) {
        o.weight = Weight(1500);
    }
    c.set_osds(w);
    let (moved, rounds) = c.rebalance_all();
    let ideal = 3.0 * 3333.0 * (15.0 / 105.0 - 0.1);
    println!(
        "| host0's OSDs reweighted 1.0 → 1.5, rebalanced: {moved} moves (ideal {ideal:.0}) in {rounds} rounds | {} |",
        c.balance()
    );

    let mut c = Cluster::new(osds(10, 10, |_| None));
    c.create(spec(3, 3333, FailureDomain::Host));
    for victim in [5, 17, 29, 41, 53] {
        c.out(OsdId(victim));
    }
    let after_out = c.balance();
    let (moved, rounds) = c.rebalance_all();
    println!(
        "| 5 OSDs out (replaced) | {after_out} |\n| … then rebalanced: {moved} moves in {rounds} rounds | {} |",
        c.balance()
    );
}

fn speed() {
    println!("\n## Speed (release build)\n");
    println!("| operation | time |");
    println!("|---|---:|");
    for (label, racks) in [
        ("1,000 hosts × 10 OSDs, host domain", None),
        ("the same hosts in 10 racks, rack domain", Some(10)),
    ] {
        let mut c = Cluster::new(osds(1000, 10, |h| racks.map(|r| h % r)));
        let fd = match racks {
            Some(_) => FailureDomain::Rack,
            None => FailureDomain::Host,
        };
        let took = c.create(spec(3, 100_000, fd));
        println!(
            "| create a 100,000-PG pool, size 3, on 10,000 OSDs ({label}) | {} |",
            ms(took)
        );
        let held = c.loads().pgs(OsdId(5000));
        let (_, took) = c.out(OsdId(5000));
        println!(
            "| one of those 10,000 OSDs out: `replace` for each of its {held} PGs | {} ({:.0} µs per PG) |",
            ms(took),
            took.as_secs_f64() * 1e6 / held as f64
        );
    }

    let mut c = Cluster::new(osds(100, 10, |_| None));
    c.create(spec(3, 100_000, FailureDomain::Host));
    let mut grown = c.osds.clone();
    grown.extend((1001..=1010).map(|i| osd(i, 100, None)));
    c.set_osds(grown);
    let start = Instant::now();
    let moves = rebalance(&c.topo, &c.views(), 5000);
    println!(
        "| one rebalance round (max 5,000 moves): 1,000 OSDs + a new host of 10, 100,000 PGs ({} moves) | {} |",
        moves.len(),
        ms(start.elapsed())
    );

    // Three racks of 45, 45 and 10 hosts: every PG needs a replica in the small rack, whose
    // OSDs can never shed load; the big racks' OSDs can never take it.
    let rack = |h: u32| {
        Some(if h < 45 {
            0
        } else if h < 90 {
            1
        } else {
            2
        })
    };
    let mut c = Cluster::new(osds(100, 10, rack));
    c.create(spec(3, 100_000, FailureDomain::Rack));
    let mut grown = c.osds.clone();
    grown.push(osd(1001, 0, Some(0)));
    c.set_osds(grown);
    let start = Instant::now();
    let moves = rebalance(&c.topo, &c.views(), 5000);
    println!(
        "| one rebalance round, same PGs on racks of 45/45/10 hosts (rack domain) + 1 OSD ({} moves) | {} |",
        moves.len(),
        ms(start.elapsed())
    );
}

fn main() {
    balance_and_movement();
    more_scenarios();
    speed();
}

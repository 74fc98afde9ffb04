//! Placement: which OSDs hold each PG, and on which core.
//!
//! Hard invariants, whatever the inputs: at most one replica per failure domain, no OSD twice in
//! a PG, only usable OSDs (in, weight > 0, under the pool's root), and never fewer than `size`
//! replicas — if the topology cannot hold them the call fails with a reason. Placement is
//! deterministic: the same inputs give the same output.
//!
//! Balance: each pick takes the OSD with the lowest PG count relative to its weight, counted
//! across all pools (primaries — the first member — balanced the same way); a PG's core is the
//! one least used across its members.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::pool::FailureDomain;
use super::topology::{DomainKey, TopoOsd, Topology};
use super::types::OsdId;

/// What placement needs to know about a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub size: u32,
    pub pg_count: u32,
    pub failure_domain: FailureDomain,
    pub root: String,
}

/// Where one PG lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub members: Vec<OsdId>,
    pub core: u32,
}

/// Why a placement is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "not enough OSDs: {needed} replicas need {needed} usable OSDs under root '{root}', {available} available"
    )]
    NoEnoughOsd {
        available: usize,
        needed: u32,
        root: String,
    },
    #[error(
        "failure domain {failure_domain} cannot hold {needed} replicas: only {domains} distinct {failure_domain} domains under root '{root}'"
    )]
    FailureDomainNotSatisfied {
        domains: usize,
        needed: u32,
        failure_domain: FailureDomain,
        root: String,
    },
}

/// How loaded each OSD is, across all pools: PGs, primaries, and PGs per core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loads {
    pgs: HashMap<OsdId, u64>,
    primaries: HashMap<OsdId, u64>,
    cores: HashMap<OsdId, Vec<u64>>,
}

impl Loads {
    /// Counts the given PGs (members and core).
    pub fn from_pgs<'a>(pgs: impl IntoIterator<Item = (&'a [OsdId], u32)>) -> Loads {
        let mut l = Loads::default();
        for (members, core) in pgs {
            l.add(members, core);
        }
        l
    }

    /// Counts one more PG.
    pub fn add(&mut self, members: &[OsdId], core: u32) {
        for (i, m) in members.iter().enumerate() {
            *self.pgs.entry(*m).or_insert(0) += 1;
            if i == 0 {
                *self.primaries.entry(*m).or_insert(0) += 1;
            }
            let cores = self.cores.entry(*m).or_default();
            if cores.len() <= core as usize {
                cores.resize(core as usize + 1, 0);
            }
            cores[core as usize] += 1;
        }
    }

    /// Forgets one PG.
    pub fn remove(&mut self, members: &[OsdId], core: u32) {
        for (i, m) in members.iter().enumerate() {
            if let Some(n) = self.pgs.get_mut(m) {
                *n = n.saturating_sub(1);
            }
            if i == 0
                && let Some(n) = self.primaries.get_mut(m)
            {
                *n = n.saturating_sub(1);
            }
            if let Some(c) = self.cores.get_mut(m).and_then(|c| c.get_mut(core as usize)) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// PGs on `osd`.
    pub fn pgs(&self, osd: OsdId) -> u64 {
        self.pgs.get(&osd).copied().unwrap_or(0)
    }

    /// PGs whose first member is `osd`.
    pub fn primaries(&self, osd: OsdId) -> u64 {
        self.primaries.get(&osd).copied().unwrap_or(0)
    }

    /// PGs on `osd` served by `core`.
    pub fn core(&self, osd: OsdId, core: u32) -> u64 {
        self.cores
            .get(&osd)
            .and_then(|c| c.get(core as usize))
            .copied()
            .unwrap_or(0)
    }
}

/// Checks that `spec` can be placed at all on `topo`.
pub fn check(topo: &Topology, spec: &PoolSpec) -> Result<(), PlacementError> {
    let available = topo.under_root(&spec.root).count();
    if available < spec.size as usize {
        return Err(PlacementError::NoEnoughOsd {
            available,
            needed: spec.size,
            root: spec.root.clone(),
        });
    }
    let domains = topo.domains(&spec.root, spec.failure_domain).len();
    if domains < spec.size as usize {
        return Err(PlacementError::FailureDomainNotSatisfied {
            domains,
            needed: spec.size,
            failure_domain: spec.failure_domain,
            root: spec.root.clone(),
        });
    }
    Ok(())
}

/// Places every PG of a new pool; `loads` is updated with the new PGs.
pub fn place_pool(
    topo: &Topology,
    loads: &mut Loads,
    spec: &PoolSpec,
) -> Result<Vec<Placement>, PlacementError> {
    check(topo, spec)?;
    let candidates: Vec<&TopoOsd> = topo.under_root(&spec.root).collect();
    let domains: Vec<DomainKey> = candidates
        .iter()
        .map(|o| o.domain(spec.failure_domain))
        .collect();
    // Two lazily updated heaps: by primary load (first member) and by PG load (the others).
    // An entry whose score no longer matches the OSD's load is re-pushed when popped.
    let mut by_primary = BinaryHeap::new();
    let mut by_pgs = BinaryHeap::new();
    for (i, o) in candidates.iter().enumerate() {
        by_primary.push(Reverse(score(loads, o, true, i)));
        by_pgs.push(Reverse(score(loads, o, false, i)));
    }
    let mut out = Vec::with_capacity(spec.pg_count as usize);
    for _ in 0..spec.pg_count {
        let mut members: Vec<OsdId> = Vec::with_capacity(spec.size as usize);
        let mut used: Vec<usize> = Vec::with_capacity(spec.size as usize);
        for slot in 0..spec.size as usize {
            let heap = if slot == 0 {
                &mut by_primary
            } else {
                &mut by_pgs
            };
            let mut skipped = Vec::new();
            let chosen = loop {
                let Some(Reverse(entry)) = heap.pop() else {
                    break None;
                };
                let i = entry.3;
                let fresh = score(loads, candidates[i], slot == 0, i);
                if fresh != entry {
                    heap.push(Reverse(fresh));
                    continue;
                }
                if used.iter().any(|&u| u == i || domains[u] == domains[i]) {
                    skipped.push(Reverse(entry));
                    continue;
                }
                break Some(entry);
            };
            heap.extend(skipped);
            let Some(entry) = chosen else {
                // `check` guarantees enough domains, so this cannot happen; fail safe anyway.
                return Err(PlacementError::FailureDomainNotSatisfied {
                    domains: used.len(),
                    needed: spec.size,
                    failure_domain: spec.failure_domain,
                    root: spec.root.clone(),
                });
            };
            heap.push(Reverse(entry));
            used.push(entry.3);
            members.push(candidates[entry.3].id);
        }
        let core = best_core(topo, loads, &members);
        loads.add(&members, core);
        out.push(Placement { members, core });
    }
    Ok(out)
}

/// Replaces `remove` in `current` with other OSDs, keeping every other member (and the core)
/// where it is. `loads` must not count `current`; the result is not added to it.
pub fn replace(
    topo: &Topology,
    loads: &Loads,
    spec: &PoolSpec,
    current: &Placement,
    remove: &[OsdId],
) -> Result<Placement, PlacementError> {
    check(topo, spec)?;
    let mut members: Vec<OsdId> = current
        .members
        .iter()
        .copied()
        .filter(|m| !remove.contains(m) && topo.get(*m).is_some_and(|o| o.root == spec.root))
        .collect();
    members.truncate(spec.size as usize);
    let mut used: Vec<DomainKey> = members
        .iter()
        .filter_map(|m| topo.get(*m))
        .map(|o| o.domain(spec.failure_domain))
        .collect();
    while members.len() < spec.size as usize {
        let primary = members.is_empty();
        let best = topo
            .under_root(&spec.root)
            .enumerate()
            .filter(|(_, o)| !members.contains(&o.id) && !remove.contains(&o.id))
            .filter(|(_, o)| !used.contains(&o.domain(spec.failure_domain)))
            .map(|(i, o)| (score(loads, o, primary, i), o))
            .min_by(|a, b| a.0.cmp(&b.0));
        let Some((_, o)) = best else {
            return Err(PlacementError::FailureDomainNotSatisfied {
                domains: used.len(),
                needed: spec.size,
                failure_domain: spec.failure_domain,
                root: spec.root.clone(),
            });
        };
        used.push(o.domain(spec.failure_domain));
        members.push(o.id);
    }
    Ok(Placement {
        members,
        core: current.core,
    })
}

/// The core least used across `members` (ties: the lowest index).
fn best_core(topo: &Topology, loads: &Loads, members: &[OsdId]) -> u32 {
    let cores = members
        .iter()
        .filter_map(|m| topo.get(*m))
        .map(|o| o.core_num.max(1))
        .min()
        .unwrap_or(1);
    (0..cores)
        .min_by_key(|c| members.iter().map(|m| loads.core(*m, *c)).sum::<u64>())
        .unwrap_or(0)
}

/// Lower is better: load relative to weight (primaries first for a primary slot), then id.
fn score(loads: &Loads, o: &TopoOsd, primary: bool, index: usize) -> (u128, u128, OsdId, usize) {
    let w = u128::from(o.weight.0.max(1));
    let pgs = (u128::from(loads.pgs(o.id)) + 1) * 1_000_000 / w;
    if primary {
        let prim = (u128::from(loads.primaries(o.id)) + 1) * 1_000_000 / w;
        (prim, pgs, o.id, index)
    } else {
        (pgs, 0, o.id, index)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::types::Weight;
    use super::*;

    fn topo(hosts: u32, per_host: u32) -> Topology {
        let mut osds = Vec::new();
        for h in 0..hosts {
            for i in 0..per_host {
                osds.push(TopoOsd {
                    id: OsdId(h * per_host + i + 1),
                    weight: Weight::DEFAULT,
                    host: format!("h{h}"),
                    rack: None,
                    root: "default".to_string(),
                    core_num: 4,
                });
            }
        }
        Topology::from_topo_osds(osds)
    }

    fn spec(size: u32, count: u32, fd: FailureDomain) -> PoolSpec {
        PoolSpec {
            size,
            pg_count: count,
            failure_domain: fd,
            root: "default".to_string(),
        }
    }

    #[test]
    fn one_replica_per_host_and_balanced() {
        let t = topo(10, 10);
        let mut loads = Loads::default();
        let p = place_pool(&t, &mut loads, &spec(3, 1000, FailureDomain::Host)).unwrap();
        for pl in &p {
            let hosts: HashSet<String> = pl
                .members
                .iter()
                .map(|m| t.get(*m).unwrap().host.clone())
                .collect();
            assert_eq!(hosts.len(), 3);
        }
        let counts: Vec<u64> = t.osds().iter().map(|o| loads.pgs(o.id)).collect();
        let max = *counts.iter().max().unwrap();
        let min = *counts.iter().min().unwrap();
        assert!(max - min <= 1, "{min}..{max}");
    }

    #[test]
    fn impossible_pools_fail_with_a_reason() {
        let t = topo(2, 3);
        let mut loads = Loads::default();
        assert!(matches!(
            place_pool(&t, &mut loads, &spec(3, 8, FailureDomain::Host)),
            Err(PlacementError::FailureDomainNotSatisfied { domains: 2, .. })
        ));
        assert!(matches!(
            place_pool(&t, &mut loads, &spec(7, 8, FailureDomain::Osd)),
            Err(PlacementError::NoEnoughOsd { available: 6, .. })
        ));
        assert!(loads.pgs(OsdId(1)) == 0, "nothing counted on failure");
    }

    #[test]
    fn replace_keeps_the_other_members() {
        let t = topo(5, 2);
        let mut loads = Loads::default();
        let s = spec(3, 16, FailureDomain::Host);
        let p = place_pool(&t, &mut loads, &s).unwrap();
        let first = p[0].clone();
        loads.remove(&first.members, first.core);
        let out = first.members[1];
        let r = replace(&t, &loads, &s, &first, &[out]).unwrap();
        assert_eq!(r.members.len(), 3);
        assert!(!r.members.contains(&out));
        assert_eq!(r.members[0], first.members[0]);
        assert_eq!(r.members[1], first.members[2]);
        assert_eq!(r.core, first.core);
    }
}

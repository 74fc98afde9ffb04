//! Placement: which OSDs hold each PG, and on which core.
//!
//! Hard invariants, whatever the inputs: at most one replica per failure domain, no OSD twice in
//! a PG, only usable OSDs (in, weight > 0, under the pool's root), a core below every member's
//! core count, and never fewer than `size` replicas — if the topology cannot hold them the call
//! fails with a reason. Placement is deterministic: the same inputs give the same output.
//!
//! Balance: placement minimises Σ n²/w over the OSDs (n the PGs an OSD holds across all pools,
//! w its weight), whose minimum is n proportional to w. Adding one PG to an OSD raises that sum
//! by (2n+1)/w, so each pick takes the OSD with the lowest such marginal cost; primaries (the
//! first member) are balanced the same way. [`rebalance`] moves single members while the sum
//! (plus the same sum over primaries) strictly decreases, so repeated rounds converge.
//!
//! Cores: all members of a PG serve it on one core. An OSD's PGs stay spread evenly over its
//! cores when each new PG lands on one of its least used cores, so members are preferred whose
//! least used cores include a core the members chosen before can also use — as long as that
//! costs at most one PG of balance.
//!
//! Movement: [`replace`] changes only the members it must (the new member takes the old one's
//! position), and [`rebalance`] proposes single-member moves in bounded rounds.

mod placer;
mod rebalance;
#[cfg(test)]
mod tests;

/// Placement's failures are declared with the other refusals (see `error.rs`).
pub use super::error::PlacementError;
pub use rebalance::{Move, PlannedMove, PoolView, rebalance};

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use placer::Placer;

use super::error::echo;
use super::pool::{FailureDomain, Pool};
use super::topology::{TopoOsd, Topology};
use super::types::OsdId;

/// What placement needs to know about a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub size: u32,
    pub pg_count: u32,
    pub failure_domain: FailureDomain,
    pub root: String,
}

/// The spec of an existing pool.
pub(super) fn spec_of(pool: &Pool) -> PoolSpec {
    PoolSpec {
        size: pool.size,
        pg_count: pool.pg_count,
        failure_domain: pool.failure_domain,
        root: pool.root.clone(),
    }
}

/// Where one PG lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub members: Vec<OsdId>,
    pub core: u32,
}

/// How loaded each OSD is, across all pools: PGs, primaries, and PGs per core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loads {
    osds: HashMap<OsdId, OsdLoad, BuildHasherDefault<IdHasher>>,
}

/// Hashes an OSD id with one multiplication. Placement looks loads up for every candidate OSD,
/// where SipHash would dominate; ids are not attacker-chosen, and the map is never iterated,
/// so its order cannot leak into results.
#[derive(Debug, Clone, Copy, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One OSD's load. An OSD without an entry holds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct OsdLoad {
    pgs: u64,
    primaries: u64,
    /// PGs per core index; missing trailing cores hold none.
    cores: Vec<u64>,
}

impl OsdLoad {
    fn core(&self, core: u32) -> u64 {
        self.cores.get(core as usize).copied().unwrap_or(0)
    }

    /// Whether `core` is among the least used of the first `core_num` cores, i.e. one more PG
    /// there keeps the per-core counts within one of each other.
    fn core_at_min(&self, core: u32, core_num: u32) -> bool {
        core < core_num && (0..core_num).all(|c| self.core(c) >= self.core(core))
    }

    /// Whether `core` is among the most used of the first `core_num` cores, i.e. one PG fewer
    /// there keeps the per-core counts within one of each other.
    fn core_at_max(&self, core: u32, core_num: u32) -> bool {
        core < core_num && (0..core_num).all(|c| self.core(c) <= self.core(core))
    }

    /// The difference between the most and the least used of the first `core_num` cores.
    fn core_spread(&self, core_num: u32) -> u64 {
        let counts = (0..core_num).map(|c| self.core(c));
        counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0)
    }

    /// Moves one PG from core `from` to core `to`.
    fn move_core(&mut self, from: u32, to: u32) {
        if let Some(c) = self.cores.get_mut(from as usize) {
            *c = c.saturating_sub(1);
        }
        if self.cores.len() <= to as usize {
            self.cores.resize(to as usize + 1, 0);
        }
        self.cores[to as usize] += 1;
        while self.cores.last() == Some(&0) {
            self.cores.pop();
        }
    }

    fn add(&mut self, primary: bool, core: u32) {
        self.pgs += 1;
        self.primaries += u64::from(primary);
        if self.cores.len() <= core as usize {
            self.cores.resize(core as usize + 1, 0);
        }
        self.cores[core as usize] += 1;
    }

    fn remove(&mut self, primary: bool, core: u32) {
        self.pgs = self.pgs.saturating_sub(1);
        if primary {
            self.primaries = self.primaries.saturating_sub(1);
        }
        if let Some(c) = self.cores.get_mut(core as usize) {
            *c = c.saturating_sub(1);
        }
        // Trailing empty cores are dropped so equal loads compare equal.
        while self.cores.last() == Some(&0) {
            self.cores.pop();
        }
    }

    fn is_empty(&self) -> bool {
        self.pgs == 0 && self.primaries == 0 && self.cores.is_empty()
    }
}

static NO_LOAD: OsdLoad = OsdLoad {
    pgs: 0,
    primaries: 0,
    cores: Vec::new(),
};

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
            self.osds.entry(*m).or_default().add(i == 0, core);
        }
    }

    /// Forgets one PG.
    pub fn remove(&mut self, members: &[OsdId], core: u32) {
        for (i, m) in members.iter().enumerate() {
            if let Some(l) = self.osds.get_mut(m) {
                l.remove(i == 0, core);
                if l.is_empty() {
                    self.osds.remove(m);
                }
            }
        }
    }

    /// PGs on `osd`.
    pub fn pgs(&self, osd: OsdId) -> u64 {
        self.get(osd).pgs
    }

    /// PGs whose first member is `osd`.
    pub fn primaries(&self, osd: OsdId) -> u64 {
        self.get(osd).primaries
    }

    /// PGs on `osd` served by `core`.
    pub fn core(&self, osd: OsdId, core: u32) -> u64 {
        self.get(osd).core(core)
    }

    fn get(&self, osd: OsdId) -> &OsdLoad {
        self.osds.get(&osd).unwrap_or(&NO_LOAD)
    }
}

/// Checks that `spec` can be placed at all on `topo`.
pub fn check(topo: &Topology, spec: &PoolSpec) -> Result<(), PlacementError> {
    check_without(topo, spec, |_| false)
}

/// Like [`check`], with the OSDs at the indexes `excluded` accepts left out.
fn check_without(
    topo: &Topology,
    spec: &PoolSpec,
    excluded: impl Fn(usize) -> bool,
) -> Result<(), PlacementError> {
    let mut seen = vec![false; topo.domain_count(spec.failure_domain)];
    let (mut available, mut domains) = (0, 0);
    for &i in topo.root_indexes(&spec.root) {
        let i = i as usize;
        if excluded(i) {
            continue;
        }
        available += 1;
        let d = topo.domain_id(i, spec.failure_domain) as usize;
        domains += usize::from(!seen[d]);
        seen[d] = true;
    }
    if available < spec.size as usize {
        return Err(PlacementError::NoEnoughOsd {
            available,
            needed: spec.size,
            root: echo(&spec.root),
        });
    }
    if domains < spec.size as usize {
        return Err(PlacementError::FailureDomainNotSatisfied {
            domains,
            needed: spec.size,
            failure_domain: spec.failure_domain,
            root: echo(&spec.root),
        });
    }
    Ok(())
}

/// Places every PG of a new pool; `loads` is updated with the new PGs (and left unchanged on
/// error).
pub fn place_pool(
    topo: &Topology,
    loads: &mut Loads,
    spec: &PoolSpec,
) -> Result<Vec<Placement>, PlacementError> {
    check(topo, spec)?;
    // `check` guarantees enough domains, so this cannot fail; fail safe anyway.
    let out = Placer::new(topo, loads, spec).place_all().ok_or_else(|| {
        PlacementError::FailureDomainNotSatisfied {
            domains: topo.domains(&spec.root, spec.failure_domain).len(),
            needed: spec.size,
            failure_domain: spec.failure_domain,
            root: echo(&spec.root),
        }
    })?;
    for p in &out {
        loads.add(&p.members, p.core);
    }
    Ok(out)
}

/// Replaces `remove` in `current` with other OSDs, each new member taking the place of the one
/// it replaces, so every other member keeps its position (the primary stays unless it is
/// replaced) and the core is kept. Members that are no longer usable, not under the pool's
/// root, or in a failure domain an earlier member already uses are replaced as well. If no
/// valid OSD can serve the PG's core, the core changes to the best one for the new members.
/// `loads` must not count `current`; the result is not added to it.
pub fn replace(
    topo: &Topology,
    loads: &Loads,
    spec: &PoolSpec,
    current: &Placement,
    remove: &[OsdId],
) -> Result<Placement, PlacementError> {
    let removed: Vec<usize> = remove.iter().filter_map(|m| topo.index_of(*m)).collect();
    check_without(topo, spec, |i| removed.contains(&i))?;
    let fd = spec.failure_domain;
    let size = spec.size as usize;
    let mut slots: Vec<Option<usize>> = Vec::with_capacity(size);
    for m in current.members.iter().take(size) {
        let keep = topo.index_of(*m).filter(|&i| {
            !remove.contains(m)
                && topo.osds()[i].root == spec.root
                && !slots
                    .iter()
                    .flatten()
                    .any(|&k| k == i || topo.domain_id(k, fd) == topo.domain_id(i, fd))
        });
        slots.push(keep);
    }
    slots.resize(size, None);
    let keeps_core = slots
        .iter()
        .flatten()
        .all(|&i| topo.osds()[i].core_num > current.core);
    let fill = |core: Option<u32>| -> Option<Vec<usize>> {
        let mut filled = slots.clone();
        for pos in 0..size {
            if filled[pos].is_none() {
                let chosen: Vec<usize> = filled.iter().flatten().copied().collect();
                let pick = scan_best(topo, loads, spec, &chosen, &removed, pos == 0, core)?;
                filled[pos] = Some(pick);
            }
        }
        filled.into_iter().collect()
    };
    // With the core kept when possible; `check_without` guarantees a fill without that limit.
    let kept_core = if keeps_core {
        fill(Some(current.core))
    } else {
        None
    };
    let (members, core) = match kept_core {
        Some(m) => (m, current.core),
        None => {
            let m = fill(None).ok_or_else(|| PlacementError::FailureDomainNotSatisfied {
                domains: topo.domains(&spec.root, fd).len(),
                needed: spec.size,
                failure_domain: fd,
                root: echo(&spec.root),
            })?;
            let counts: Vec<(u32, &OsdLoad)> = m
                .iter()
                .map(|&i| (topo.osds()[i].core_num, loads.get(topo.osds()[i].id)))
                .collect();
            let salt = current
                .members
                .iter()
                .fold(0, |h, m| mix(h ^ u64::from(m.0)));
            (m, best_core(&counts, None, salt))
        }
    };
    Ok(Placement {
        members: members.iter().map(|&i| topo.osds()[i].id).collect(),
        core,
    })
}

/// The best OSD (index) under the pool's root for one more member next to `chosen`, as
/// `place_pool` would pick it: the lowest marginal cost, or one that suits the slot better if
/// that costs at most one PG of balance. A candidate suits when it has `core` (if given) among
/// its least used cores and, for the primary slot, holds at most one PG more than the least
/// loaded OSD.
fn scan_best(
    topo: &Topology,
    loads: &Loads,
    spec: &PoolSpec,
    chosen: &[usize],
    excluded: &[usize],
    primary: bool,
    core: Option<u32>,
) -> Option<usize> {
    let fd = spec.failure_domain;
    let usable: Vec<(&TopoOsd, &OsdLoad, usize)> = topo
        .root_indexes(&spec.root)
        .iter()
        .map(|&i| i as usize)
        .filter(|i| !excluded.contains(i))
        .map(|i| (&topo.osds()[i], loads.get(topo.osds()[i].id), i))
        .collect();
    // For the primary slot, the cost of a PG more on the least loaded OSD.
    let floor = usable
        .iter()
        .filter(|_| primary)
        .map(|(o, l, _)| Ratio::marginal(l.pgs, o.weight.0, 1))
        .min();
    let mut cheapest: Option<(Key, usize)> = None;
    let mut cheapest_suited: Option<(Key, usize)> = None;
    for &(o, load, i) in &usable {
        if chosen
            .iter()
            .any(|&c| c == i || topo.domain_id(c, fd) == topo.domain_id(i, fd))
            || core.is_some_and(|c| o.core_num <= c)
        {
            continue;
        }
        let key = Key::new(o, load, primary);
        if cheapest.is_none_or(|(b, _)| key < b) {
            cheapest = Some((key, i));
        }
        if cheapest_suited.is_none_or(|(b, _)| key < b)
            && core.is_none_or(|c| load.core_at_min(c, o.core_num))
            && floor.is_none_or(|f| Ratio::marginal(load.pgs, o.weight.0, -1) <= f)
        {
            cheapest_suited = Some((key, i));
        }
    }
    let (cheapest_key, cheapest) = cheapest?;
    Some(match cheapest_suited {
        Some((k, i)) if k.within_one_of(&cheapest_key) => i,
        _ => cheapest,
    })
}

/// The core for a PG whose members have the given core counts and loads: among `preferred`
/// if given and non-empty, else the one that leaves the fewest members off their least used
/// cores; then the least used across the members; then by a hash of `salt` and the core.
///
/// Hashing rather than taking the lowest index matters: if every PG took the lowest of its
/// candidate cores, all OSDs would fill their cores in the same order, their least used cores
/// would be the same ones, and members with a common least used core would be rare.
fn best_core(members: &[(u32, &OsdLoad)], preferred: Option<&[u32]>, salt: u64) -> u32 {
    let cores = members.iter().map(|(n, _)| *n).min().unwrap_or(1).max(1);
    let rank = |c: u32| {
        let uneven = members
            .iter()
            .filter(|(n, l)| !l.core_at_min(c, *n))
            .count();
        let used: u64 = members.iter().map(|(_, l)| l.core(c)).sum();
        (uneven, used, mix(salt ^ u64::from(c)), c)
    };
    match preferred {
        Some(p) if !p.is_empty() => p.iter().copied().min_by_key(|&c| rank(c)),
        _ => (0..cores).min_by_key(|&c| rank(c)),
    }
    .unwrap_or(0)
}

/// A rational compared exactly: `num / den`.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    num: i64,
    den: u64,
}

impl Ratio {
    /// `num / weight` (a weight of 0 counts as 1).
    fn new(num: i64, weight: u32) -> Ratio {
        Ratio {
            num,
            den: u64::from(weight.max(1)),
        }
    }

    /// The change of n²/w when n on an OSD of weight `w` grows by one (`sign` 1) or shrinks
    /// by one (`sign` -1): (2n ± 1)/w.
    fn marginal(n: u64, weight: u32, sign: i64) -> Ratio {
        Ratio::new(2 * n as i64 + sign, weight)
    }
}

impl Ord for Ratio {
    fn cmp(&self, other: &Self) -> Ordering {
        (i128::from(self.num) * i128::from(other.den))
            .cmp(&(i128::from(other.num) * i128::from(self.den)))
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ratio {}

/// How good a candidate is for one slot, lower first: the marginal cost of its primaries (for
/// the primary slot) or of its PGs (for the others), then a tie-break.
///
/// The cost is kept in fixed point, which orders exactly for weights up to 2^17 (beyond
/// [`Weight::MAX`](super::types::Weight::MAX)) and makes comparisons cheap. The tie-break is a
/// hash of the OSD and its count rather than its id: among equally loaded OSDs the id order
/// would keep pairing the same hosts, where the hash spreads each OSD's PGs over many peers
/// (faster recovery when one fails) and changes whenever the OSD is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    cost: u64,
    tie: u64,
    id: OsdId,
    /// The count and weight the cost comes from (never decide the order: ids are unique).
    count: u64,
    weight: u32,
}

impl Key {
    fn new(o: &TopoOsd, load: &OsdLoad, primary: bool) -> Key {
        let n = if primary { load.primaries } else { load.pgs };
        let w = o.weight.0.max(1);
        // Two costs (2n+1)/w that differ, differ by at least 1/(w·w') ≥ 2^-34.
        let num = 2 * n + 1;
        let cost = if num < 1 << 30 {
            (num << 34) / u64::from(w)
        } else {
            u64::try_from((u128::from(num) << 34) / u128::from(w)).unwrap_or(u64::MAX)
        };
        Key {
            cost,
            tie: mix(u64::from(o.id.0) ^ (n << 32) ^ (u64::from(primary) << 63)),
            id: o.id,
            count: n,
            weight: w,
        }
    }

    /// The last possible key with this cost.
    fn level_end(&self) -> Key {
        Key {
            cost: self.cost,
            tie: u64::MAX,
            id: OsdId(u32::MAX),
            count: u64::MAX,
            weight: u32::MAX,
        }
    }

    /// Whether this candidate, taking one more, ends no worse than `best` ends taking one:
    /// choosing it over `best` for another reason costs at most one PG of balance.
    fn within_one_of(&self, best: &Key) -> bool {
        Ratio::marginal(self.count, self.weight, -1) <= Ratio::marginal(best.count, best.weight, 1)
    }
}

/// splitmix64's finaliser: a fixed, well-mixing hash.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

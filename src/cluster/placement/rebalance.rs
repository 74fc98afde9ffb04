//! Rebalancing: bounded rounds of single-member moves from over- to under-loaded OSDs.
//!
//! Every move replaces one member of one PG and strictly lowers Φ = Σ (n² + p²)/w over the
//! OSDs (n PGs, p primaries, w weight), the quantity placement minimises. Φ takes finitely
//! many values, so repeating rounds (applying their moves) ends with an empty round.
//!
//! A PG moves only when the receiver stays lighter than the donor after the move, per unit of
//! weight: (n_to + 1)/w_to < (n_from − 1)/w_from. That implies Φ drops, and it leaves alone
//! the ±1 differences that any placement of whole PGs has, so a new OSD receives about its
//! fair share and little else moves. Primaries are balanced along the way: a PG that moves
//! moves its primary slot when that evens primaries; a primary alone moves only between OSDs
//! where the receiver holds no more PGs (per weight) than the donor.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::super::pool::FailureDomain;
use super::super::topology::Topology;
use super::super::types::{OsdId, PgId, PoolId};
use super::{OsdLoad, Placement, PoolSpec, Ratio};

/// One pool as rebalancing sees it: its spec and its PGs' current placements (for a PG in the
/// middle of a membership change, its target).
#[derive(Debug, Clone, Copy)]
pub struct PoolView<'a> {
    /// Names the pool in the moves.
    pub id: PoolId,
    pub spec: &'a PoolSpec,
    /// Every PG of the pool; PGs without a valid placement count in the loads but stay.
    pub pgs: &'a [(PgId, Placement)],
}

/// One proposed change: PG `pg` of `pool` gets the placement `to`, which differs from the
/// current one only in that `by` takes the position of `replaced` (the core is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub pool: PoolId,
    pub pg: PgId,
    /// The member that leaves.
    pub replaced: OsdId,
    /// The OSD that takes its position.
    pub by: OsdId,
    /// The PG's new placement.
    pub to: Placement,
}

/// One planned move: the PG's members were `from`; it is to be remapped to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMove {
    pub pg: PgId,
    pub from: Vec<OsdId>,
    pub to: Placement,
}

/// At most `max_moves` single-member moves that bring PG counts (and primaries) closer to
/// weight-proportional, counting every pool; empty when balanced. At most one move per PG.
///
/// Only PGs whose placement is valid (`size` distinct usable members under the pool's root,
/// one per failure domain, a core every member has) move; the others still count in the
/// loads. Every move keeps the placement valid, keeps the core, and keeps the primary unless
/// the primary is the member replaced (the new member then becomes the primary).
pub fn rebalance(topo: &Topology, pools: &[PoolView], max_moves: usize) -> Vec<Move> {
    let mut moves = Vec::new();
    if max_moves == 0 {
        return moves;
    }
    let mut state = State::new(topo, pools);
    // Roots take turns so that one root's backlog does not use up every round.
    let mut active: Vec<Root> = state.roots();
    while moves.len() < max_moves && !active.is_empty() {
        let mut r = 0;
        while r < active.len() && moves.len() < max_moves {
            match state.find_move(&mut active[r]) {
                Some(m) => {
                    moves.push(state.apply(&mut active[r], m));
                    r += 1;
                }
                None => {
                    active.remove(r);
                }
            }
        }
    }
    moves
}

/// One pool's PGs in index form.
struct PoolState<'a> {
    view: &'a PoolView<'a>,
    size: usize,
    /// Members (topology indexes) of every PG, `size` per PG; only read for movable PGs.
    members: Vec<u32>,
    /// Whether the PG may move in this round: valid and not moved yet.
    movable: Vec<bool>,
    /// Per failure domain, how many valid PGs have a member in it.
    occupancy: Vec<u32>,
    valid: u32,
}

impl PoolState<'_> {
    fn fd(&self) -> FailureDomain {
        self.view.spec.failure_domain
    }

    fn members(&self, pg: usize) -> &[u32] {
        &self.members[pg * self.size..(pg + 1) * self.size]
    }
}

/// How many donors a PG move looks at for one whose core suits both OSDs, when the first
/// donors only have PGs on other cores.
const FIT_DONORS: usize = 32;

/// How a move affects the per-core evenness of its two OSDs; the default (false, false) is a
/// move that keeps both even.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Fit {
    /// The core is not among the receiver's least used.
    uneven_to: bool,
    /// The core is not among the donor's most used.
    uneven_from: bool,
}

/// A member slot: member `slot` of PG `pg` (index into the pool's `pgs`) of pool `pool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    pool: u32,
    pg: u32,
    slot: u32,
}

/// A chosen move: `slot`'s member goes to the OSD at index `to`.
struct Candidate {
    slot: Slot,
    to: u32,
}

/// The OSDs of one root, ordered as receivers and donors of PGs and of primaries: by the
/// load per weight they would have after receiving one more or giving one away.
#[derive(Default)]
struct Root {
    receivers: BTreeSet<(Ratio, Ratio, u32)>,
    donors: BTreeSet<(Ratio, Ratio, u32)>,
    primary_receivers: BTreeSet<(Ratio, u32)>,
    primary_donors: BTreeSet<(Ratio, u32)>,
    /// OSDs found with no possible move in, this round (by PGs, by primaries).
    stuck: BTreeSet<u32>,
    primary_stuck: BTreeSet<u32>,
}

struct State<'a> {
    topo: &'a Topology,
    pools: Vec<PoolState<'a>>,
    /// By topology index.
    loads: Vec<OsdLoad>,
    /// By topology index: the member slots of movable PGs the OSD holds, grouped by pool.
    slots: Vec<Vec<Slot>>,
}

impl<'a> State<'a> {
    fn new(topo: &'a Topology, views: &'a [PoolView<'a>]) -> State<'a> {
        let n = topo.osds().len();
        let mut loads = vec![OsdLoad::default(); n];
        let mut slots: Vec<Vec<Slot>> = vec![Vec::new(); n];
        let mut pools = Vec::with_capacity(views.len());
        for (pi, view) in views.iter().enumerate() {
            let spec = view.spec;
            let size = spec.size as usize;
            let fd = spec.failure_domain;
            let mut pool = PoolState {
                view,
                size,
                members: vec![u32::MAX; view.pgs.len() * size],
                movable: vec![false; view.pgs.len()],
                occupancy: vec![0; topo.domain_count(fd)],
                valid: 0,
            };
            let mut members: Vec<Option<usize>> = Vec::new();
            for (gi, (_, p)) in view.pgs.iter().enumerate() {
                members.clear();
                members.extend(p.members.iter().map(|m| topo.index_of(*m)));
                for (slot, m) in members.iter().enumerate() {
                    if let Some(i) = m {
                        loads[*i].add(slot == 0, p.core);
                    }
                }
                let valid = members.len() == size
                    && members.iter().enumerate().all(|(k, m)| {
                        m.is_some_and(|i| {
                            let o = &topo.osds()[i];
                            o.root == spec.root
                                && o.core_num > p.core
                                && members[..k].iter().flatten().all(|&j| {
                                    topo.domain_id(j, fd) != topo.domain_id(i, fd) && j != i
                                })
                        })
                    });
                if !valid {
                    continue;
                }
                pool.valid += 1;
                pool.movable[gi] = true;
                for (slot, &i) in members.iter().flatten().enumerate() {
                    pool.members[gi * size + slot] = i as u32;
                    pool.occupancy[topo.domain_id(i, fd) as usize] += 1;
                    slots[i].push(Slot {
                        pool: pi as u32,
                        pg: gi as u32,
                        slot: slot as u32,
                    });
                }
            }
            pools.push(pool);
        }
        State {
            topo,
            pools,
            loads,
            slots,
        }
    }

    /// The roots some pool uses, with their OSDs ordered.
    fn roots(&self) -> Vec<Root> {
        let mut names: Vec<&str> = self
            .pools
            .iter()
            .map(|p| p.view.spec.root.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let mut root = Root::default();
                for &i in self.topo.root_indexes(name) {
                    self.insert(&mut root, i);
                }
                root
            })
            .filter(|r| !r.receivers.is_empty())
            .collect()
    }

    fn costs(&self, i: u32) -> Costs {
        let l = &self.loads[i as usize];
        let w = self.topo.osds()[i as usize].weight.0;
        let (n, p) = (l.pgs as i64, l.primaries as i64);
        Costs {
            pgs: Ratio::new(n, w),
            receive_pgs: Ratio::new(n + 1, w),
            give_pgs: Ratio::new(n - 1, w),
            receive_primaries: Ratio::new(p + 1, w),
            give_primaries: Ratio::new(p - 1, w),
            marginal_receive_primary: Ratio::marginal(l.primaries, w, 1),
            marginal_give_primary: Ratio::marginal(l.primaries, w, -1),
        }
    }

    fn insert(&self, root: &mut Root, i: u32) {
        let c = self.costs(i);
        root.receivers
            .insert((c.receive_pgs, c.receive_primaries, i));
        root.donors.insert((c.give_pgs, c.give_primaries, i));
        root.primary_receivers.insert((c.receive_primaries, i));
        root.primary_donors.insert((c.give_primaries, i));
    }

    fn remove(&self, root: &mut Root, i: u32) {
        let c = self.costs(i);
        root.receivers
            .remove(&(c.receive_pgs, c.receive_primaries, i));
        root.donors.remove(&(c.give_pgs, c.give_primaries, i));
        root.primary_receivers.remove(&(c.receive_primaries, i));
        root.primary_donors.remove(&(c.give_primaries, i));
    }

    /// The best move within `root`: first one that evens PG counts (moving a primary slot
    /// when that evens primaries too), then one that evens primaries.
    fn find_move(&self, root: &mut Root) -> Option<Candidate> {
        for &(receive, _, to) in &root.receivers {
            if root.stuck.contains(&to) {
                continue;
            }
            // The lightest OSD that can still receive gains from no donor: no other does.
            if root.donors.last().is_none_or(|d| receive >= d.0) {
                break;
            }
            let cb = self.costs(to);
            let mut found: Option<(Fit, Slot)> = None;
            let mut donors = 0;
            for &(give, _, from) in root.donors.iter().rev() {
                if receive >= give || (found.is_some() && donors >= FIT_DONORS) {
                    break;
                }
                if from == to {
                    continue;
                }
                donors += 1;
                let ca = self.costs(from);
                // The change of Σ p²/w if the primary slot moves.
                let primaries = cb.marginal_receive_primary.cmp(&ca.marginal_give_primary);
                let kinds: &[bool] = match primaries {
                    Ordering::Less => &[true, false],
                    Ordering::Equal => &[false, true],
                    Ordering::Greater => &[false],
                };
                let Some(fit) = kinds.iter().find_map(|&p| self.find_slot(from, to, p)) else {
                    continue;
                };
                if fit.0 == Fit::default() {
                    return Some(Candidate { slot: fit.1, to });
                }
                if found.is_none_or(|f| fit.0 < f.0) {
                    found = Some(fit);
                }
            }
            if let Some((_, slot)) = found {
                return Some(Candidate { slot, to });
            }
            root.stuck.insert(to);
        }
        for &(receive, to) in &root.primary_receivers {
            if root.primary_stuck.contains(&to) {
                continue;
            }
            if root.primary_donors.last().is_none_or(|d| receive >= d.0) {
                break;
            }
            let cb = self.costs(to);
            for &(give, from) in root.primary_donors.iter().rev() {
                if receive >= give {
                    break;
                }
                if from != to
                    && cb.pgs <= self.costs(from).pgs
                    && let Some((_, slot)) = self.find_slot(from, to, true)
                {
                    return Some(Candidate { slot, to });
                }
            }
            root.primary_stuck.insert(to);
        }
        None
    }

    /// A slot of OSD `from` (the primary slot or another) that OSD `to` can take, preferring
    /// one whose core is among `to`'s least and `from`'s most used cores.
    fn find_slot(&self, from: u32, to: u32, primary: bool) -> Option<(Fit, Slot)> {
        let topo = self.topo;
        let (src, dst) = (&topo.osds()[from as usize], &topo.osds()[to as usize]);
        let (src_load, dst_load) = (&self.loads[from as usize], &self.loads[to as usize]);
        let mut best: Option<(Fit, Slot)> = None;
        let mut rest = self.slots[from as usize].as_slice();
        while let Some(first) = rest.first() {
            // The slots are grouped by pool: this pool's run.
            let (run, after) = rest.split_at(rest.partition_point(|s| s.pool == first.pool));
            rest = after;
            let pool = &self.pools[first.pool as usize];
            let fd = pool.fd();
            let to_domain = topo.domain_id(to as usize, fd);
            // When every valid PG has a member in `to`'s domain, only a member of that same
            // domain can make room (a failure domain that every PG needs, say).
            if pool.occupancy[to_domain as usize] >= pool.valid
                && topo.domain_id(from as usize, fd) != to_domain
            {
                continue;
            }
            for &s in run {
                let pg = s.pg as usize;
                if (s.slot == 0) != primary || !pool.movable[pg] {
                    continue;
                }
                let core = pool.view.pgs[pg].1.core;
                let members = pool.members(pg);
                if dst.core_num <= core
                    || members.iter().enumerate().any(|(k, &m)| {
                        m == to
                            || (k != s.slot as usize && topo.domain_id(m as usize, fd) == to_domain)
                    })
                {
                    continue;
                }
                let fit = Fit {
                    uneven_to: !dst_load.core_at_min(core, dst.core_num),
                    uneven_from: !src_load.core_at_max(core, src.core_num),
                };
                if fit == Fit::default() {
                    return Some((fit, s));
                }
                if best.is_none_or(|(b, _)| fit < b) {
                    best = Some((fit, s));
                }
            }
        }
        best
    }

    /// Applies a move found by `find_move` and describes it.
    fn apply(&mut self, root: &mut Root, c: Candidate) -> Move {
        let Candidate { slot: s, to } = c;
        let (pi, pg, k) = (s.pool as usize, s.pg as usize, s.slot as usize);
        let size = self.pools[pi].size;
        let from = self.pools[pi].members[pg * size + k];
        let core = self.pools[pi].view.pgs[pg].1.core;
        self.remove(root, from);
        self.remove(root, to);
        self.loads[from as usize].remove(k == 0, core);
        self.loads[to as usize].add(k == 0, core);
        self.insert(root, from);
        self.insert(root, to);
        let topo = self.topo;
        let pool = &mut self.pools[pi];
        let fd = pool.fd();
        pool.members[pg * size + k] = to;
        pool.movable[pg] = false;
        pool.occupancy[topo.domain_id(from as usize, fd) as usize] -= 1;
        pool.occupancy[topo.domain_id(to as usize, fd) as usize] += 1;
        let (id, current) = &pool.view.pgs[pg];
        let mut members = current.members.clone();
        members[k] = topo.osds()[to as usize].id;
        Move {
            pool: pool.view.id,
            pg: *id,
            replaced: topo.osds()[from as usize].id,
            by: topo.osds()[to as usize].id,
            to: Placement { members, core },
        }
    }
}

/// One OSD's load per weight as it is, after receiving one more or giving one away, and the
/// marginal change of p²/w of a primary more or fewer.
struct Costs {
    pgs: Ratio,
    receive_pgs: Ratio,
    give_pgs: Ratio,
    receive_primaries: Ratio,
    give_primaries: Ratio,
    marginal_receive_primary: Ratio,
    marginal_give_primary: Ratio,
}

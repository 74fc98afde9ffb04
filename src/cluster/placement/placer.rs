//! The greedy placement of a new pool over one root.
//!
//! The root's OSDs are kept ordered by primary cost, and per failure domain by PG cost. Each
//! PG takes as primary the OSD with the fewest primaries (per weight), and as other members
//! the cheapest OSDs of failure domains it does not use yet. A non-primary member is
//! preferably one that has, among its least used cores, a core that the members before it
//! also have there; the PG then uses such a core. When the greedy has to take a member
//! without one, a last pass moves PGs between cores to even out the OSDs it left uneven.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

use super::super::topology::{TopoOsd, Topology};
use super::{Key, Loads, OsdLoad, Placement, PoolSpec, best_core};

/// How many candidates of one failure domain a pick looks at in one load level for one whose
/// cores fit, before it goes on to the next level (all of a level may miss the same core).
const CORE_SEARCH: usize = 16;
/// How many candidates a pick looks at, at most, for one that suits it better than the
/// cheapest: bounds the time of a pick when few OSDs do (unequal core counts).
const SEARCH_MAX: usize = 64;

/// The state of one `place_pool`: the root's OSDs with their loads, counting the PGs placed
/// so far, ordered by primary cost and, per failure domain, by PG cost.
pub(super) struct Placer<'a> {
    topo: &'a Topology,
    spec: &'a PoolSpec,
    /// Topology indexes of the root's OSDs; positions in this list index everything below.
    osds: &'a [u32],
    loads: Vec<OsdLoad>,
    /// Each OSD's failure domain (a topology domain number).
    domains: Vec<u32>,
    by_primary: BTreeSet<(Key, u32)>,
    /// Per failure domain, its OSDs by PG cost. Grouped by domain so that a pick skips a
    /// domain the PG already uses at once, rather than each of its OSDs: with unequal racks
    /// the cheapest OSDs may all sit in one rack.
    by_pgs: Vec<BTreeSet<(Key, u32)>>,
    /// The cheapest OSD of every domain, with its domain: (key, domain, position).
    heads: BTreeSet<(Key, u32, u32)>,
}

/// A PG placed by the greedy: its members (positions) and core.
type Placed = (Vec<u32>, u32);

impl<'a> Placer<'a> {
    pub(super) fn new(topo: &'a Topology, loads: &Loads, spec: &'a PoolSpec) -> Placer<'a> {
        let osds = topo.root_indexes(&spec.root);
        let loads: Vec<OsdLoad> = osds
            .iter()
            .map(|&i| loads.get(topo.osds()[i as usize].id).clone())
            .collect();
        let domains = osds
            .iter()
            .map(|&i| topo.domain_id(i as usize, spec.failure_domain))
            .collect();
        let mut p = Placer {
            topo,
            spec,
            osds,
            loads,
            domains,
            by_primary: BTreeSet::new(),
            by_pgs: vec![BTreeSet::new(); topo.domain_count(spec.failure_domain)],
            heads: BTreeSet::new(),
        };
        for pos in 0..osds.len() as u32 {
            p.by_primary.insert((p.key(pos, true), pos));
            p.requeue(pos, |set, entry| set.insert(entry));
        }
        p
    }

    /// Places every PG of the pool; None if some PG finds too few failure domains.
    pub(super) fn place_all(mut self) -> Option<Vec<Placement>> {
        let mut placed: Vec<Placed> = Vec::with_capacity(self.spec.pg_count as usize);
        for pg in 0..self.spec.pg_count {
            placed.push(self.place_one(u64::from(pg))?);
        }
        self.even_cores(&mut placed);
        Some(
            placed
                .into_iter()
                .map(|(members, core)| Placement {
                    members: members.iter().map(|&p| self.osd(p).id).collect(),
                    core,
                })
                .collect(),
        )
    }

    fn osd(&self, pos: u32) -> &'a TopoOsd {
        &self.topo.osds()[self.osds[pos as usize] as usize]
    }

    fn key(&self, pos: u32, primary: bool) -> Key {
        Key::new(self.osd(pos), &self.loads[pos as usize], primary)
    }

    /// Inserts (or removes) the OSD at `pos` in its domain's order by PG cost, keeping
    /// `heads` up to date.
    fn requeue(
        &mut self,
        pos: u32,
        change: impl FnOnce(&mut BTreeSet<(Key, u32)>, (Key, u32)) -> bool,
    ) {
        let entry = (self.key(pos, false), pos);
        let d = self.domains[pos as usize];
        let set = &mut self.by_pgs[d as usize];
        let before = set.first().copied();
        change(set, entry);
        let after = set.first().copied();
        if before != after {
            if let Some((k, p)) = before {
                self.heads.remove(&(k, d, p));
            }
            if let Some((k, p)) = after {
                self.heads.insert((k, d, p));
            }
        }
    }

    /// Chooses the members and core of one more PG and counts it.
    fn place_one(&mut self, pg: u64) -> Option<Placed> {
        let size = self.spec.size as usize;
        let mut members: Vec<u32> = Vec::with_capacity(size);
        // Cores every member so far has among its least used; None once a member had to be
        // taken without one in common.
        let mut common: Option<Vec<u32>> = None;
        for slot in 0..size {
            let pos = if slot == 0 {
                self.pick_primary()?
            } else {
                self.pick_member(&members, common.as_deref())?
            };
            let o = self.osd(pos);
            let load = &self.loads[pos as usize];
            let fits = |c: &u32| load.core_at_min(*c, o.core_num);
            common = match common {
                None if slot == 0 => Some((0..o.core_num).filter(fits).collect()),
                Some(mut c) if c.iter().any(fits) => {
                    c.retain(fits);
                    Some(c)
                }
                _ => None,
            };
            members.push(pos);
        }
        let counts: Vec<(u32, &OsdLoad)> = members
            .iter()
            .map(|&p| (self.osd(p).core_num, &self.loads[p as usize]))
            .collect();
        let core = best_core(&counts, common.as_deref(), pg);
        for (slot, &pos) in members.iter().enumerate() {
            // Only the primary's primary count (the key of `by_primary`) changes.
            if slot == 0 {
                self.by_primary.remove(&(self.key(pos, true), pos));
            }
            self.requeue(pos, |set, entry| set.remove(&entry));
            self.loads[pos as usize].add(slot == 0, core);
            if slot == 0 {
                self.by_primary.insert((self.key(pos, true), pos));
            }
            self.requeue(pos, |set, entry| set.insert(entry));
        }
        Some((members, core))
    }

    /// Whether an OSD whose PG cost is `key` would end at most one PG above the OSD with the
    /// fewest PGs: the most a pick gives up to prefer a candidate for another reason.
    fn within_band(&self, key: &Key) -> bool {
        self.heads
            .first()
            .is_none_or(|(floor, _, _)| key.within_one_of(floor))
    }

    /// The primary: the OSD with the fewest primaries (per weight) among those within the band
    /// of PGs, or the one with the fewest primaries if none is.
    fn pick_primary(&self) -> Option<u32> {
        let mut candidates = self.by_primary.iter().take(SEARCH_MAX);
        let &(_, cheapest) = candidates.next()?;
        if self.within_band(&self.key(cheapest, false)) {
            return Some(cheapest);
        }
        let suited = candidates.find(|&&(_, pos)| self.within_band(&self.key(pos, false)));
        Some(suited.map_or(cheapest, |&(_, pos)| pos))
    }

    /// Another member: in a failure domain `members` do not use, the cheapest OSD that fits a
    /// core of `common` (has it among its least used cores) if it ends at most one PG above
    /// the cheapest OSD there, or else the cheapest.
    fn pick_member(&self, members: &[u32], common: Option<&[u32]>) -> Option<u32> {
        let mut cheapest: Option<(Key, u32)> = None;
        let mut suited: Option<(Key, u32)> = None;
        let mut looked = 0;
        let within_band = |key: &Key, cheapest: &Option<(Key, u32)>| {
            cheapest.is_none_or(|(c, _)| key.within_one_of(&c))
        };
        for &(head, d, pos) in &self.heads {
            if members.iter().any(|&m| self.domains[m as usize] == d) {
                continue;
            }
            let Some(common) = common else {
                return Some(pos);
            };
            // Domains come cheapest first: none further on has a better candidate.
            if !within_band(&head, &cheapest) || suited.is_some_and(|(k, _)| head >= k) {
                break;
            }
            cheapest.get_or_insert((head, pos));
            // The current load level's cost, and how many candidates were looked at in it.
            let mut level: Option<(u64, usize)> = None;
            let set = &self.by_pgs[d as usize];
            let mut candidates = set.range(..);
            while let Some(&(key, pos)) = candidates.next() {
                if !within_band(&key, &cheapest) || suited.is_some_and(|(k, _)| key >= k) {
                    break;
                }
                if self.fits(pos, common) {
                    suited = Some((key, pos));
                    break;
                }
                looked += 1;
                if looked == SEARCH_MAX {
                    return suited.or(cheapest).map(|(_, p)| p);
                }
                let in_level = match level {
                    Some((cost, n)) if cost == key.cost => n + 1,
                    _ => 1,
                };
                level = Some((key.cost, in_level));
                if in_level == CORE_SEARCH {
                    // Go on with the next load level.
                    candidates = set.range((Excluded((key.level_end(), u32::MAX)), Unbounded));
                }
            }
        }
        suited.or(cheapest).map(|(_, p)| p)
    }

    /// Whether one of `cores` is among the least used of the OSD at `pos`.
    fn fits(&self, pos: u32, cores: &[u32]) -> bool {
        let (o, load) = (self.osd(pos), &self.loads[pos as usize]);
        cores.iter().any(|&c| load.core_at_min(c, o.core_num))
    }

    /// Moves new PGs off the most used core of each OSD whose cores ended more than one PG
    /// apart, onto its least used core, where every member has fewer PGs on the new core than
    /// on the old: no member gets less even, and Σ count² over all cores of all OSDs drops
    /// with every move, so this ends.
    fn even_cores(&mut self, placed: &mut [Placed]) {
        let mut pgs_of: BTreeMap<u32, Vec<usize>> = (0..self.osds.len() as u32)
            .filter(|&pos| self.spread(pos) > 1)
            .map(|pos| (pos, Vec::new()))
            .collect();
        if pgs_of.is_empty() {
            return;
        }
        for (g, (members, _)) in placed.iter().enumerate() {
            for m in members {
                if let Some(pgs) = pgs_of.get_mut(m) {
                    pgs.push(g);
                }
            }
        }
        for (pos, pgs) in pgs_of {
            while self.spread(pos) > 1 {
                let Some((g, to)) = pgs
                    .iter()
                    .find_map(|&g| Some((g, self.evening_core(&placed[g], pos)?)))
                else {
                    break;
                };
                let (members, core) = &mut placed[g];
                for &m in members.iter() {
                    self.loads[m as usize].move_core(*core, to);
                }
                *core = to;
            }
        }
    }

    /// A core that PG `(members, core)` could move to, off a most used core of the OSD at
    /// `pos` onto a least used one, with every member holding fewer PGs on it than on `core`.
    fn evening_core(&self, (members, core): &Placed, pos: u32) -> Option<u32> {
        let (o, load) = (self.osd(pos), &self.loads[pos as usize]);
        if !load.core_at_max(*core, o.core_num) {
            return None;
        }
        let cores = members.iter().map(|&m| self.osd(m).core_num).min()?;
        (0..cores).find(|&c| {
            load.core_at_min(c, o.core_num)
                && members.iter().all(|&m| {
                    let l = &self.loads[m as usize];
                    l.core(c) < l.core(*core)
                })
        })
    }

    /// The difference between the most and the least used core of the OSD at `pos`.
    fn spread(&self, pos: u32) -> u64 {
        self.loads[pos as usize].core_spread(self.osd(pos).core_num)
    }
}

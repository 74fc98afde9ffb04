//! The placement view of the osdmap: which OSDs can hold PGs, their weights, and the failure
//! domain each belongs to at every level (root → rack → host → OSD).
//!
//! Besides the OSDs themselves the view keeps dense indexes that placement works with: every
//! OSD's position (its index), each failure domain as a small integer per level, and the OSDs
//! of each root. Indexes follow the id order, so everything derived from them is deterministic.

use std::collections::BTreeMap;

use super::osd::Osd;
use super::pool::FailureDomain;
use super::types::{OsdId, Weight};

/// An OSD that placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoOsd {
    pub id: OsdId,
    pub weight: Weight,
    pub host: String,
    /// None: the OSD's host is its own rack-level domain.
    pub rack: Option<String>,
    pub root: String,
    pub core_num: u32,
}

impl TopoOsd {
    /// The placement view of one osdmap OSD; None unless it is in and weighs more than 0.
    pub fn usable(o: &Osd) -> Option<TopoOsd> {
        (o.is_in() && o.weight.0 > 0).then(|| TopoOsd {
            id: o.id,
            weight: o.weight,
            host: o.location.host.clone(),
            rack: o.location.rack.clone(),
            root: o.location.root.clone(),
            core_num: o.core_num.max(1),
        })
    }

    /// The OSD's failure domain at level `fd`, as a comparable key.
    pub fn domain(&self, fd: FailureDomain) -> DomainKey {
        match fd {
            FailureDomain::Osd => DomainKey(format!("osd/{}", self.id.0)),
            FailureDomain::Host => DomainKey(format!("host/{}", self.host)),
            // An OSD without a rack label is its host's own rack: a host never spans racks.
            FailureDomain::Rack => match &self.rack {
                Some(r) => DomainKey(format!("rack/{r}")),
                None => DomainKey(format!("host/{}", self.host)),
            },
            FailureDomain::Root => DomainKey(format!("root/{}", self.root)),
        }
    }
}

/// Identifies one failure domain (e.g. `host/node7`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainKey(pub String);

/// The failure-domain levels, in the order of [`Topology`]'s dense domain tables.
const LEVELS: [FailureDomain; 4] = [
    FailureDomain::Osd,
    FailureDomain::Host,
    FailureDomain::Rack,
    FailureDomain::Root,
];

fn level(fd: FailureDomain) -> usize {
    match fd {
        FailureDomain::Osd => 0,
        FailureDomain::Host => 1,
        FailureDomain::Rack => 2,
        FailureDomain::Root => 3,
    }
}

/// What tells `TopoOsd::domain`'s keys apart at level `fd`, without building them: a label,
/// and whether a rack-level label names a rack rather than (for an OSD without a rack) its
/// host. None at the OSD level, where every OSD is its own domain.
fn domain_label(o: &TopoOsd, fd: FailureDomain) -> Option<(bool, &str)> {
    match fd {
        FailureDomain::Osd => None,
        FailureDomain::Host => Some((false, &o.host)),
        FailureDomain::Rack => Some(match &o.rack {
            Some(r) => (true, r),
            None => (false, &o.host),
        }),
        FailureDomain::Root => Some((false, &o.root)),
    }
}

/// The OSDs placement may use: in, with a positive weight, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    osds: Vec<TopoOsd>,
    /// Per level (see `LEVELS`), each OSD's domain as a dense number, parallel to `osds`. Two
    /// OSDs share a number exactly when `TopoOsd::domain` gives them the same key.
    domain_ids: [Vec<u32>; 4],
    /// Per level, how many distinct domains there are.
    domain_counts: [usize; 4],
    /// Indexes of each root's OSDs, ascending.
    roots: BTreeMap<String, Vec<u32>>,
}

impl Topology {
    /// Builds the view from osdmap OSDs: only OSDs that are in and weigh more than 0.
    pub fn from_osds<'a>(osds: impl IntoIterator<Item = &'a Osd>) -> Topology {
        Topology::build(osds.into_iter().filter_map(TopoOsd::usable).collect())
    }

    /// Builds the view from explicit OSDs (tests and benchmarks). OSDs weighing 0 are left
    /// out, a core count of 0 counts as 1, and of two OSDs with the same id the first is kept.
    pub fn from_topo_osds(mut osds: Vec<TopoOsd>) -> Topology {
        osds.retain(|o| o.weight.0 > 0);
        for o in &mut osds {
            o.core_num = o.core_num.max(1);
        }
        Topology::build(osds)
    }

    fn build(mut osds: Vec<TopoOsd>) -> Topology {
        osds.sort_by_key(|o| o.id);
        osds.dedup_by_key(|o| o.id);
        let mut domain_ids: [Vec<u32>; 4] = Default::default();
        let mut domain_counts = [0; 4];
        for (l, fd) in LEVELS.into_iter().enumerate() {
            // Numbered in order of first appearance (by OSD id), which is deterministic.
            let mut numbers: BTreeMap<(bool, &str), u32> = BTreeMap::new();
            domain_ids[l] = osds
                .iter()
                .enumerate()
                .map(|(i, o)| match domain_label(o, fd) {
                    None => i as u32,
                    Some(label) => {
                        let next = numbers.len() as u32;
                        *numbers.entry(label).or_insert(next)
                    }
                })
                .collect();
            domain_counts[l] = if fd == FailureDomain::Osd {
                osds.len()
            } else {
                numbers.len()
            };
        }
        let mut roots: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (i, o) in osds.iter().enumerate() {
            roots.entry(o.root.clone()).or_default().push(i as u32);
        }
        Topology {
            osds,
            domain_ids,
            domain_counts,
            roots,
        }
    }

    /// Every usable OSD.
    pub fn osds(&self) -> &[TopoOsd] {
        &self.osds
    }

    /// Usable OSDs under `root`.
    pub fn under_root<'a>(&'a self, root: &'a str) -> impl Iterator<Item = &'a TopoOsd> + 'a {
        self.root_indexes(root)
            .iter()
            .map(|&i| &self.osds[i as usize])
    }

    /// The OSD with `id`, if usable.
    pub fn get(&self, id: OsdId) -> Option<&TopoOsd> {
        self.index_of(id).map(|i| &self.osds[i])
    }

    /// Distinct domains at level `fd` under `root`, with their OSD counts.
    pub fn domains(&self, root: &str, fd: FailureDomain) -> BTreeMap<DomainKey, usize> {
        let mut out = BTreeMap::new();
        for o in self.under_root(root) {
            *out.entry(o.domain(fd)).or_insert(0) += 1;
        }
        out
    }

    /// The index of the OSD with `id` in [`Topology::osds`], if usable.
    pub fn index_of(&self, id: OsdId) -> Option<usize> {
        self.osds.binary_search_by_key(&id, |o| o.id).ok()
    }

    /// Indexes (into [`Topology::osds`]) of the usable OSDs under `root`, ascending.
    pub fn root_indexes(&self, root: &str) -> &[u32] {
        self.roots.get(root).map_or(&[], Vec::as_slice)
    }

    /// The failure domain at level `fd` of the OSD at `index`, as a dense number: equal for
    /// two OSDs exactly when [`TopoOsd::domain`] is; below [`Topology::domain_count`].
    ///
    /// Panics if `index` is not below `osds().len()`.
    pub fn domain_id(&self, index: usize, fd: FailureDomain) -> u32 {
        self.domain_ids[level(fd)][index]
    }

    /// How many distinct domains there are at level `fd` (under all roots).
    pub fn domain_count(&self, fd: FailureDomain) -> usize {
        self.domain_counts[level(fd)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osd(id: u32, host: &str, rack: Option<&str>, root: &str) -> TopoOsd {
        TopoOsd {
            id: OsdId(id),
            weight: Weight::DEFAULT,
            host: host.to_string(),
            rack: rack.map(str::to_string),
            root: root.to_string(),
            core_num: 0,
        }
    }

    #[test]
    fn dense_domains_match_the_keys() {
        let t = Topology::from_topo_osds(vec![
            osd(5, "b", None, "default"),
            osd(1, "a", Some("r1"), "default"),
            osd(2, "a", Some("r1"), "default"),
            osd(3, "c", Some("r2"), "ssd"),
            // A host named like a rack is a different rack-level domain.
            osd(6, "r1", None, "default"),
            TopoOsd {
                weight: Weight(0),
                ..osd(4, "d", None, "default")
            },
        ]);
        assert_eq!(t.osds().len(), 5, "the weight-0 OSD is not usable");
        assert_eq!(t.osds()[0].core_num, 1, "0 cores count as 1");
        for fd in LEVELS {
            for i in 0..t.osds().len() {
                assert!((t.domain_id(i, fd) as usize) < t.domain_count(fd));
                for j in 0..t.osds().len() {
                    assert_eq!(
                        t.domain_id(i, fd) == t.domain_id(j, fd),
                        t.osds()[i].domain(fd) == t.osds()[j].domain(fd),
                        "{fd} {i} {j}"
                    );
                }
            }
        }
        assert_eq!(t.root_indexes("default"), [0, 1, 3, 4]);
        assert!(t.root_indexes("none").is_empty());
        let ids: Vec<u32> = t.under_root("ssd").map(|o| o.id.0).collect();
        assert_eq!(ids, [3]);
        assert_eq!(t.index_of(OsdId(5)), Some(3));
        assert_eq!(t.get(OsdId(4)), None);
        assert_eq!(t.domains("default", FailureDomain::Rack).len(), 3);
        assert_eq!(t.domain_count(FailureDomain::Rack), 4);
    }
}

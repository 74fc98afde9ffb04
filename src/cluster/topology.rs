//! The placement view of the osdmap: which OSDs can hold PGs, their weights, and the failure
//! domain each belongs to at every level (root → rack → host → OSD).

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

/// The OSDs placement may use: in, with a positive weight, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    osds: Vec<TopoOsd>,
}

impl Topology {
    /// Builds the view from osdmap OSDs: only OSDs that are in and weigh more than 0.
    pub fn from_osds<'a>(osds: impl IntoIterator<Item = &'a Osd>) -> Topology {
        let mut out: Vec<TopoOsd> = osds
            .into_iter()
            .filter(|o| o.is_in() && o.weight.0 > 0)
            .map(|o| TopoOsd {
                id: o.id,
                weight: o.weight,
                host: o.location.host.clone(),
                rack: o.location.rack.clone(),
                root: o.location.root.clone(),
                core_num: o.core_num.max(1),
            })
            .collect();
        out.sort_by_key(|o| o.id);
        Topology { osds: out }
    }

    /// Builds the view from explicit OSDs (tests and benchmarks).
    pub fn from_topo_osds(mut osds: Vec<TopoOsd>) -> Topology {
        osds.retain(|o| o.weight.0 > 0);
        osds.sort_by_key(|o| o.id);
        Topology { osds }
    }

    /// Every usable OSD.
    pub fn osds(&self) -> &[TopoOsd] {
        &self.osds
    }

    /// Usable OSDs under `root`.
    pub fn under_root<'a>(&'a self, root: &'a str) -> impl Iterator<Item = &'a TopoOsd> + 'a {
        self.osds.iter().filter(move |o| o.root == root)
    }

    /// The OSD with `id`, if usable.
    pub fn get(&self, id: OsdId) -> Option<&TopoOsd> {
        self.osds
            .binary_search_by_key(&id, |o| o.id)
            .ok()
            .map(|i| &self.osds[i])
    }

    /// Distinct domains at level `fd` under `root`, with their OSD counts.
    pub fn domains(&self, root: &str, fd: FailureDomain) -> BTreeMap<DomainKey, usize> {
        let mut out = BTreeMap::new();
        for o in self.under_root(root) {
            *out.entry(o.domain(fd)).or_insert(0) += 1;
        }
        out
    }
}

//! Pools and their PG tables. A pool's PGs are kept in fixed-size chunks (one etcd key each),
//! shared between snapshots: changing a PG copies only its chunk. Also the state bits a PG's
//! members give it (`state_for`), which every PG handler applies.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use super::types::{Epoch, OsdId, PgId, PoolId};

/// PGs per stored chunk. A chunk of 3-replica PGs encodes to about 7 KiB, so a 100,000-PG pool
/// is 391 keys and even a 16-replica chunk stays far below etcd's value limit.
pub const PG_CHUNK: u32 = 256;

/// The most PGs one RefreshPgs or Rebalance command may change (bounds the transaction it
/// becomes).
pub const REFRESH_BATCH: usize = 512;

/// The largest replica count of a pool.
pub const MAX_PG_SIZE: u32 = 16;
/// The largest PG count of one pool.
pub const MAX_PG_COUNT: u32 = 131_072;
/// The longest pool name, in bytes.
pub const MAX_POOL_NAME: usize = 255;

/// The level of the topology whose members must be distinct within a PG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureDomain {
    Osd,
    Host,
    Rack,
    Root,
}

impl FailureDomain {
    /// The operator-facing name.
    pub fn name(self) -> &'static str {
        match self {
            FailureDomain::Osd => "osd",
            FailureDomain::Host => "host",
            FailureDomain::Rack => "rack",
            FailureDomain::Root => "root",
        }
    }

    /// Parses a name; the empty string means the default, `host`.
    pub fn from_name(name: &str) -> Option<FailureDomain> {
        match name {
            "osd" => Some(FailureDomain::Osd),
            "" | "host" => Some(FailureDomain::Host),
            "rack" => Some(FailureDomain::Rack),
            "root" => Some(FailureDomain::Root),
            _ => None,
        }
    }

    /// The API enum value.
    pub fn to_i32(self) -> i32 {
        match self {
            FailureDomain::Osd => 1,
            FailureDomain::Host => 2,
            FailureDomain::Rack => 3,
            FailureDomain::Root => 4,
        }
    }

    /// From the API enum value.
    pub fn from_i32(v: i32) -> Option<FailureDomain> {
        [
            FailureDomain::Osd,
            FailureDomain::Host,
            FailureDomain::Rack,
            FailureDomain::Root,
        ]
        .into_iter()
        .find(|d| d.to_i32() == v)
    }
}

impl fmt::Display for FailureDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// PG state bits, as in the original: creating 1, active 2, undersize 4, down 8, remapped 16.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgState(pub u32);

impl PgState {
    pub const CREATING: PgState = PgState(1);
    pub const ACTIVE: PgState = PgState(2);
    pub const UNDERSIZE: PgState = PgState(4);
    pub const DOWN: PgState = PgState(8);
    pub const REMAPPED: PgState = PgState(16);

    pub fn contains(self, other: PgState) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: PgState) -> PgState {
        PgState(self.0 | other.0)
    }

    pub fn without(self, other: PgState) -> PgState {
        PgState(self.0 & !other.0)
    }

    /// The health part of the state for `up` of `size` members: up = size → none;
    /// size/2 < up < size → undersize; up ≤ size/2 → down.
    pub fn health(up: usize, size: usize) -> PgState {
        if up >= size {
            PgState::default()
        } else if up * 2 > size {
            PgState::UNDERSIZE
        } else {
            PgState::DOWN
        }
    }

    /// `active+undersize`-style name; `unknown` for no bits.
    pub fn name(self) -> String {
        const NAMES: [(PgState, &str); 5] = [
            (PgState::CREATING, "creating"),
            (PgState::ACTIVE, "active"),
            (PgState::UNDERSIZE, "undersize"),
            (PgState::DOWN, "down"),
            (PgState::REMAPPED, "remapped"),
        ];
        let parts: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| self.contains(*bit))
            .map(|(_, n)| *n)
            .collect();
        if parts.is_empty() {
            "unknown".to_string()
        } else {
            parts.join("+")
        }
    }
}

/// A membership change in progress (the PG is remapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub members: Vec<OsdId>,
    pub core: u32,
}

/// One placement group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pg {
    /// The members; the first is the preferred raft leader. Never holds an OSD twice.
    pub members: Vec<OsdId>,
    /// Set while the PG is remapped.
    pub target: Option<Target>,
    /// The shard index all members serve the PG on.
    pub core: u32,
    pub state: PgState,
    /// The pool epoch of this PG's last change.
    pub version: Epoch,
    /// The OSD that last reported itself raft leader.
    pub leader: Option<OsdId>,
    /// Failed attempts of the membership change in progress (reset when it ends).
    pub change_failures: u32,
}

impl Pg {
    /// Whether `osd` holds this PG: a member, or a member of the change in progress. Only such
    /// an OSD may report for the PG.
    pub fn involves(&self, osd: OsdId) -> bool {
        self.members.contains(&osd)
            || self
                .target
                .as_ref()
                .is_some_and(|t| t.members.contains(&osd))
    }
}

/// A pool's PGs, chunked for storage and copy-on-write sharing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgTable {
    chunks: Vec<Arc<Vec<Pg>>>,
}

impl PgTable {
    /// Builds a table from PGs in id order.
    pub fn from_pgs(pgs: Vec<Pg>) -> PgTable {
        let chunks = pgs
            .chunks(PG_CHUNK as usize)
            .map(|c| Arc::new(c.to_vec()))
            .collect();
        PgTable { chunks }
    }

    /// Rebuilds a table from stored chunks (index → PGs). Missing or short chunks are an error.
    pub fn from_chunks(count: u32, mut chunks: Vec<(u32, Vec<Pg>)>) -> Result<PgTable, String> {
        chunks.sort_by_key(|(i, _)| *i);
        let expected = count.div_ceil(PG_CHUNK);
        if chunks.len() as u32 != expected {
            return Err(format!(
                "{} PG chunks stored, {expected} expected",
                chunks.len()
            ));
        }
        let mut out = Vec::with_capacity(chunks.len());
        for (pos, (i, pgs)) in chunks.into_iter().enumerate() {
            let want = PG_CHUNK.min(count - i * PG_CHUNK) as usize;
            if i as usize != pos || pgs.len() != want {
                return Err(format!(
                    "PG chunk {i} holds {} PGs, {want} expected",
                    pgs.len()
                ));
            }
            out.push(Arc::new(pgs));
        }
        Ok(PgTable { chunks: out })
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn get(&self, id: PgId) -> Option<&Pg> {
        self.chunks
            .get((id.0 / PG_CHUNK) as usize)?
            .get((id.0 % PG_CHUNK) as usize)
    }

    /// Mutable access; copies the chunk if a snapshot shares it.
    pub fn get_mut(&mut self, id: PgId) -> Option<&mut Pg> {
        let chunk = self.chunks.get_mut((id.0 / PG_CHUNK) as usize)?;
        Arc::make_mut(chunk).get_mut((id.0 % PG_CHUNK) as usize)
    }

    /// PGs changed since pool epoch `since` (their version is newer).
    pub fn changed_since(&self, since: Epoch) -> impl Iterator<Item = (PgId, &Pg)> {
        self.iter().filter(move |(_, pg)| pg.version > since)
    }

    /// Every PG with its id.
    pub fn iter(&self) -> impl Iterator<Item = (PgId, &Pg)> {
        self.chunks.iter().enumerate().flat_map(|(ci, c)| {
            c.iter()
                .enumerate()
                .map(move |(i, pg)| (PgId(ci as u32 * PG_CHUNK + i as u32), pg))
        })
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// The PGs of chunk `i`.
    pub fn chunk(&self, i: u32) -> Option<&[Pg]> {
        self.chunks.get(i as usize).map(|c| c.as_slice())
    }
}

/// The chunk a PG is stored in.
pub fn chunk_of(pg: PgId) -> u32 {
    pg.0 / PG_CHUNK
}

/// A pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: PoolId,
    pub name: String,
    /// Replicas per PG.
    pub size: u32,
    pub pg_count: u32,
    pub failure_domain: FailureDomain,
    pub root: String,
    /// The pgmap epoch.
    pub epoch: Epoch,
    pub pgs: PgTable,
}

/// The state a PG should have: creating until its first leader report, then active unless down;
/// undersize/down from the up count; remapped while a target is set.
pub(crate) fn state_for(pg: &Pg, up: &HashSet<OsdId>, size: u32) -> PgState {
    let up_count = pg.members.iter().filter(|m| up.contains(m)).count();
    let health = PgState::health(up_count, size as usize);
    let mut state = if pg.state.contains(PgState::CREATING) {
        PgState::CREATING.with(health)
    } else if health == PgState::DOWN {
        PgState::DOWN
    } else {
        PgState::ACTIVE.with(health)
    };
    if pg.target.is_some() {
        state = state.with(PgState::REMAPPED);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(i: u32) -> Pg {
        Pg {
            members: vec![OsdId(i + 1)],
            target: None,
            core: 0,
            state: PgState::CREATING,
            version: Epoch(1),
            leader: None,
            change_failures: 0,
        }
    }

    #[test]
    fn health_follows_up_count() {
        assert_eq!(PgState::health(3, 3), PgState::default());
        assert_eq!(PgState::health(2, 3), PgState::UNDERSIZE);
        assert_eq!(PgState::health(1, 3), PgState::DOWN);
        assert_eq!(PgState::health(0, 1), PgState::DOWN);
        assert_eq!(PgState::health(3, 4), PgState::UNDERSIZE);
        assert_eq!(PgState::health(2, 4), PgState::DOWN);
        assert_eq!(
            PgState::ACTIVE.with(PgState::UNDERSIZE).name(),
            "active+undersize"
        );
        assert_eq!(PgState::default().name(), "unknown");
    }

    #[test]
    fn table_chunks_and_copies_on_write() {
        let t = PgTable::from_pgs((0..600).map(pg).collect());
        assert_eq!(t.len(), 600);
        assert_eq!(t.chunk_count(), 3);
        assert_eq!(t.get(PgId(599)).unwrap().members, vec![OsdId(600)]);
        assert!(t.get(PgId(600)).is_none());
        let mut copy = t.clone();
        copy.get_mut(PgId(300)).unwrap().core = 7;
        assert_eq!(
            t.get(PgId(300)).unwrap().core,
            0,
            "the original is untouched"
        );
        assert!(
            Arc::ptr_eq(&t.chunks[0], &copy.chunks[0]),
            "other chunks shared"
        );
        assert!(!Arc::ptr_eq(&t.chunks[1], &copy.chunks[1]));
        let ids: Vec<u32> = copy.iter().map(|(id, _)| id.0).take(3).collect();
        assert_eq!(ids, [0, 1, 2]);
    }

    #[test]
    fn table_from_chunks_checks_shape() {
        let chunks = vec![
            (1, (256..300).map(pg).collect()),
            (0, (0..256).map(pg).collect()),
        ];
        let t = PgTable::from_chunks(300, chunks).unwrap();
        assert_eq!(t.len(), 300);
        assert!(PgTable::from_chunks(300, vec![(0, (0..256).map(pg).collect())]).is_err());
        assert!(PgTable::from_chunks(10, vec![(0, (0..9).map(pg).collect())]).is_err());
    }

    #[test]
    fn failure_domain_names() {
        for d in [
            FailureDomain::Osd,
            FailureDomain::Host,
            FailureDomain::Rack,
            FailureDomain::Root,
        ] {
            assert_eq!(FailureDomain::from_name(d.name()), Some(d));
            assert_eq!(FailureDomain::from_i32(d.to_i32()), Some(d));
        }
        assert_eq!(FailureDomain::from_name(""), Some(FailureDomain::Host));
        assert_eq!(FailureDomain::from_name("datacenter"), None);
    }
}

//! Unit tests of the state machine's commands, one file per concern. Shared helpers live here.
//!
//! Conventions: one command per group (`run` begins a group first, like one commit), every
//! refused command goes through `refuse`, which checks the exact error and that nothing moved.

mod echo;
mod events;
mod health;
mod images;
mod iostats;
mod osds;
mod pgs;
mod pools;
mod proptests;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

pub(super) use crate::cluster::state::tests::{boot_args, cluster};
use crate::cluster::topology::TopoOsd;
use crate::cluster::{
    Applied, BlobKey, ClusterError, ClusterState, Command, Epoch, FailureDomain, Osd, OsdId, Pg,
    PgId, Pool, PoolArgs, PoolId, RecordKey, command, decode_record, encode_record, reply,
};

/// The uuid `cluster(n, _)` gave OSD `n` (and the one tests use for OSD-like number `n`).
pub(super) fn uuid(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}

/// Begins a group and applies `cmd`, which must succeed.
pub(super) fn run<C: Command>(s: &mut ClusterState, cmd: C) -> Applied<C::Reply> {
    s.begin_group();
    match s.apply(&cmd) {
        Ok(a) => a,
        Err(e) => panic!("{cmd:?} was refused: {e:?}"),
    }
}

/// Every epoch of the state: the osdmap's and each live pool's.
pub(super) fn epochs(s: &ClusterState) -> (Epoch, Vec<(PoolId, Epoch)>) {
    (
        s.osdmap_epoch(),
        s.pools().map(|p| (p.id, p.epoch)).collect(),
    )
}

/// The whole state and every epoch are as they were.
pub(super) fn assert_unchanged(before: &ClusterState, after: &ClusterState) {
    assert_eq!(epochs(before), epochs(after), "an epoch moved");
    assert!(before == after, "the state changed");
}

/// Begins a group, applies `cmd`, asserts that it is refused with `expected` and that the state
/// (epochs included) is exactly as before.
pub(super) fn refuse<C: Command>(s: &mut ClusterState, cmd: C, expected: ClusterError) {
    s.begin_group();
    let before = s.clone();
    match s.apply(&cmd) {
        Ok(a) => panic!("{cmd:?} was accepted ({a:?}); expected {expected:?}"),
        Err(e) => assert_eq!(e, expected, "{cmd:?}"),
    }
    assert_unchanged(&before, s);
}

/// Like `refuse`, for errors whose text is not worth spelling out: returns the error.
pub(super) fn refuse_any<C: Command>(s: &mut ClusterState, cmd: C) -> ClusterError {
    s.begin_group();
    let before = s.clone();
    let e = match s.apply(&cmd) {
        Ok(a) => panic!("{cmd:?} was accepted ({a:?})"),
        Err(e) => e,
    };
    assert_unchanged(&before, s);
    e
}

/// Applies `cmd` in a new group and asserts it succeeded without changing anything.
pub(super) fn assert_no_op<C: Command>(s: &mut ClusterState, cmd: C) -> Applied<C::Reply> {
    let before = s.clone();
    let a = run(s, cmd);
    assert!(a.touched.is_empty(), "touched {:?}", a.touched);
    assert!(a.prelude.is_empty() && a.cleanup.is_empty() && a.blobs.is_empty());
    s.begin_group();
    let mut b = before;
    b.begin_group();
    assert_unchanged(&b, s);
    a
}

/// Replays what cleared flags deferred, as the reconciler does after a flag is unset: returns
/// the release command's result (no-op when nothing waits).
pub(super) fn release(s: &mut ClusterState) -> Applied<reply::OsdMap> {
    let ids = s.deferred_releases(usize::MAX);
    run(s, command::ReleaseDeferred { ids })
}

/// Applies an id to `uuid` and returns it.
pub(super) fn apply_id(s: &mut ClusterState, uuid: &str) -> OsdId {
    run(
        s,
        command::ApplyId {
            uuid: uuid.to_string(),
        },
    )
    .reply
    .id
}

/// A Boot command for OSD `id` applied with `uuid(n)`, on `host{host}`, run `instance`.
pub(super) fn boot(id: u32, n: u128, host: u32, instance: u64) -> command::Boot {
    command::Boot(boot_args(OsdId(id), &uuid(n), host, instance))
}

/// A Boot command of a `cluster()` OSD (uuid n = id) with a new run `instance`.
pub(super) fn reboot(id: u32, hosts: u32, instance: u64) -> command::Boot {
    boot(id, u128::from(id), id % hosts, instance)
}

pub(super) fn osd(s: &ClusterState, id: u32) -> Arc<Osd> {
    s.osd(OsdId(id))
        .cloned()
        .unwrap_or_else(|| panic!("osd.{id} missing"))
}

pub(super) fn ids(v: &[u32]) -> Vec<OsdId> {
    v.iter().map(|i| OsdId(*i)).collect()
}

pub(super) fn pool_args(name: &str, size: u32, count: u32, fd: &str) -> PoolArgs {
    PoolArgs {
        name: name.to_string(),
        size,
        pg_count: count,
        failure_domain: fd.to_string(),
        root: String::new(),
    }
}

/// Creates a pool; returns its id.
pub(super) fn pool(s: &mut ClusterState, name: &str, size: u32, count: u32, fd: &str) -> PoolId {
    run(s, command::CreatePool(pool_args(name, size, count, fd)))
        .reply
        .id
}

pub(super) fn get_pool(s: &ClusterState, id: PoolId) -> Arc<Pool> {
    s.pool(id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} missing"))
}

pub(super) fn pg(s: &ClusterState, pool: PoolId, pg: u32) -> Pg {
    get_pool(s, pool)
        .pgs
        .get(PgId(pg))
        .cloned()
        .unwrap_or_else(|| panic!("{pool} pg {pg} missing"))
}

/// Every PG of a pool, by id.
pub(super) fn pgs(s: &ClusterState, pool: PoolId) -> Vec<(PgId, Pg)> {
    get_pool(s, pool)
        .pgs
        .iter()
        .map(|(id, p)| (id, p.clone()))
        .collect()
}

/// The first member of every PG reports itself leader of the PGs' current members.
pub(super) fn elect_all(s: &mut ClusterState, pool: PoolId) {
    s.begin_group();
    for (id, p) in pgs(s, pool) {
        s.apply(&command::LeaderBeElected {
            leader: p.members[0],
            pool,
            pg: id,
            members: p.members.clone(),
            new_members: Vec::new(),
        })
        .unwrap();
    }
}

/// The failure domain of an OSD at level `fd`, as placement sees it.
pub(super) fn domain(s: &ClusterState, id: OsdId, fd: FailureDomain) -> String {
    let o = s.osd(id).unwrap_or_else(|| panic!("{id} missing"));
    TopoOsd {
        id,
        weight: o.weight,
        host: o.location.host.clone(),
        rack: o.location.rack.clone(),
        root: o.location.root.clone(),
        core_num: o.core_num,
    }
    .domain(fd)
    .0
}

/// Placement's hard invariants for one member list of `pool`: exactly `size` members, no OSD
/// twice, every one an existing in OSD, at most one per failure domain.
pub(super) fn assert_valid_placement(s: &ClusterState, pool: PoolId, members: &[OsdId]) {
    let p = get_pool(s, pool);
    assert_eq!(members.len(), p.size as usize, "size reduced: {members:?}");
    let distinct: HashSet<_> = members.iter().collect();
    assert_eq!(distinct.len(), members.len(), "duplicate: {members:?}");
    for m in members {
        let o = s
            .osd(*m)
            .unwrap_or_else(|| panic!("unknown {m} in {members:?}"));
        assert!(o.is_in(), "{m} is out but placed: {members:?}");
    }
    let domains: HashSet<_> = members
        .iter()
        .map(|m| domain(s, *m, p.failure_domain))
        .collect();
    assert_eq!(
        domains.len(),
        members.len(),
        "two replicas in one {} domain: {members:?}",
        p.failure_domain
    );
}

/// A fake etcd: applies what each `Applied` says must be written or deleted, encoded as it
/// would be stored, so that a load from it can be compared with the state.
#[derive(Default)]
pub(super) struct Store {
    values: BTreeMap<RecordKey, Vec<u8>>,
    blobs: BTreeMap<BlobKey, Vec<u8>>,
}

impl Store {
    /// A store holding every record of `s` (as an import writes it).
    pub fn holding(s: &ClusterState) -> Store {
        let mut store = Store::default();
        for key in s.record_keys() {
            let record = s.record(&key).expect("a key of the state has its record");
            store.values.insert(key, encode_record(&record));
        }
        store
    }

    /// Writes the prelude and the touched records (None: delete), then does the cleanup.
    pub fn persist<R>(&mut self, s: &ClusterState, a: &Applied<R>) {
        for key in a.prelude.iter().chain(&a.touched) {
            match s.record(key) {
                Some(r) => {
                    self.values.insert(*key, encode_record(&r));
                }
                None => {
                    self.values.remove(key);
                }
            }
        }
        for key in &a.cleanup {
            assert!(
                s.record(key).is_none(),
                "cleanup of {key:?}, which still exists"
            );
            self.values.remove(key);
        }
        for (key, value) in &a.blobs {
            match value {
                Some(v) => {
                    self.blobs.insert(*key, v.clone());
                }
                None => {
                    self.blobs.remove(key);
                }
            }
        }
    }

    /// Begins a group, applies `cmd` (which must succeed) and persists what it did.
    pub fn run<C: Command>(&mut self, s: &mut ClusterState, cmd: C) -> Applied<C::Reply> {
        let a = run(s, cmd);
        self.persist(s, &a);
        a
    }

    /// Runs `cmd` like [`Store::run`], then asserts that a load gives back exactly `s`.
    pub fn step<C: Command>(&mut self, s: &mut ClusterState, cmd: C) {
        self.run(s, cmd);
        self.assert_loads_as(s);
    }

    /// A new leader's load: decodes every stored value and rebuilds the state.
    pub fn load(&self) -> ClusterState {
        let records = self
            .values
            .iter()
            .map(|(k, v)| (*k, decode_record(k, v).unwrap()));
        let (loaded, garbage) = ClusterState::from_records(records).unwrap();
        assert!(garbage.is_empty(), "garbage {garbage:?}");
        loaded
    }

    /// Asserts that a load gives back exactly `s` (group bookkeeping aside).
    pub fn assert_loads_as(&self, s: &ClusterState) {
        let mut expected = s.clone();
        expected.begin_group();
        let mut loaded = self.load();
        loaded.begin_group();
        assert!(
            loaded == expected,
            "the stored records do not rebuild the state:\nloaded {loaded:#?}\nstate {expected:#?}"
        );
    }

    pub fn blob(&self, key: BlobKey) -> Option<&Vec<u8>> {
        self.blobs.get(&key)
    }
}

/// Automatic outs without Ceph's guards, for tests of the out semantics on small clusters.
pub(super) const NO_GUARDS: crate::cluster::OutGuards = crate::cluster::OutGuards {
    min_in_ratio: 0.0,
    subtree_limit: None,
};

//! `/config/pools/<id>` → our pool settings and PG tables.
//!
//! Decisions:
//! - The pool id is the key's (the Go monitor loaded pools by key and served them under it).
//! - Members, core index and new members are kept exactly, and so are the PG versions: the
//!   legacy front end then answers every PG as the Go monitor did, and the C++ OSDs, which skip
//!   a PG whose version they hold, see nothing new. Only what our core cannot hold is changed
//!   (a member twice, a member that is no OSD, a state no combination of ours shows the same),
//!   and a PG the import changed gets a new version, so the OSDs do not skip it.
//! - Our PG version is "the pool epoch of the PG's last change", so a pool epoch must never be
//!   below one of its PGs' versions; the Go monitor counted them apart (a pool's version can be
//!   below its PGs'). The pool epoch is therefore the highest of the pgmap version and the PG
//!   versions (at least 1), and one more when the import changed a PG.
//! - State bits have our values; ours keep `active` beside `undersize` and `remapped`, where the
//!   Go monitor's setters cleared it, and the legacy maps strip it again (`legacy_state`). Each
//!   PG gets the state our core gives it (creating, else down, else active; with the health
//!   bit; remapped exactly when new members are set): for every state the Go monitor sets, the
//!   legacy maps show the source's value.
//! - PGs missing from the pgmap, or left without members, are placed anew by our placement
//!   (Blocking): the pool keeps its PG count, since objects map to PGs by it.

use std::collections::{HashMap, HashSet};

use super::json::{GoPg, GoPgMap, GoPool, IdKey};
use super::osds::Facts;
use super::report::{AnomalyKind as K, Findings, PoolVersions, Tallies, shown_list};
use crate::cluster::placement::{self, Loads, Placement, PoolSpec};
use crate::cluster::topology::Topology;
use crate::cluster::{
    DEFAULT_ROOT, Epoch, FailureDomain, MAX_PG_COUNT, MAX_PG_SIZE, MAX_POOL_NAME, Osd, OsdId,
    PG_CHUNK, Pg, PgState, PoolId, PoolSettings, Target, state_for,
};
use crate::legacy::maps::{NO_CORE, legacy_state};
use crate::legacy::translate::GO_DEFAULT_ROOT;
use crate::text::shown;

/// A converted pool, before its epoch is known and its holes are placed.
pub(super) struct PoolDraft {
    pub(super) key: String,
    /// `epoch` is set by [`PoolDraft::finish`].
    pub(super) settings: PoolSettings,
    /// By PG id; None where a PG must be placed anew.
    pub(super) pgs: Vec<Option<Pg>>,
    /// PGs whose wire view the import changed: they get the new pool epoch as version.
    pub(super) stamped: Vec<u32>,
    pub(super) source_version: i64,
    pub(super) source_max_pg: i64,
    /// PGs without a change in flight our reconciler will remap at once.
    pub(super) to_remap: u64,
    /// PGs whose state our reconciler will bring in line with the up set at once.
    pub(super) to_refresh: u64,
}

/// What converting one PG needs to know.
struct Ctx<'a> {
    size: u32,
    domain: FailureDomain,
    facts: &'a HashMap<OsdId, Facts>,
    up: &'a HashSet<OsdId>,
}

/// Converts the pool value under `key` (pool `id`, from the key).
pub(super) fn convert(
    key: &str,
    id: PoolId,
    go: GoPool,
    facts: &HashMap<OsdId, Facts>,
    up: &HashSet<OsdId>,
    findings: &mut Findings,
) -> PoolDraft {
    findings.unknown_fields(GoPool::WHAT, go.unknown.names(), key);
    findings.unknown_fields(GoPgMap::WHAT, go.pgmap.unknown.names(), key);
    if go.id != 0 && go.id != i64::from(id.0) {
        findings.add(
            K::PoolIdMismatch,
            key,
            format!(
                "poolid {} differs from the key: imported as {id}, the id the Go monitor \
                 served it under",
                go.id
            ),
        );
    }
    if go.name.is_empty() || go.name.len() > MAX_POOL_NAME {
        findings.add(
            K::InvalidValue,
            key,
            format!(
                "pool name {} is not 1..={MAX_POOL_NAME} bytes: kept; our pool commands cannot \
                 name it",
                shown(&go.name)
            ),
        );
    }
    let failure_domain = match go.failure_domain.as_str() {
        "" => {
            findings.add(
                K::EmptyFailureDomain,
                key,
                "no failure domain: host, our default".to_string(),
            );
            FailureDomain::Host
        }
        name => FailureDomain::from_name(name).unwrap_or_else(|| {
            findings.add(
                K::UnknownFailureDomain,
                key,
                format!(
                    "failure domain {} is none of osd, host, rack, root: imported as host",
                    shown(name)
                ),
            );
            FailureDomain::Host
        }),
    };
    if !matches!(go.root.as_str(), "" | GO_DEFAULT_ROOT | DEFAULT_ROOT) {
        findings.add(
            K::UnknownRoot,
            key,
            format!(
                "root {}: the Go monitor never stored a topology, so every OSD is under our \
                 default root; the pool is too",
                shown(&go.root)
            ),
        );
    }
    let source_version = if go.pgmap.version < 0 {
        findings.add(
            K::InvalidValue,
            key,
            format!("pgmap version {} → 0", go.pgmap.version),
        );
        0
    } else {
        go.pgmap.version
    };
    let entries = go.pgmap.pgs.0;
    let size = match u32::try_from(go.size) {
        Ok(s) if (1..=MAX_PG_SIZE).contains(&s) => s,
        _ => {
            let longest = entries.iter().map(|(_, p)| p.members.len()).max();
            let fallback = longest.unwrap_or(1).clamp(1, MAX_PG_SIZE as usize) as u32;
            findings.add(
                K::InvalidValue,
                key,
                format!(
                    "pg_size {} is not 1..={MAX_PG_SIZE}: {fallback}, the longest member list",
                    go.size
                ),
            );
            fallback
        }
    };
    let pg_count = match u32::try_from(go.pg_count) {
        Ok(c) if (1..=MAX_PG_COUNT).contains(&c) => c,
        Ok(0) if entries.is_empty() => 0,
        Ok(c) if c > MAX_PG_COUNT => {
            findings.add(
                K::InvalidValue,
                key,
                format!(
                    "pg_count {c} is above our limit {MAX_PG_COUNT}: {MAX_PG_COUNT}, the PGs \
                     above dropped"
                ),
            );
            MAX_PG_COUNT
        }
        _ => {
            let highest = entries
                .iter()
                .filter_map(|(k, _)| match k {
                    IdKey::Id(i) if *i < MAX_PG_COUNT => Some(*i + 1),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            findings.add(
                K::InvalidValue,
                key,
                format!(
                    "pg_count {} → {highest}, one more than the highest PG id",
                    go.pg_count
                ),
            );
            highest
        }
    };

    let ctx = Ctx {
        size,
        domain: failure_domain,
        facts,
        up,
    };
    let mut tallies = Tallies::default();
    let mut pgs: Vec<Option<Pg>> = vec![None; pg_count as usize];
    let mut seen = vec![false; pg_count as usize];
    let mut stamped = Vec::new();
    let mut source_max_pg = 0i64;
    let (mut to_remap, mut to_refresh) = (0, 0);
    for (pg_key, go_pg) in entries {
        findings.unknown_fields(GoPg::WHAT, go_pg.unknown.names(), key);
        let pg_id = match pg_key {
            IdKey::Id(i) if i < pg_count && !seen[i as usize] => i,
            IdKey::Id(i) if i < pg_count => {
                tallies.note(K::PgOutOfRange, || format!("pg {i} listed twice"));
                continue;
            }
            IdKey::Id(i) => {
                tallies.note(K::PgOutOfRange, || format!("pg {i} of {pg_count}"));
                continue;
            }
            IdKey::Bad(text) => {
                tallies.note(K::PgOutOfRange, || format!("key {text}"));
                continue;
            }
        };
        seen[pg_id as usize] = true;
        source_max_pg = source_max_pg.max(go_pg.version);
        let one = convert_pg(pg_id, go_pg, &ctx, &mut tallies);
        if one.stamped {
            stamped.push(pg_id);
        }
        to_remap += u64::from(one.to_remap);
        to_refresh += u64::from(
            one.pg
                .as_ref()
                .is_some_and(|pg| state_for(pg, ctx.up, size) != pg.state),
        );
        pgs[pg_id as usize] = one.pg;
    }
    for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
        tallies.note(K::MissingPgs, || format!("pg {i}"));
    }
    tallies.flush(findings, key, "PGs");
    PoolDraft {
        key: key.to_string(),
        settings: PoolSettings {
            id,
            name: go.name,
            size,
            pg_count,
            failure_domain,
            root: DEFAULT_ROOT.to_string(),
            epoch: Epoch(0),
        },
        pgs,
        stamped,
        source_version,
        source_max_pg,
        to_remap,
        to_refresh,
    }
}

/// One converted PG.
struct OnePg {
    /// None when it must be placed anew.
    pg: Option<Pg>,
    /// The legacy maps would show it differently from the source.
    stamped: bool,
    /// Our reconciler will remap it at once.
    to_remap: bool,
}

fn convert_pg(id: u32, go: GoPg, ctx: &Ctx<'_>, tallies: &mut Tallies) -> OnePg {
    let version = u64::try_from(go.version).unwrap_or_else(|_| {
        tallies.note(K::InvalidValue, || {
            format!("pg {id} version {} → the new pool epoch", go.version)
        });
        0
    });
    let mut stamped = go.version < 0;
    let members = members_of(id, "members", &go.members, ctx, tallies);
    let new_members = members_of(id, "new members", &go.new_members, ctx, tallies);
    let core = u32::try_from(go.core).unwrap_or_else(|_| {
        tallies.note(K::InvalidValue, || {
            format!("pg {id} coreindex {} → 0", go.core)
        });
        stamped = true;
        0
    });
    let target = if new_members.is_empty() {
        None
    } else {
        let core = if go.new_core == i64::from(NO_CORE) {
            tallies.note(K::TargetWithoutCore, || {
                format!("pg {id} new members {}", shown_list(&go.new_members))
            });
            core
        } else {
            u32::try_from(go.new_core).unwrap_or_else(|_| {
                tallies.note(K::InvalidValue, || {
                    format!("pg {id} newcoreindex {} → {core}", go.new_core)
                });
                core
            })
        };
        Some(Target {
            members: new_members,
            core,
        })
    };
    if members.is_empty() {
        tallies.note(K::NoMembers, || {
            format!("pg {id} osdlist {}", shown_list(&go.members))
        });
        return OnePg {
            pg: None,
            stamped: true,
            to_remap: false,
        };
    }
    if members.len() > ctx.size as usize {
        tallies.note(K::TooManyMembers, || {
            format!("pg {id} {} for size {}", shown_list(&go.members), ctx.size)
        });
    }
    let shared = shares_domain(&members, ctx)
        || target
            .as_ref()
            .is_some_and(|t| shares_domain(&t.members, ctx));
    if shared {
        tallies.note(K::SharedFailureDomain, || {
            format!("pg {id} {}", shown_list(&go.members))
        });
    }
    let beyond = |list: &[OsdId], core: u32| {
        list.iter().any(|m| {
            ctx.facts
                .get(m)
                .is_some_and(|f| f.core_num > 0 && core >= f.core_num)
        })
    };
    if beyond(&members, core) || target.as_ref().is_some_and(|t| beyond(&t.members, t.core)) {
        tallies.note(K::CoreBeyondCoreNum, || format!("pg {id} core {core}"));
    }
    let state = state_of(go.state, target.is_some());
    let shown_state = legacy_state(state);
    if i64::from(shown_state) != go.state {
        tallies.note(K::StateNormalised, || {
            format!("pg {id} state {} → {shown_state}", go.state)
        });
    }
    let same = |ours: &[OsdId], theirs: &[i64]| {
        ours.len() == theirs.len() && ours.iter().zip(theirs).all(|(a, b)| i64::from(a.0) == *b)
    };
    stamped |= !same(&members, &go.members)
        || i64::from(shown_state) != go.state
        || match &target {
            None => !go.new_members.is_empty(),
            Some(t) => !same(&t.members, &go.new_members) || i64::from(t.core) != go.new_core,
        };
    let to_remap = target.is_none()
        && (members.len() < ctx.size as usize
            || shared
            || members
                .iter()
                .any(|m| ctx.facts.get(m).is_none_or(|f| !f.is_in)));
    OnePg {
        pg: Some(Pg {
            members,
            target,
            core,
            state,
            version: Epoch(version),
            leader: None,
            change_failures: 0,
        }),
        stamped,
        to_remap,
    }
}

/// The members of `list` our core can hold: OSDs of the osdmap, each once, at most
/// [`MAX_PG_SIZE`]; what was left out is noted once per PG and kind.
fn members_of(
    pg: u32,
    what: &str,
    list: &[i64],
    ctx: &Ctx<'_>,
    tallies: &mut Tallies,
) -> Vec<OsdId> {
    let mut out: Vec<OsdId> = Vec::with_capacity(list.len().min(MAX_PG_SIZE as usize));
    let (mut unknown, mut repeated, mut beyond) = (Vec::new(), Vec::new(), 0usize);
    for &m in list {
        let known = u32::try_from(m)
            .ok()
            .filter(|&i| i > 0)
            .map(OsdId)
            .filter(|id| ctx.facts.contains_key(id));
        match known {
            None => unknown.push(m),
            Some(id) if out.contains(&id) => repeated.push(m),
            Some(_) if out.len() == MAX_PG_SIZE as usize => beyond += 1,
            Some(id) => out.push(id),
        }
    }
    if !unknown.is_empty() {
        tallies.note(K::UnknownMember, || {
            format!(
                "pg {pg} {what} {}: {} unknown",
                shown_list(list),
                shown_list(&unknown)
            )
        });
    }
    if !repeated.is_empty() {
        tallies.note(K::DuplicateMember, || {
            format!("pg {pg} {what} {}", shown_list(list))
        });
    }
    if beyond > 0 {
        tallies.note(K::InvalidValue, || {
            format!(
                "pg {pg} lists {} {what} → the first {MAX_PG_SIZE} distinct",
                list.len()
            )
        });
    }
    out
}

/// Whether two of `members` are in one failure-domain bucket of the pool's level (racks are
/// hosts: the Go monitor never stored racks).
fn shares_domain(members: &[OsdId], ctx: &Ctx<'_>) -> bool {
    match ctx.domain {
        FailureDomain::Osd => false,
        FailureDomain::Root => members.len() > 1,
        FailureDomain::Host | FailureDomain::Rack => {
            let hosts: Vec<Option<u32>> = members
                .iter()
                .map(|m| ctx.facts.get(m).map(|f| f.host))
                .collect();
            hosts
                .iter()
                .enumerate()
                .any(|(i, h)| h.is_some() && hosts[..i].contains(h))
        }
    }
}

/// The state our core gives a PG the Go monitor had in `state`: creating, else down, else
/// active; the health bit; remapped exactly when a change is in progress.
pub(super) fn state_of(state: i64, remapped: bool) -> PgState {
    // A negative or huge value carries no known bit.
    let bits = PgState(u32::try_from(state).unwrap_or(0));
    let health = if bits.contains(PgState::DOWN) {
        PgState::DOWN
    } else if bits.contains(PgState::UNDERSIZE) {
        PgState::UNDERSIZE
    } else {
        PgState::default()
    };
    let s = if bits.contains(PgState::CREATING) {
        PgState::CREATING.with(health)
    } else if health == PgState::DOWN {
        PgState::DOWN
    } else {
        PgState::ACTIVE.with(health)
    };
    if remapped {
        s.with(PgState::REMAPPED)
    } else {
        s
    }
}

/// Places the PGs every pool lacks (missing from the source, or left without members), empty,
/// with our placement over the imported OSDs and the load of every imported PG.
pub(super) fn place_missing(drafts: &mut [PoolDraft], osds: &[Osd], facts: &HashMap<OsdId, Facts>) {
    if drafts.iter().all(|d| d.pgs.iter().all(Option::is_some)) {
        return;
    }
    let topology = Topology::from_osds(osds.iter());
    let mut loads = Loads::from_pgs(drafts.iter().flat_map(|d| {
        d.pgs.iter().flatten().map(|pg| match &pg.target {
            Some(t) => (t.members.as_slice(), t.core),
            None => (pg.members.as_slice(), pg.core),
        })
    }));
    for d in drafts {
        let spec = PoolSpec {
            size: d.settings.size,
            pg_count: d.settings.pg_count,
            failure_domain: d.settings.failure_domain,
            root: d.settings.root.clone(),
        };
        for (i, slot) in d.pgs.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let empty = Placement {
                members: Vec::new(),
                core: 0,
            };
            // Not enough OSDs: an empty member list, down, until our reconciler can place it.
            let placed = placement::replace(&topology, &loads, &spec, &empty, &[]).unwrap_or(empty);
            loads.add(&placed.members, placed.core);
            let up = placed
                .members
                .iter()
                .filter(|m| facts.get(m).is_some_and(|f| f.is_up))
                .count();
            *slot = Some(Pg {
                members: placed.members,
                target: None,
                core: placed.core,
                state: PgState::CREATING.with(PgState::health(up, spec.size as usize)),
                version: Epoch(0),
                leader: None,
                change_failures: 0,
            });
            d.stamped.push(i as u32);
        }
    }
}

impl PoolDraft {
    /// The pool's settings with its epoch, its PGs in stored chunks, and its versions.
    pub(super) fn finish(self) -> (PoolSettings, Vec<Vec<Pg>>, PoolVersions) {
        let base = self.source_version.max(self.source_max_pg).max(1) as u64;
        let epoch = if self.stamped.is_empty() {
            base
        } else {
            base + 1
        };
        let mut pgs = self.pgs;
        for i in &self.stamped {
            if let Some(Some(pg)) = pgs.get_mut(*i as usize) {
                pg.version = Epoch(epoch);
            }
        }
        let mut chunks = Vec::with_capacity(pgs.len().div_ceil(PG_CHUNK as usize));
        let mut rest = pgs.into_iter().flatten();
        loop {
            let chunk: Vec<Pg> = rest.by_ref().take(PG_CHUNK as usize).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let mut settings = self.settings;
        settings.epoch = Epoch(epoch);
        let versions = PoolVersions {
            pool: settings.id.0,
            source_pgmap: self.source_version,
            source_max_pg: self.source_max_pg,
            epoch,
        };
        (settings, chunks, versions)
    }
}

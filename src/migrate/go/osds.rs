//! `/osd/osdmap` → our OSD records (and their config texts as blobs).
//!
//! Decisions (each chosen so that, after the import, the legacy front end answers every OSD as
//! the Go monitor did, and the OSD's next step behaves as it would have under the Go monitor):
//! - **up** → `Liveness::Up` with a boot instance made up from the id. Boot instances are chosen
//!   per connection on the legacy wire, and a connection from the OSD's registered address
//!   speaks for whatever run the osdmap holds (`Session::speaks_for` in `legacy/translate.rs`):
//!   a running OSD that reconnects to us and polls is recognised without booting again, as the
//!   C++ OSD expects. A reboot is a Boot, which our monitor answers as the Go monitor did (an
//!   up OSD is refused until it is marked down).
//! - **down** (booted) → `Liveness::Down` with that made-up instance and reason `NoHeartbeat`,
//!   not `Stopped`: the Go monitor brings back up any down OSD that polls (LEGACY-PROTOCOL.md
//!   §8), and an OSD marked down by the Go monitor (after a failover's mass flapping, say) may
//!   well be running and polling. With an instance, its next poll from its address marks it up
//!   (our `MarkUp`), without a Boot the C++ OSD would never send; a stopped process boots when
//!   it starts, which works from either state.
//! - **out** (booted) → `OutReason::Auto`: the Go monitor's Boot marks every OSD in, even one an
//!   operator marked out, and `Auto` is our reason whose boot brings it back in. (One difference
//!   remains: a down and out OSD that comes back by polling, without a boot, stays out under the
//!   Go monitor and comes in under ours.)
//! - **pending create** (applied for, never booted) → `Liveness::New`, out for reason `New`,
//!   whatever `isup`/`isin` say (the Go monitor revives a pending OSD that polls; it must still
//!   boot to get an address and ports).
//! - host → `Location.host`; every OSD under our default root, no rack (the Go monitor never
//!   stored a topology); weight 1.0; `corenum` → `core_num`, and the osdmap's core count is the
//!   most common one among booted OSDs.
//! - `Config` → the OSD's config blob and `config_hash`, as a boot stores them.
//! - Every `since` and `last_change` is the imported osdmap epoch.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::json::{GoOsd, GoOsdMap, GoShard, IdKey};
use super::report::{AnomalyKind as K, Findings, Tallies};
use crate::cluster::{
    BlobKey, BootInstance, DEFAULT_ROOT, DownReason, Epoch, Liveness, Location, MAX_CONFIG_TEXT,
    Membership, Osd, OsdId, OutReason, Shard, Weight, check_label, config_hash, parse_uuid,
};
use crate::text::shown;

/// OSD ids of the legacy wire are `int32`: larger ones cannot be served.
const MAX_WIRE_ID: u32 = i32::MAX as u32;

/// The shard indexes accepted (an OSD has one shard per SPDK core).
pub(super) const MAX_SHARDS: u32 = 4096;

/// The boot instance of an imported OSD's current run: "go" and the id, never 0.
pub(super) fn import_instance(id: OsdId) -> BootInstance {
    BootInstance(0x676f_0000_0000_0000 | u64::from(id.0))
}

/// The uuid an OSD whose uuid does not parse is imported with.
pub(super) fn placeholder_uuid(id: OsdId) -> Uuid {
    Uuid::from_u128(0x676f_0000_0000_8000_8000_0000_0000_0000 | u128::from(id.0))
}

/// What the PG conversion needs of an OSD.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts {
    /// The host, interned.
    pub(super) host: u32,
    pub(super) core_num: u32,
    pub(super) is_in: bool,
    pub(super) is_up: bool,
}

/// The converted osdmap, before its epoch is known.
pub(super) struct OsdMapDraft {
    /// By id.
    pub(super) osds: Vec<Osd>,
    pub(super) blobs: Vec<(BlobKey, Vec<u8>)>,
    pub(super) facts: HashMap<OsdId, Facts>,
    /// The up OSDs.
    pub(super) up: HashSet<OsdId>,
    /// The osdmap's core count: the most common among booted OSDs.
    pub(super) core_num: Option<u32>,
    /// The source's `version` (0 when absent).
    pub(super) source_version: i64,
    /// Whether the osdmap's wire view of some OSD differs from the source's (the epoch must
    /// then move, or the C++ OSDs, which skip an osdmap of the version they hold, miss it).
    pub(super) changed: bool,
}

impl OsdMapDraft {
    /// Stamps every OSD with the osdmap epoch.
    pub(super) fn finish(&mut self, epoch: Epoch) {
        for o in &mut self.osds {
            o.last_change = epoch;
            match &mut o.liveness {
                Liveness::Up { since, .. } | Liveness::Down { since, .. } => *since = epoch,
                Liveness::New | Liveness::HeldDown { .. } => {}
            }
            match &mut o.membership {
                Membership::In { since } | Membership::Out { since, .. } => *since = epoch,
            }
        }
    }
}

/// Converts the osdmap value under `key`.
pub(super) fn convert(key: &str, go: GoOsdMap, findings: &mut Findings) -> OsdMapDraft {
    let mut tallies = Tallies::default();
    findings.unknown_fields(GoOsdMap::WHAT, go.unknown.names(), key);
    let mut changed = false;
    let source_version = if go.version < 0 {
        tallies.note(K::InvalidValue, || {
            format!("osdmap version {} → 0", go.version)
        });
        changed = true;
        0
    } else {
        go.version
    };
    let mut hosts: HashMap<String, u32> = HashMap::new();
    let mut by_id: std::collections::BTreeMap<OsdId, (Osd, Option<String>)> = Default::default();
    for (id_key, o) in go.osds.0 {
        findings.unknown_fields(GoOsd::WHAT, o.unknown.names(), key);
        for (_, s) in &o.shards.0 {
            findings.unknown_fields(GoShard::WHAT, s.unknown.names(), key);
        }
        let id = match id_key {
            IdKey::Id(i) if (1..=MAX_WIRE_ID).contains(&i) => OsdId(i),
            IdKey::Id(i) => {
                tallies.note(K::BadOsdKey, || format!("key '{i}'"));
                changed = true;
                continue;
            }
            IdKey::Bad(text) => {
                tallies.note(K::BadOsdKey, || format!("key {text}"));
                changed = true;
                continue;
            }
        };
        if by_id.contains_key(&id) {
            tallies.note(K::BadOsdKey, || format!("{id} listed twice"));
            changed = true;
            continue;
        }
        if o.id != 0 && o.id != i64::from(id.0) {
            tallies.note(K::OsdIdMismatch, || {
                format!("key {} holds osdid {}", id.0, o.id)
            });
            changed = true;
        }
        let (osd, config, osd_changed) = convert_osd(id, o, &mut tallies);
        changed |= osd_changed;
        by_id.insert(id, (osd, config));
    }

    // Two OSDs with one uuid.
    let mut uuids: HashMap<Uuid, OsdId> = HashMap::new();
    for (id, (osd, _)) in &by_id {
        if let Some(first) = uuids.get(&osd.uuid) {
            tallies.note(K::DuplicateUuid, || {
                format!("{id} has the uuid of {first}: {}", osd.uuid)
            });
        } else {
            uuids.insert(osd.uuid, *id);
        }
    }

    // The cluster's core count: the most common among booted OSDs (the lowest on a tie).
    let mut core_counts: std::collections::BTreeMap<u32, usize> = Default::default();
    for (osd, _) in by_id.values() {
        if !matches!(osd.liveness, Liveness::New) && osd.core_num > 0 {
            *core_counts.entry(osd.core_num).or_default() += 1;
        }
    }
    let core_num = core_counts
        .iter()
        .max_by_key(|(n, count)| (**count, std::cmp::Reverse(**n)))
        .map(|(n, _)| *n);
    let mut mismatched = super::report::Tally::default();
    if let Some(cluster) = core_num {
        for (id, (osd, _)) in &by_id {
            if !matches!(osd.liveness, Liveness::New) && osd.core_num > 0 && osd.core_num != cluster
            {
                mismatched.note(|| format!("{id} corenum {}", osd.core_num));
            }
        }
        if mismatched.count > 0 {
            findings.add_counted(
                K::CoreNumMismatch,
                key,
                mismatched.count,
                format!(
                    "{}; the cluster's core count is {cluster} (the most common): their next \
                     boot is refused (CORE_NUM), as the Go monitor refused a boot with another \
                     core count",
                    mismatched.summary("OSDs")
                ),
            );
        }
    }

    let mut osds = Vec::with_capacity(by_id.len());
    let mut blobs = Vec::new();
    let mut facts = HashMap::with_capacity(by_id.len());
    for (id, (osd, config)) in by_id {
        let next = hosts.len() as u32;
        let host = *hosts.entry(osd.location.host.clone()).or_insert(next);
        facts.insert(
            id,
            Facts {
                host,
                core_num: osd.core_num,
                is_in: osd.is_in(),
                is_up: osd.is_up(),
            },
        );
        if let Some(text) = config {
            blobs.push((BlobKey::OsdConfig(id), text.into_bytes()));
        }
        osds.push(osd);
    }
    tallies.flush(findings, key, "OSDs");
    let up = osds.iter().filter(|o| o.is_up()).map(|o| o.id).collect();
    OsdMapDraft {
        osds,
        blobs,
        facts,
        up,
        core_num,
        source_version,
        changed,
    }
}

/// One OSD; its config text when it reported one; whether the osdmap's view of it changed.
fn convert_osd(id: OsdId, o: GoOsd, tallies: &mut Tallies) -> (Osd, Option<String>, bool) {
    let booted = !o.pending_create;
    let mut changed = false;
    let uuid = match parse_uuid(&o.uuid) {
        Ok(u) => u,
        Err(_) => {
            let placeholder = placeholder_uuid(id);
            tallies.note(K::InvalidUuid, || format!("{id} uuid {}", shown(&o.uuid)));
            placeholder
        }
    };
    let parsed: Option<IpAddr> = o.address.parse().ok();
    let address = if booted {
        match parsed {
            Some(ip) if !ip.is_unspecified() && !ip.is_multicast() => Some(ip),
            _ => {
                tallies.note(K::InvalidAddress, || {
                    format!("{id} address {}", shown(&o.address))
                });
                None
            }
        }
    } else {
        parsed
    };
    if address.map(|a| a.to_string()).unwrap_or_default() != o.address {
        changed = true;
    }
    if booted && check_label("host", &o.host).is_err() {
        tallies.note(K::InvalidHost, || format!("{id} host {}", shown(&o.host)));
    }
    let size = u64::try_from(o.size).unwrap_or_else(|_| {
        tallies.note(K::InvalidValue, || format!("{id} size {} → 0", o.size));
        0
    });
    let core_num = u32::try_from(o.core_num).unwrap_or_else(|_| {
        tallies.note(K::InvalidValue, || {
            format!("{id} corenum {} → 0", o.core_num)
        });
        0
    });
    let (shards, shards_changed) = convert_shards(id, o.shards.0, tallies);
    changed |= shards_changed;
    let config = if o.config.is_empty() {
        None
    } else {
        if o.config.len() > MAX_CONFIG_TEXT {
            tallies.note(K::ConfigTooLarge, || {
                format!("{id} config of {} bytes", o.config.len())
            });
        }
        Some(o.config)
    };
    let epoch = Epoch(0); // stamped by `OsdMapDraft::finish`
    let instance = import_instance(id);
    let (liveness, membership) = if !booted {
        if o.is_up || o.is_in {
            tallies.note(K::PendingOsdState, || {
                format!("{id} pending create, isup {}, isin {}", o.is_up, o.is_in)
            });
            changed = true;
        }
        (
            Liveness::New,
            Membership::Out {
                reason: OutReason::New,
                since: epoch,
            },
        )
    } else {
        let liveness = if o.is_up {
            Liveness::Up {
                instance,
                since: epoch,
            }
        } else {
            Liveness::Down {
                instance: Some(instance),
                since: epoch,
                reason: DownReason::NoHeartbeat,
            }
        };
        let membership = if o.is_in {
            Membership::In { since: epoch }
        } else {
            Membership::Out {
                reason: OutReason::Auto,
                since: epoch,
            }
        };
        (liveness, membership)
    };
    let osd = Osd {
        id,
        uuid,
        address,
        location: Location {
            host: o.host,
            rack: None,
            root: DEFAULT_ROOT.to_string(),
        },
        weight: Weight::DEFAULT,
        size,
        core_num,
        shards: Arc::from(shards),
        liveness,
        membership,
        config_hash: config.as_deref().map_or(0, config_hash),
        last_change: epoch,
    };
    (osd, config, changed)
}

/// Shards by index; whether the osdmap's view of them differs from the source's.
fn convert_shards(
    id: OsdId,
    entries: Vec<(IdKey, GoShard)>,
    tallies: &mut Tallies,
) -> (Vec<Shard>, bool) {
    let mut changed = false;
    let mut slots: Vec<Option<Shard>> = Vec::new();
    for (key, s) in entries {
        let index = match key {
            IdKey::Id(i) if i < MAX_SHARDS => i as usize,
            IdKey::Id(i) => {
                tallies.note(K::BadShard, || format!("{id} shard index {i} dropped"));
                changed = true;
                continue;
            }
            IdKey::Bad(text) => {
                tallies.note(K::BadShard, || format!("{id} shard key {text} dropped"));
                changed = true;
                continue;
            }
        };
        let mut value = |what: &str, v: i64, max: i64| -> i64 {
            if (0..=max).contains(&v) {
                v
            } else {
                tallies.note(K::BadShard, || format!("{id} shard {index} {what} {v} → 0"));
                changed = true;
                0
            }
        };
        let shard = Shard {
            core_id: value("shardid", s.core_id, i64::from(u32::MAX)) as u32,
            port: value("port", s.port, 65535) as u16,
            raw_port: value("raw_port", s.raw_port, 65535) as u16,
        };
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        if slots[index].is_some() {
            tallies.note(K::BadShard, || format!("{id} shard {index} listed twice"));
            changed = true;
            continue;
        }
        slots[index] = Some(shard);
    }
    let gaps = slots.iter().filter(|s| s.is_none()).count();
    if gaps > 0 {
        tallies.note(K::ShardGap, || {
            format!("{id}: {gaps} of shards 0..{} missing", slots.len())
        });
        changed = true;
    }
    let shards = slots
        .into_iter()
        .map(|s| {
            s.unwrap_or(Shard {
                core_id: 0,
                port: 0,
                raw_port: 0,
            })
        })
        .collect();
    (shards, changed)
}

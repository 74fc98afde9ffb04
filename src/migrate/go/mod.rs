//! The Go monitor's etcd contents → our records, with a report (issue 12, "import the Go
//! monitor's state"). Pure: the caller reads the Go monitor's etcd (left read-only), passes every
//! key and value here, prints the report, and writes the records through the fenced commit
//! path only when nothing blocks (or the operator accepted it).
//!
//! The source layout is LEGACY-PROTOCOL.md's last section: `/osd/osdmap` (the whole osdmap),
//! `/config/pools/<id>` (a pool with all its PGs), `/config/images/<id>`,
//! `/cluster/states/state` (noout, norebalance), `/cluster/unprocessedev` (an out→in rebalance
//! deferred by norebalance); `/config/topology/*` and the election key are counted and ignored,
//! anything else is reported and ignored.
//!
//! What the import promises: after it, the legacy front end answers every OSD's next
//! GetClusterMap with the ids, members, core indexes and versions it had, and no version a
//! C++ client holds ever goes back:
//! - the osdmap epoch is the source's `version` (at least 1), one more when the import changed
//!   what the osdmap shows of an OSD;
//! - a pool's epoch is the highest of its pgmap version and its PGs' versions (our PG version is
//!   the pool epoch of its last change, so a pool epoch is never below one), one more when the
//!   import changed a PG; PG versions are kept, except for a PG the import changed, which gets
//!   the new pool epoch so the OSDs do not skip it;
//! - the next pool and image ids are above every id seen.
//!
//! How each field maps, and why: `osds.rs` (liveness, membership, shards, config) and `pools.rs`
//! (ids, members, targets, states, versions, PGs to place anew). What is wrong in the source is
//! an [`Anomaly`] of the report, `Fixed`, `Warning` or `Blocking` (see [`AnomalyKind`] for every
//! kind and what the import does about it); only a value that is not the Go monitor's JSON at
//! all (or no osdmap) makes the import impossible ([`GoImportError`]).
//!
//! Cost: values are read into typed structs straight from the bytes (`json.rs`), one pool at a
//! time; its PGs are converted in place and moved, not copied, into the chunk records. Beyond
//! the source bytes, memory is the converted state plus one pool's parsed value.

mod json;
mod osds;
mod pools;
mod report;
mod synthetic;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

pub use report::{Anomaly, AnomalyKind, Counts, ImportReport, PoolVersions, Severity, Versions};
pub use synthetic::synthetic_source;

use json::{GoClusterState, GoImage, GoOsdMap, GoPool, GoUnprocessed};
use report::{AnomalyKind as K, Findings, Tally, shown_key};

use crate::cluster::{
    BlobKey, ClusterFlag, Counters, Epoch, Flags, Image, ImageId, Liveness, MAX_IMAGE_NAME,
    OsdMapMeta, PoolId, Record, RecordKey,
};
use crate::text::{one_line, shown};

/// The whole osdmap.
pub const OSDMAP_KEY: &str = "/osd/osdmap";
/// Pools by id.
pub const POOL_PREFIX: &str = "/config/pools/";
/// Images by id.
pub const IMAGE_PREFIX: &str = "/config/images/";
/// `{"noReblance":bool,"noOut":bool}`.
pub const STATE_KEY: &str = "/cluster/states/state";
/// `{"outToIn":bool}`.
pub const UNPROCESSED_KEY: &str = "/cluster/unprocessedev";
/// Topology buckets nobody ever read.
pub const TOPOLOGY_PREFIX: &str = "/config/topology/";
/// The Go monitors' election (the default name; its keys carry a lease suffix).
pub const ELECTION_PREFIX: &str = "fastblock_monitor_election";

/// Ids of the legacy wire are `int32`: larger ones cannot be served.
const MAX_WIRE_ID: u32 = i32::MAX as u32;

/// The result of a conversion.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Every record of our layout, in key order, ready to write:
    /// `ClusterState::from_records` accepts them with no garbage.
    pub records: Vec<(RecordKey, Record)>,
    /// Values outside the cluster state: the OSDs' config texts.
    pub blobs: Vec<(BlobKey, Vec<u8>)>,
    pub report: ImportReport,
}

/// A source no import can be made of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoImportError {
    #[error(
        "no {OSDMAP_KEY} key: not a Go fastblock monitor's etcd (or the wrong endpoints), or a \
         cluster that never had an OSD"
    )]
    NoOsdMap,
    #[error("{key}: not the Go monitor's JSON: {reason}")]
    BadValue { key: String, reason: String },
    #[error("{key} appears twice in the source")]
    DuplicateKey { key: String },
}

/// Reads a value as `T`, or says which key holds what.
fn parse<'a, T: Deserialize<'a>>(key: &str, bytes: &'a [u8]) -> Result<T, GoImportError> {
    serde_json::from_slice(bytes).map_err(|e| GoImportError::BadValue {
        key: shown_key(key),
        reason: one_line(&e.to_string(), 160),
    })
}

/// A decimal id after a key prefix, as the Go monitor wrote it (1..=i32::MAX).
fn key_id(rest: &str) -> Option<u32> {
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse::<u32>()
        .ok()
        .filter(|&i| (1..=MAX_WIRE_ID).contains(&i))
}

/// Converts the Go monitor's keys and values (any order) into our records and a report.
pub fn convert(source: &[(String, Vec<u8>)]) -> Result<Converted, GoImportError> {
    let mut findings = Findings::default();
    let mut seen = HashSet::with_capacity(source.len());
    let mut osdmap = None;
    let mut pool_values: Vec<(&str, &str, &[u8])> = Vec::new();
    let mut image_values: Vec<(&str, &str, &[u8])> = Vec::new();
    let (mut state, mut unprocessed) = (None, None);
    let (mut topology_keys, mut election_keys) = (0u64, 0u64);
    let mut unknown_keys = Tally::default();
    for (key, value) in source {
        if !seen.insert(key.as_str()) {
            return Err(GoImportError::DuplicateKey {
                key: shown_key(key),
            });
        }
        if key == OSDMAP_KEY {
            osdmap = Some(value.as_slice());
        } else if let Some(rest) = key.strip_prefix(POOL_PREFIX) {
            pool_values.push((key, rest, value));
        } else if let Some(rest) = key.strip_prefix(IMAGE_PREFIX) {
            image_values.push((key, rest, value));
        } else if key == STATE_KEY {
            state = Some(value.as_slice());
        } else if key == UNPROCESSED_KEY {
            unprocessed = Some(value.as_slice());
        } else if key.starts_with(TOPOLOGY_PREFIX) {
            topology_keys += 1;
        } else if key.starts_with(ELECTION_PREFIX) {
            election_keys += 1;
        } else {
            unknown_keys.note(|| shown(key));
        }
    }
    if unknown_keys.count > 0 {
        findings.add_counted(
            K::UnknownKey,
            "(keys)",
            unknown_keys.count,
            format!(
                "{}; ignored (the Go monitor never wrote them)",
                unknown_keys.summary("keys")
            ),
        );
    }

    // The osdmap.
    let osdmap = osdmap.ok_or(GoImportError::NoOsdMap)?;
    let go: GoOsdMap = parse(OSDMAP_KEY, osdmap)?;
    let mut osdmap = osds::convert(OSDMAP_KEY, go, &mut findings);

    // The pools, by id, one at a time.
    let mut by_id: BTreeMap<u32, (&str, &[u8])> = BTreeMap::new();
    let mut highest_pool = 0u32;
    for (key, rest, value) in pool_values {
        match key_id(rest) {
            Some(id) if !by_id.contains_key(&id) => {
                highest_pool = highest_pool.max(id);
                by_id.insert(id, (key, value));
            }
            Some(id) => findings.add(
                K::IgnoredPoolKey,
                key,
                format!("names pool {id} again (the Go monitor kept one of them): ignored"),
            ),
            None => findings.add(
                K::IgnoredPoolKey,
                key,
                "names no pool id of 1..=2147483647: ignored, as the Go monitor did".to_string(),
            ),
        }
    }
    let mut drafts = Vec::with_capacity(by_id.len());
    for (id, (key, value)) in by_id {
        let go: GoPool = parse(key, value)?;
        drafts.push(pools::convert(
            key,
            PoolId(id),
            go,
            &osdmap.facts,
            &osdmap.up,
            &mut findings,
        ));
    }
    // Names: our name index keeps one pool per name, the one loaded last (the higher id).
    let mut pool_by_name: HashMap<String, PoolId> = HashMap::with_capacity(drafts.len());
    for d in &drafts {
        if let Some(first) = pool_by_name.insert(d.settings.name.clone(), d.settings.id) {
            findings.add(
                K::DuplicatePoolName,
                &d.key,
                format!(
                    "{first} and {} are both named {}: both kept; the name finds {} only (its \
                     images too)",
                    d.settings.id,
                    shown(&d.settings.name),
                    d.settings.id
                ),
            );
        }
    }
    pools::place_missing(&mut drafts, &osdmap.osds, &osdmap.facts);
    let to_remap: u64 = drafts.iter().map(|d| d.to_remap).sum();
    let to_refresh: u64 = drafts.iter().map(|d| d.to_refresh).sum();

    // Images.
    let mut images: BTreeMap<(PoolId, ImageId), Image> = BTreeMap::new();
    let mut image_ids: HashSet<u64> = HashSet::new();
    let mut image_names: HashSet<(PoolId, &str)> = HashSet::new();
    let mut highest_image = 0u64;
    let mut parsed_images = Vec::with_capacity(image_values.len());
    for (key, rest, value) in image_values {
        let go: GoImage = parse(key, value)?;
        findings.unknown_fields(GoImage::WHAT, go.unknown.names(), key);
        parsed_images.push((key, key_id(rest), go));
    }
    // In key order of the ids they name, so "the later one" is well defined.
    parsed_images.sort_by_key(|(key, from_key, _)| (from_key.unwrap_or(u32::MAX), *key));
    for (key, from_key, go) in &parsed_images {
        let from_value = u32::try_from(go.id)
            .ok()
            .filter(|&i| (1..=MAX_WIRE_ID).contains(&i));
        let id = match (from_value, from_key) {
            (Some(v), Some(k)) if v != *k => {
                findings.add(
                    K::ImageIdMismatch,
                    key,
                    format!("imageID {v} differs from the key: imported as image {v}"),
                );
                v
            }
            (Some(v), _) => v,
            (None, Some(k)) => {
                if go.id != 0 {
                    findings.add(
                        K::ImageIdMismatch,
                        key,
                        format!("imageID {} is no image id: imported as image {k}", go.id),
                    );
                }
                *k
            }
            (None, None) => {
                findings.add(
                    K::BadImageId,
                    key,
                    format!(
                        "neither the key nor imageID {} is an image id: image {} dropped",
                        go.id,
                        shown(&go.name)
                    ),
                );
                continue;
            }
        };
        highest_image = highest_image.max(u64::from(id));
        if !image_ids.insert(u64::from(id)) {
            findings.add(
                K::DuplicateImageId,
                key,
                format!(
                    "image {id} appears twice: this one ({}) dropped",
                    shown(&go.name)
                ),
            );
            continue;
        }
        let Some(pool) = pool_by_name.get(go.pool.as_str()).copied() else {
            findings.add(
                K::ImagePoolGone,
                key,
                format!(
                    "image {} names pool {}, which does not exist: dropped",
                    shown(&go.name),
                    shown(&go.pool)
                ),
            );
            continue;
        };
        if go.name.is_empty() || go.name.len() > MAX_IMAGE_NAME {
            findings.add(
                K::InvalidValue,
                key,
                format!(
                    "image name {} is not 1..={MAX_IMAGE_NAME} bytes: kept; our image commands \
                     cannot name it",
                    shown(&go.name)
                ),
            );
        }
        if !image_names.insert((pool, go.name.as_str())) {
            findings.add(
                K::DuplicateImageName,
                key,
                format!(
                    "{pool} has two images named {}: both kept; the name finds the higher id only",
                    shown(&go.name)
                ),
            );
        }
        let mut size = |what: &str, v: i64| {
            u64::try_from(v).unwrap_or_else(|_| {
                findings.add(K::InvalidValue, key, format!("{what} {v} → 0"));
                0
            })
        };
        let image = Image {
            id: ImageId(u64::from(id)),
            pool,
            name: go.name.clone(),
            size: size("imagesize", go.size),
            object_size: size("objectsize", go.object_size),
        };
        images.insert((pool, image.id), image);
    }

    // Flags and the deferred out→in rebalance.
    let mut flags = Flags::default();
    if let Some(value) = state {
        let go: GoClusterState = parse(STATE_KEY, value)?;
        findings.unknown_fields(GoClusterState::WHAT, go.unknown.names(), STATE_KEY);
        if go.no_rebalance {
            flags = flags.with(ClusterFlag::NoRebalance);
        }
        if go.no_out {
            flags = flags.with(ClusterFlag::NoOut);
        }
    }
    let mut pending_out_to_in = false;
    if let Some(value) = unprocessed {
        let go: GoUnprocessed = parse(UNPROCESSED_KEY, value)?;
        findings.unknown_fields(GoUnprocessed::WHAT, go.unknown.names(), UNPROCESSED_KEY);
        pending_out_to_in = go.out_to_in;
    }

    // The osdmap's epoch: never below the source's, moved when the import changed an OSD.
    let base = osdmap.source_version.max(1) as u64;
    let epoch = Epoch(if osdmap.changed { base + 1 } else { base });
    osdmap.finish(epoch);

    // The records, in key order.
    let mut counts = Counts {
        osds: osdmap.osds.len() as u64,
        osds_up: osdmap.osds.iter().filter(|o| o.is_up()).count() as u64,
        osds_in: osdmap.osds.iter().filter(|o| o.is_in()).count() as u64,
        osds_pending_create: osdmap
            .osds
            .iter()
            .filter(|o| matches!(o.liveness, Liveness::New))
            .count() as u64,
        pools: drafts.len() as u64,
        pgs_to_remap: to_remap,
        pgs_to_refresh: to_refresh,
        images: images.len() as u64,
        flags_set: flags.iter().count() as u64,
        topology_keys_ignored: topology_keys,
        election_keys_ignored: election_keys,
        unknown_keys: unknown_keys.count,
        ..Counts::default()
    };
    let down_in = osdmap
        .osds
        .iter()
        .filter(|o| o.is_in() && matches!(o.liveness, Liveness::Down { .. }))
        .count();
    let mut records = Vec::with_capacity(2 + osdmap.osds.len() + drafts.len() + images.len());
    records.push((
        RecordKey::OsdMapMeta,
        Record::OsdMapMeta(OsdMapMeta {
            epoch,
            flags,
            core_num: osdmap.core_num,
        }),
    ));
    records.push((
        RecordKey::Counters,
        Record::Counters(Counters {
            next_pool_id: highest_pool + 1,
            next_image_id: highest_image + 1,
            next_event_id: 1,
        }),
    ));
    for osd in osdmap.osds {
        records.push((RecordKey::Osd(osd.id), Record::Osd(Arc::new(osd))));
    }
    let mut versions = Versions {
        source_osdmap: osdmap.source_version,
        osdmap_epoch: epoch.0,
        source_max_pg: 0,
        pools: Vec::with_capacity(drafts.len()),
    };
    let mut chunk_records = Vec::new();
    for d in drafts {
        let (settings, chunks, pool_versions) = d.finish();
        versions.source_max_pg = versions.source_max_pg.max(pool_versions.source_max_pg);
        versions.pools.push(pool_versions);
        let id = settings.id;
        counts.pgs += u64::from(settings.pg_count);
        records.push((RecordKey::Pool(id), Record::Pool(settings)));
        for (i, chunk) in chunks.into_iter().enumerate() {
            counts.pgs_remapped += chunk.iter().filter(|pg| pg.target.is_some()).count() as u64;
            chunk_records.push((RecordKey::PgChunk(id, i as u32), Record::PgChunk(chunk)));
        }
    }
    records.append(&mut chunk_records);
    for ((pool, id), image) in images {
        records.push((RecordKey::Image(pool, id), Record::Image(Arc::new(image))));
    }

    let notes = notes(flags, pending_out_to_in, &counts, down_in);
    let report = ImportReport {
        counts,
        versions,
        flags: flags.iter().map(ClusterFlag::name).collect(),
        pending_out_to_in,
        notes,
        anomalies: findings.into_anomalies(),
    };
    Ok(Converted {
        records,
        blobs: osdmap.blobs,
        report,
    })
}

/// What will happen after the import that is not an anomaly of the source.
fn notes(flags: Flags, out_to_in: bool, counts: &Counts, down_in: usize) -> Vec<String> {
    let norebalance = flags.contains(ClusterFlag::NoRebalance);
    let mut notes = Vec::new();
    if out_to_in && norebalance {
        notes.push(
            "pending out→in rebalance: replayed when norebalance is cleared. Nothing is stored \
             for it: our reconciler's rebalance rounds are level-triggered, and once norebalance \
             is cleared they move PGs onto the OSDs that hold less than their share, those that \
             came in among them"
                .to_string(),
        );
    } else if out_to_in {
        notes.push(
            "an out→in rebalance is recorded although norebalance is not set: the Go monitor \
             would drop it at its next start; our reconciler rebalances whenever norebalance \
             is not set"
                .to_string(),
        );
    }
    if !norebalance && counts.pgs > 0 {
        notes.push(
            "norebalance is not set: our rebalancer evens out PGs per OSD by its own measure and \
             may start moving PGs the Go placement left less even soon after our monitors \
             start; set norebalance before starting them if no PG may move yet"
                .to_string(),
        );
    }
    if counts.pgs_to_remap > 0 {
        notes.push(format!(
            "up to {} PGs are remapped by our reconciler at once: a member is out, gone or \
             shares a failure domain, or members are missing, and no change is in flight",
            counts.pgs_to_remap
        ));
    }
    if counts.pgs_to_refresh > 0 {
        notes.push(format!(
            "{} PGs get new state bits (and versions) from our reconciler at once: their \
             health does not match which members are up (the Go monitor, for one, marked a \
             PG undersize where our rule says down)",
            counts.pgs_to_refresh
        ));
    }
    if down_in > 0 {
        notes.push(format!(
            "{down_in} OSDs are down and in: {}",
            if flags.contains(ClusterFlag::NoOut) {
                "noout keeps them in"
            } else {
                "our failure detector marks them out after its grace unless they poll again, as \
                 the Go monitor would have after 40 s"
            }
        ));
    }
    notes
}

/// A source in the fixtures' format: one JSON object mapping each key to its value (a string
/// holding the value's bytes as stored). See `tests/fixtures/go/README.md`.
pub fn source_from_json(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, serde_json::Error> {
    let map: BTreeMap<String, String> = serde_json::from_slice(text)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
}

//! What an import found: counts, versions before and after, and every anomaly with its severity.
//! Printed for the operator (`Display`) and as JSON (`--json`, through `serde`). Every value of
//! the source quoted here went through `crate::text` (escaped, cut), and per-PG findings are
//! aggregated per pool and kind with a few examples, so a report stays short whatever the
//! source holds.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// How bad an anomaly is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The import corrects it and says how.
    Fixed,
    /// Imported as it is; our monitor will act on it (e.g. remap), or an OSD may be refused
    /// later. Worth reading, not a reason to stop.
    Warning,
    /// The import refuses to write unless the operator accepts it; the records hold the
    /// documented fallback.
    Blocking,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Fixed => "FIXED",
            Severity::Warning => "WARNING",
            Severity::Blocking => "BLOCKING",
        }
    }
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident = $code:literal, $severity:ident;)*) => {
        /// What an anomaly is about. Each kind has one severity.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum AnomalyKind {
            $($(#[$doc])* #[serde(rename = $code)] $kind,)*
        }

        impl AnomalyKind {
            /// The kind's name in the report and its JSON.
            pub fn code(self) -> &'static str {
                match self {
                    $(AnomalyKind::$kind => $code,)*
                }
            }

            /// The kind's severity.
            pub fn severity(self) -> Severity {
                match self {
                    $(AnomalyKind::$kind => Severity::$severity,)*
                }
            }
        }
    };
}

kinds! {
    /// A key the Go monitor never wrote: ignored.
    UnknownKey = "unknown-key", Warning;
    /// A field no reader here knows (`RwMutex` excepted): ignored, reported once per name.
    UnknownField = "unknown-field", Warning;
    /// A negative or absurd number (a version, a size, a count, a port): the fallback named.
    InvalidValue = "invalid-value", Blocking;
    /// An osdmap entry whose key is no OSD id (the Go monitor could not load it): dropped.
    BadOsdKey = "bad-osd-key", Blocking;
    /// An OSD whose `osdid` differs from its key: imported under its key.
    OsdIdMismatch = "osd-id-mismatch", Blocking;
    /// A uuid that does not parse: a placeholder; the OSD's next boot is refused.
    InvalidUuid = "invalid-uuid", Blocking;
    /// Two OSDs with one uuid: both kept; ApplyId of that uuid answers one of them.
    DuplicateUuid = "duplicate-uuid", Blocking;
    /// A booted OSD without a usable IP address: its polls cannot be recognised until it boots.
    InvalidAddress = "invalid-address", Blocking;
    /// A booted OSD whose host name our boot refuses (empty, spaces, too long): kept, but its
    /// next boot is refused.
    InvalidHost = "invalid-host", Blocking;
    /// A config text above our limit: kept, but the OSD's next boot is refused.
    ConfigTooLarge = "config-too-large", Blocking;
    /// A pending-create OSD marked up or in: imported as never booted (out).
    PendingOsdState = "pending-osd-state", Fixed;
    /// OSDs whose core count differs from the cluster's: their next boot is refused.
    CoreNumMismatch = "core-num-mismatch", Warning;
    /// A shard whose index, core id or port is absurd: dropped or 0.
    BadShard = "bad-shard", Blocking;
    /// Shard indexes with a gap: the missing shards are filled with zero ports.
    ShardGap = "shard-gap", Fixed;
    /// A `/config/pools/` key that names no pool id: ignored, as the Go monitor did.
    IgnoredPoolKey = "ignored-pool-key", Warning;
    /// A pool whose `poolid` differs from its key: imported under its key, as served.
    PoolIdMismatch = "pool-id-mismatch", Warning;
    /// Two pools with one name: both kept; the name finds the later one only.
    DuplicatePoolName = "duplicate-pool-name", Blocking;
    /// A pool without a failure domain: host, our default.
    EmptyFailureDomain = "empty-failure-domain", Fixed;
    /// A failure domain we do not know: host.
    UnknownFailureDomain = "unknown-failure-domain", Blocking;
    /// A root other than the default: the Go monitor never stored a topology, so every OSD
    /// is under the default root, and so is the pool.
    UnknownRoot = "unknown-root", Fixed;
    /// PG ids of 0..pg_count missing from the pgmap (a pool value over etcd's size limit left
    /// an older or no value): placed anew, empty.
    MissingPgs = "missing-pgs", Blocking;
    /// PG keys that are no id of 0..pg_count, or name a PG twice: dropped.
    PgOutOfRange = "pg-out-of-range", Blocking;
    /// A PG with no member left: placed anew, empty.
    NoMembers = "no-members", Blocking;
    /// A member or new member listed twice: the later ones removed.
    DuplicateMember = "duplicate-member", Fixed;
    /// A member or new member that is no OSD of the osdmap: removed.
    UnknownMember = "unknown-member", Fixed;
    /// Two replicas (or two new members) in one failure-domain bucket: kept; our reconciler
    /// remaps the PG.
    SharedFailureDomain = "shared-failure-domain", Warning;
    /// More members than the pool's size: kept.
    TooManyMembers = "too-many-members", Warning;
    /// A core index not below a member's core count: kept.
    CoreBeyondCoreNum = "core-beyond-core-num", Warning;
    /// New members with `newcoreindex` 4294967295: the change keeps the PG's core.
    TargetWithoutCore = "target-without-core", Fixed;
    /// A state the Go monitor never sets, or remapped without new members (or the reverse):
    /// the state our core gives those members.
    StateNormalised = "state-normalised", Fixed;
    /// An image key and `imageID` that are both no image id: dropped.
    BadImageId = "bad-image-id", Blocking;
    /// An image whose `imageID` differs from its key: imported under its `imageID`.
    ImageIdMismatch = "image-id-mismatch", Warning;
    /// Two images with one id: the later dropped.
    DuplicateImageId = "duplicate-image-id", Blocking;
    /// An image naming a pool that does not exist: dropped.
    ImagePoolGone = "image-pool-gone", Blocking;
    /// Two images of one pool with one name: both kept; the name finds the later one only.
    DuplicateImageName = "duplicate-image-name", Blocking;
}

/// One anomaly (or one kind of anomaly within one pool, counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    pub severity: Severity,
    pub kind: AnomalyKind,
    /// The source key it was found under (cut to one short line).
    pub key: String,
    /// How many instances (PGs, OSDs, keys) it stands for.
    pub count: u64,
    /// What was found and what the import does about it: one line, values quoted and cut.
    pub detail: String,
}

/// What the import holds, counted from the records it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub osds: u64,
    pub osds_up: u64,
    pub osds_in: u64,
    /// Applied for, never booted.
    pub osds_pending_create: u64,
    pub pools: u64,
    pub pgs: u64,
    /// PGs with a membership change in flight (new members published).
    pub pgs_remapped: u64,
    /// PGs without a change in flight that our reconciler will remap at once (a member out,
    /// gone or sharing a failure domain, or too few members), as the Go monitor would have
    /// once it could. An upper bound: it does not remap what cannot be placed.
    pub pgs_to_remap: u64,
    /// PGs whose state bits our reconciler updates at once, because they do not match which
    /// members are up (before any remap). Their versions move; their members do not.
    pub pgs_to_refresh: u64,
    pub images: u64,
    pub flags_set: u64,
    /// `/config/topology/*` keys: never used by the Go monitor, ignored.
    pub topology_keys_ignored: u64,
    /// Keys of the Go monitors' election: ignored.
    pub election_keys_ignored: u64,
    /// Keys the Go monitor never wrote: ignored (one anomaly lists them).
    pub unknown_keys: u64,
}

/// One pool's versions: the source's and the epoch our records carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolVersions {
    pub pool: u32,
    /// `poolpgmap.version`.
    pub source_pgmap: i64,
    /// The highest PG version of the pool in the source.
    pub source_max_pg: i64,
    /// Our pool epoch: at least both of the above, one more when the import changed a PG.
    pub epoch: u64,
}

/// Versions before and after: ours are never lower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// The osdmap `version` (0 when absent).
    pub source_osdmap: i64,
    /// Our osdmap epoch: the source's (at least 1), one more when the import changed what the
    /// osdmap shows of an OSD.
    pub osdmap_epoch: u64,
    /// The highest PG version of all pools in the source.
    pub source_max_pg: i64,
    /// By pool id.
    pub pools: Vec<PoolVersions>,
}

/// The report of one conversion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub counts: Counts,
    pub versions: Versions,
    /// The flags set, by name.
    pub flags: Vec<&'static str>,
    /// `/cluster/unprocessedev` holds `outToIn: true`.
    pub pending_out_to_in: bool,
    /// What will happen after the import that the operator should know (one line each).
    pub notes: Vec<String>,
    /// Blocking first, then warnings, then what was fixed; in source order within each.
    pub anomalies: Vec<Anomaly>,
}

impl ImportReport {
    /// The anomalies that stop an import unless accepted.
    pub fn blocking(&self) -> impl Iterator<Item = &Anomaly> {
        self.anomalies
            .iter()
            .filter(|a| a.severity == Severity::Blocking)
    }

    /// Whether the import must be accepted explicitly.
    pub fn has_blocking(&self) -> bool {
        self.blocking().next().is_some()
    }

    /// How many anomalies of `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.anomalies
            .iter()
            .filter(|a| a.severity == severity)
            .count()
    }

    /// The report as pretty-printed JSON (for `--json`).
    pub fn to_json(&self) -> String {
        // Plain structs, string keys: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Pools listed one per line in the text report; the rest are summed up (all are in the JSON).
const POOLS_LISTED: usize = 16;

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(f, "Go monitor state to import:")?;
        writeln!(
            f,
            "  OSDs: {} ({} up, {} in, {} pending create)",
            c.osds, c.osds_up, c.osds_in, c.osds_pending_create
        )?;
        writeln!(
            f,
            "  pools: {}, PGs: {} ({} remapped in flight; up to {} to be remapped and {} to get \
             new state bits from our reconciler)",
            c.pools, c.pgs, c.pgs_remapped, c.pgs_to_remap, c.pgs_to_refresh
        )?;
        writeln!(f, "  images: {}", c.images)?;
        if self.flags.is_empty() {
            writeln!(f, "  flags: none")?;
        } else {
            writeln!(f, "  flags: {}", self.flags.join(","))?;
        }
        writeln!(
            f,
            "  pending out→in rebalance: {}",
            if self.pending_out_to_in { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "  ignored: {} /config/topology keys, {} election keys, {} unknown keys",
            c.topology_keys_ignored, c.election_keys_ignored, c.unknown_keys
        )?;
        let v = &self.versions;
        writeln!(f, "versions (source → ours, never lower):")?;
        writeln!(f, "  osdmap: {} → {}", v.source_osdmap, v.osdmap_epoch)?;
        for p in v.pools.iter().take(POOLS_LISTED) {
            writeln!(
                f,
                "  pool {}: pgmap {}, highest PG {} → epoch {}",
                p.pool, p.source_pgmap, p.source_max_pg, p.epoch
            )?;
        }
        if v.pools.len() > POOLS_LISTED {
            let rest = &v.pools[POOLS_LISTED..];
            let raised = rest
                .iter()
                .filter(|p| i128::from(p.epoch) > i128::from(p.source_pgmap))
                .count();
            writeln!(
                f,
                "  … {} more pools ({raised} of them raised above their pgmap version; see --json)",
                rest.len()
            )?;
        }
        let mut by: BTreeMap<Severity, usize> = BTreeMap::new();
        for a in &self.anomalies {
            *by.entry(a.severity).or_default() += 1;
        }
        writeln!(
            f,
            "anomalies: {} blocking, {} warnings, {} fixed",
            by.get(&Severity::Blocking).unwrap_or(&0),
            by.get(&Severity::Warning).unwrap_or(&0),
            by.get(&Severity::Fixed).unwrap_or(&0)
        )?;
        for a in &self.anomalies {
            writeln!(
                f,
                "  {} {} {}: {}",
                a.severity.label(),
                a.kind.code(),
                a.key,
                a.detail
            )?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// Examples kept per counted anomaly.
const EXAMPLES: usize = 4;

/// Anomalies as they are found, then sorted into the report.
#[derive(Debug, Default)]
pub(super) struct Findings {
    anomalies: Vec<Anomaly>,
    /// Unknown fields by (object, name): how often, and the first key holding one.
    unknown_fields: BTreeMap<(&'static str, String), (u64, String)>,
}

/// Distinct unknown field names reported; the rest are counted in one line.
const UNKNOWN_FIELDS_REPORTED: usize = 32;

impl Findings {
    /// One anomaly.
    pub(super) fn add(&mut self, kind: AnomalyKind, key: &str, detail: String) {
        self.add_counted(kind, key, 1, detail);
    }

    /// One anomaly standing for `count` instances.
    pub(super) fn add_counted(&mut self, kind: AnomalyKind, key: &str, count: u64, detail: String) {
        self.anomalies.push(Anomaly {
            severity: kind.severity(),
            kind,
            key: shown_key(key),
            count,
            detail,
        });
    }

    /// Unknown fields of an object found under `key`.
    pub(super) fn unknown_fields(&mut self, what: &'static str, names: &[String], key: &str) {
        for name in names {
            let entry = self
                .unknown_fields
                .entry((what, name.clone()))
                .or_insert_with(|| (0, key.to_string()));
            entry.0 += 1;
        }
    }

    /// The anomalies, blocking first, then warnings, then fixed (stable within each).
    pub(super) fn into_anomalies(mut self) -> Vec<Anomaly> {
        let total = self.unknown_fields.len();
        for (i, ((what, name), (count, key))) in std::mem::take(&mut self.unknown_fields)
            .into_iter()
            .enumerate()
        {
            if i == UNKNOWN_FIELDS_REPORTED {
                let rest = total - UNKNOWN_FIELDS_REPORTED;
                self.add_counted(
                    AnomalyKind::UnknownField,
                    "",
                    rest as u64,
                    format!("{rest} more unknown field names, ignored"),
                );
                break;
            }
            let detail = format!(
                "field '{name}' of {count} {what} value(s) (first under {}) is unknown: ignored",
                shown_key(&key)
            );
            self.add_counted(AnomalyKind::UnknownField, &key, count, detail);
        }
        self.anomalies
            .sort_by_key(|a| std::cmp::Reverse(a.severity));
        self.anomalies
    }
}

/// A source key as the report shows it.
pub(super) fn shown_key(key: &str) -> String {
    crate::text::one_line(key, 96)
}

/// Instances of one kind of anomaly (within one pool): how many, and the first few.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) count: u64,
    pub(super) examples: Vec<String>,
}

impl Tally {
    pub(super) fn note(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }

    /// `N <what>: e.g. a; b; c; d; …`
    pub(super) fn summary(&self, what: &str) -> String {
        let more = if self.count > self.examples.len() as u64 {
            "; …"
        } else {
            ""
        };
        format!("{} {what}: {}{more}", self.count, self.examples.join("; "))
    }
}

/// Counted anomalies of one pool, by kind.
#[derive(Debug, Default)]
pub(super) struct Tallies(pub(super) BTreeMap<AnomalyKind, Tally>);

impl Tallies {
    pub(super) fn note(&mut self, kind: AnomalyKind, example: impl FnOnce() -> String) {
        self.0.entry(kind).or_default().note(example);
    }
}

impl Tallies {
    /// One anomaly per kind noted, under `key`: the count of `unit`s, the examples, and what the
    /// import does about it.
    pub(super) fn flush(self, findings: &mut Findings, key: &str, unit: &str) {
        for (kind, tally) in self.0 {
            let detail = format!("{}; {}", tally.summary(unit), remedy(kind));
            findings.add_counted(kind, key, tally.count, detail);
        }
    }
}

/// What the import does about a kind of anomaly counted per OSD or PG.
fn remedy(kind: AnomalyKind) -> &'static str {
    use AnomalyKind as K;
    match kind {
        K::InvalidValue => "the values shown replaced as shown",
        K::BadOsdKey => "dropped (the Go monitor could not load them either)",
        K::OsdIdMismatch => "imported under their key, the id the Go monitor looked them up by",
        K::InvalidUuid => {
            "imported with a placeholder uuid (676f0000-0000-8000-8000-<id>); their next boot is \
             refused, as our boot checks the uuid"
        }
        K::DuplicateUuid => "both kept; ApplyId of that uuid answers the higher id",
        K::InvalidAddress => {
            "imported without an address: their polls are not recognised as theirs until they \
             boot again"
        }
        K::InvalidHost => "kept; their next boot is refused until the host name is fixed",
        K::ConfigTooLarge => "kept; their next boot is refused until the config text shrinks",
        K::PendingOsdState => "imported as never booted (out, not up): they must boot",
        K::BadShard => "the shards or values shown dropped or set to 0",
        K::ShardGap => "the missing shard indexes filled with zero ports",
        K::MissingPgs => {
            "placed anew by our placement, empty: whatever OSDs hold for them is not known to \
             this import"
        }
        K::PgOutOfRange => "dropped",
        K::NoMembers => "placed anew by our placement, empty",
        K::DuplicateMember => "the repeated ids removed, the first kept",
        K::UnknownMember => "removed; our reconciler refills a PG left short",
        K::SharedFailureDomain => "kept; our reconciler remaps these PGs where the topology allows",
        K::TooManyMembers => "kept",
        K::CoreBeyondCoreNum => "kept",
        K::TargetWithoutCore => "the change keeps the PG's core",
        K::StateNormalised => {
            "stored as the state our core gives those members (the maps show the value after →)"
        }
        _ => "see the kind",
    }
}

/// At most this many ids of a list are shown.
const LIST_SHOWN: usize = 8;

/// `[1,2,3]`, with at most [`LIST_SHOWN`] entries.
pub(super) fn shown_list(ids: &[i64]) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.iter().take(LIST_SHOWN).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    if ids.len() > LIST_SHOWN {
        out.push_str(&format!(",…({} ids)", ids.len()));
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_tallies_stay_short() {
        assert_eq!(shown_list(&[1, 2]), "[1,2]");
        let long: Vec<i64> = (0..1000).collect();
        assert_eq!(shown_list(&long), "[0,1,2,3,4,5,6,7,…(1000 ids)]");
        let mut t = Tally::default();
        for i in 0..10 {
            t.note(|| format!("pg {i}"));
        }
        assert_eq!(t.summary("PGs"), "10 PGs: pg 0; pg 1; pg 2; pg 3; …");
    }

    #[test]
    fn anomalies_are_sorted_by_severity_and_unknown_fields_named_once() {
        let mut f = Findings::default();
        f.add(AnomalyKind::ShardGap, "/osd/osdmap", "gap".to_string());
        f.add(AnomalyKind::InvalidUuid, "/osd/osdmap", "uuid".to_string());
        f.unknown_fields("PG", &["x".to_string()], "/config/pools/1");
        f.unknown_fields("PG", &["x".to_string()], "/config/pools/2");
        let a = f.into_anomalies();
        let kinds: Vec<_> = a.iter().map(|a| (a.kind, a.count)).collect();
        assert_eq!(
            kinds,
            [
                (AnomalyKind::InvalidUuid, 1),
                (AnomalyKind::UnknownField, 2),
                (AnomalyKind::ShardGap, 1)
            ]
        );
        assert_eq!(
            a[1].detail,
            "field 'x' of 2 PG value(s) (first under /config/pools/1) is unknown: ignored"
        );
    }
}

//! Client I/O statistics from the OSDs' DataStatistics reports: per-(OSD, PG) cumulative
//! counters folded into monotonic per-pool totals, and rates over a real sliding window.
//!
//! An OSD's counters for a PG are cumulative since the PG started on that OSD, so increases are
//! taken per (OSD, PG): two OSDs reporting one PG each count their own I/O once, however often
//! they alternate. A counter set that goes backwards restarted (the OSD restarted, or the PG came
//! back to it) and counts its new value as the increase. Every sum saturates, so totals never go
//! back. A report is checked against the cluster state first ([`IoReport::check`]); the counters
//! held per (OSD, PG) are dropped once the PG no longer involves the OSD, which bounds them by
//! the PGs' memberships. Time is passed in.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::error::ClusterError;
use super::state::ClusterState;
use super::types::{OsdId, PgId, PoolId};

/// Cumulative I/O counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

impl IoCounters {
    fn saturating_add(&mut self, o: IoCounters) {
        self.read_bytes = self.read_bytes.saturating_add(o.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(o.write_bytes);
        self.read_ops = self.read_ops.saturating_add(o.read_ops);
        self.write_ops = self.write_ops.saturating_add(o.write_ops);
    }

    /// The per-counter difference to an earlier value of a monotonic set (0 where none grew).
    fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            read_ops: self.read_ops.saturating_sub(earlier.read_ops),
            write_ops: self.write_ops.saturating_sub(earlier.write_ops),
        }
    }

    /// The increase of one OSD's counters for one PG from `old`. The counters restart together,
    /// so any of them going backwards means all restarted from zero: the new values are the
    /// increase.
    fn increase_from(self, old: IoCounters) -> IoCounters {
        let restarted = self.read_bytes < old.read_bytes
            || self.write_bytes < old.write_bytes
            || self.read_ops < old.read_ops
            || self.write_ops < old.write_ops;
        if restarted { self } else { self.since(old) }
    }
}

/// Rates over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IoRates {
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    pub read_ops_per_sec: f64,
    pub write_ops_per_sec: f64,
    /// Seconds between the oldest and newest sample used (0: not enough samples yet).
    pub window_seconds: f64,
    /// Finished PG membership changes per second.
    pub recovery_pgs_per_sec: f64,
}

/// Parses a DataStatistics PG name, `<pool id>.<pg id>` (the pg id in decimal or 0x-hex).
pub fn parse_pg_name(name: &str) -> Option<(PoolId, PgId)> {
    let (pool, pg) = name.split_once('.')?;
    let pool = pool.parse().ok()?;
    let pg = match pg.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => pg.parse().ok()?,
    };
    Some((PoolId(pool), PgId(pg)))
}

/// Whether `osd` holds PG `pg` of `pool` in `state` (see [`super::Pg::involves`]).
fn holds(state: &ClusterState, osd: OsdId, (pool, pg): (PoolId, PgId)) -> bool {
    state
        .pool(pool)
        .and_then(|p| p.pgs.get(pg))
        .is_some_and(|g| g.involves(osd))
}

/// A DataStatistics report checked against the cluster state, ready to be recorded.
///
/// The reporter must exist and be up, and every name must be a PG name given once, or the whole
/// report is refused. Entries of PGs the reporter does not hold are skipped and counted rather
/// than refusing the report: an OSD reports every PG it leads at once, and membership changes
/// race with its reports, so one PG that just moved must not cost the counts of all the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoReport {
    reporter: OsdId,
    /// Entries of PGs the reporter holds.
    entries: Vec<((PoolId, PgId), IoCounters)>,
    /// Entries skipped because their pool or PG does not exist.
    pub unknown: u32,
    /// Entries skipped because the reporter does not hold their PG.
    pub not_member: u32,
}

impl IoReport {
    /// Checks `reporter`'s report of `(PG name, cumulative counters)` against `state`.
    pub fn check<'a>(
        state: &ClusterState,
        reporter: OsdId,
        entries: impl IntoIterator<Item = (&'a str, IoCounters)>,
    ) -> Result<IoReport, ClusterError> {
        state.check_reporter_up(reporter)?;
        let mut report = IoReport {
            reporter,
            entries: Vec::new(),
            unknown: 0,
            not_member: 0,
        };
        let mut seen = HashSet::new();
        for (name, counters) in entries {
            let key = parse_pg_name(name).ok_or_else(|| {
                ClusterError::InvalidPgName(format!("'{}'", super::error::echo(name)))
            })?;
            // Two spellings of one PG ("1.10", "1.0xa") would count against each other.
            if !seen.insert(key) {
                return Err(ClusterError::DuplicatePgName {
                    pool: key.0,
                    pg: key.1,
                });
            }
            match state.pool(key.0).and_then(|p| p.pgs.get(key.1)) {
                None => report.unknown = report.unknown.saturating_add(1),
                Some(pg) if !pg.involves(reporter) => {
                    report.not_member = report.not_member.saturating_add(1);
                }
                Some(_) => report.entries.push((key, counters)),
            }
        }
        Ok(report)
    }
}

/// The aggregator of one leadership term.
#[derive(Debug, Clone)]
pub struct IoStats {
    window: Duration,
    /// The last counters of each reporting OSD, per PG it holds.
    last: HashMap<OsdId, HashMap<(PoolId, PgId), IoCounters>>,
    totals: BTreeMap<PoolId, IoCounters>,
    recoveries: u64,
    /// (time, cluster totals, recoveries) at most one sample per second.
    samples: VecDeque<(Instant, IoCounters, u64)>,
    /// When the held counters of every OSD were last checked against the state.
    swept: Option<Instant>,
}

impl IoStats {
    /// Rates will be computed over `window`; held counters of OSDs that stopped reporting are
    /// dropped at most once per `window`.
    pub fn new(window: Duration) -> IoStats {
        IoStats {
            window,
            last: HashMap::new(),
            totals: BTreeMap::new(),
            recoveries: 0,
            samples: VecDeque::new(),
            swept: None,
        }
    }

    /// Folds in a checked report; `state` is the one it was checked against (or newer).
    pub fn record(&mut self, report: IoReport, state: &ClusterState, now: Instant) {
        let held = self.last.entry(report.reporter).or_default();
        // A PG that left the reporter ends its counters there: if it comes back they start from
        // zero again.
        held.retain(|key, _| holds(state, report.reporter, *key));
        for (key, counters) in report.entries {
            let old = held.insert(key, counters).unwrap_or_default();
            self.totals
                .entry(key.0)
                .or_default()
                .saturating_add(counters.increase_from(old));
        }
        if held.is_empty() {
            self.last.remove(&report.reporter);
        }
        self.sweep(state, now);
        self.sample(now);
    }

    /// Counts a finished membership change.
    pub fn recovered(&mut self, now: Instant) {
        self.recoveries = self.recoveries.saturating_add(1);
        self.sample(now);
    }

    /// Forgets a deleted pool's PGs (its totals stay, as counters must not go back).
    pub fn forget_pool(&mut self, pool: PoolId) {
        self.last.retain(|_, held| {
            held.retain(|(p, _), _| *p != pool);
            !held.is_empty()
        });
    }

    /// Monotonic totals per pool.
    pub fn totals(&self) -> &BTreeMap<PoolId, IoCounters> {
        &self.totals
    }

    /// Cluster-wide totals.
    pub fn cluster_totals(&self) -> IoCounters {
        let mut t = IoCounters::default();
        for c in self.totals.values() {
            t.saturating_add(*c);
        }
        t
    }

    /// How many (OSD, PG) counters are held.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.last.values().map(HashMap::len).sum()
    }

    /// Drops the counters of OSDs that no longer hold their PGs (moved, purged, pool deleted)
    /// and stopped reporting, at most once per window: a full pass costs one look-up per held
    /// counter.
    fn sweep(&mut self, state: &ClusterState, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < self.window)
        {
            return;
        }
        self.swept = Some(now);
        self.last.retain(|osd, held| {
            held.retain(|key, _| holds(state, *osd, *key));
            !held.is_empty()
        });
    }

    fn sample(&mut self, now: Instant) {
        let totals = self.cluster_totals();
        match self.samples.back_mut() {
            // Keep one sample per second: update the newest in place.
            Some(last) if now.saturating_duration_since(last.0) < Duration::from_secs(1) => {
                last.1 = totals;
                last.2 = self.recoveries;
            }
            _ => self.samples.push_back((now, totals, self.recoveries)),
        }
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.0) > self.window)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Rates between the oldest and newest sample of the window ending at `now`.
    pub fn rates(&self, now: Instant) -> IoRates {
        let live: Vec<&(Instant, IoCounters, u64)> = self
            .samples
            .iter()
            .filter(|s| now.saturating_duration_since(s.0) <= self.window)
            .collect();
        let (Some(first), Some(last)) = (live.first(), live.last()) else {
            return IoRates::default();
        };
        let secs = last.0.saturating_duration_since(first.0).as_secs_f64();
        if secs <= 0.0 {
            return IoRates::default();
        }
        let d = last.1.since(first.1);
        IoRates {
            read_bytes_per_sec: d.read_bytes as f64 / secs,
            write_bytes_per_sec: d.write_bytes as f64 / secs,
            read_ops_per_sec: d.read_ops as f64 / secs,
            write_ops_per_sec: d.write_ops as f64 / secs,
            window_seconds: secs,
            recovery_pgs_per_sec: last.2.saturating_sub(first.2) as f64 / secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_names_parse() {
        assert_eq!(parse_pg_name("1.0"), Some((PoolId(1), PgId(0))));
        assert_eq!(parse_pg_name("12.255"), Some((PoolId(12), PgId(255))));
        assert_eq!(parse_pg_name("3.0x1f"), Some((PoolId(3), PgId(31))));
        for bad in ["", "1", "a.1", "1.b", "1.2.3", "-1.0"] {
            assert_eq!(parse_pg_name(bad), None, "{bad}");
        }
    }
}

//! Client I/O statistics from the OSDs' DataStatistics reports: per-PG cumulative counters
//! folded into monotonic per-pool totals, and rates over a real sliding window. A PG's counter
//! that goes backwards (its leader moved and started from zero) counts its new value as the
//! increase, so totals never go back. Time is passed in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::types::{PgId, PoolId};

/// Cumulative I/O counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

impl IoCounters {
    /// Saturates: counters reported near 2^64 must not overflow the totals.
    fn add(&mut self, o: IoCounters) {
        self.read_bytes = self.read_bytes.saturating_add(o.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(o.write_bytes);
        self.read_ops = self.read_ops.saturating_add(o.read_ops);
        self.write_ops = self.write_ops.saturating_add(o.write_ops);
    }

    /// The increase from `old` to `self`, treating a decrease as a restart from zero.
    fn increase_from(self, old: IoCounters) -> IoCounters {
        let d = |new: u64, old: u64| if new >= old { new - old } else { new };
        IoCounters {
            read_bytes: d(self.read_bytes, old.read_bytes),
            write_bytes: d(self.write_bytes, old.write_bytes),
            read_ops: d(self.read_ops, old.read_ops),
            write_ops: d(self.write_ops, old.write_ops),
        }
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

/// The aggregator of one leadership term.
#[derive(Debug, Clone)]
pub struct IoStats {
    window: Duration,
    last: HashMap<(PoolId, PgId), IoCounters>,
    totals: BTreeMap<PoolId, IoCounters>,
    recoveries: u64,
    /// (time, cluster totals, recoveries) at most one sample per second.
    samples: VecDeque<(Instant, IoCounters, u64)>,
}

impl IoStats {
    /// Rates will be computed over `window`.
    pub fn new(window: Duration) -> IoStats {
        IoStats {
            window,
            last: HashMap::new(),
            totals: BTreeMap::new(),
            recoveries: 0,
            samples: VecDeque::new(),
        }
    }

    /// Folds in one report (PG → cumulative counters).
    pub fn report(
        &mut self,
        pgs: impl IntoIterator<Item = ((PoolId, PgId), IoCounters)>,
        now: Instant,
    ) {
        for (key, counters) in pgs {
            let old = self.last.insert(key, counters).unwrap_or_default();
            self.totals
                .entry(key.0)
                .or_default()
                .add(counters.increase_from(old));
        }
        self.sample(now);
    }

    /// Counts a finished membership change.
    pub fn recovered(&mut self, now: Instant) {
        self.recoveries += 1;
        self.sample(now);
    }

    /// Forgets a deleted pool's PGs (its totals stay, as counters must not go back).
    pub fn forget_pool(&mut self, pool: PoolId) {
        self.last.retain(|(p, _), _| *p != pool);
    }

    /// Monotonic totals per pool.
    pub fn totals(&self) -> &BTreeMap<PoolId, IoCounters> {
        &self.totals
    }

    /// Cluster-wide totals.
    pub fn cluster_totals(&self) -> IoCounters {
        let mut t = IoCounters::default();
        for c in self.totals.values() {
            t.add(*c);
        }
        t
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
        let d = last.1.increase_from(first.1);
        IoRates {
            read_bytes_per_sec: d.read_bytes as f64 / secs,
            write_bytes_per_sec: d.write_bytes as f64 / secs,
            read_ops_per_sec: d.read_ops as f64 / secs,
            write_ops_per_sec: d.write_ops as f64 / secs,
            window_seconds: secs,
            recovery_pgs_per_sec: (last.2 - first.2) as f64 / secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rb: u64, wb: u64) -> IoCounters {
        IoCounters {
            read_bytes: rb,
            write_bytes: wb,
            read_ops: rb / 100,
            write_ops: wb / 100,
        }
    }

    #[test]
    fn pg_names_parse() {
        assert_eq!(parse_pg_name("1.0"), Some((PoolId(1), PgId(0))));
        assert_eq!(parse_pg_name("12.255"), Some((PoolId(12), PgId(255))));
        assert_eq!(parse_pg_name("3.0x1f"), Some((PoolId(3), PgId(31))));
        for bad in ["", "1", "a.1", "1.b", "1.2.3", "-1.0"] {
            assert_eq!(parse_pg_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn totals_saturate_instead_of_overflowing() {
        let t0 = Instant::now();
        let mut s = IoStats::new(Duration::from_secs(10));
        s.report(
            [
                ((PoolId(1), PgId(0)), c(u64::MAX, 1)),
                ((PoolId(1), PgId(1)), c(u64::MAX, 1)),
            ],
            t0,
        );
        assert_eq!(s.totals()[&PoolId(1)].read_bytes, u64::MAX);
        assert_eq!(s.totals()[&PoolId(1)].write_bytes, 2);
        s.report([((PoolId(2), PgId(0)), c(u64::MAX, 0))], t0);
        assert_eq!(s.cluster_totals().read_bytes, u64::MAX);
    }

    #[test]
    fn totals_are_monotonic_across_counter_resets() {
        let t0 = Instant::now();
        let mut s = IoStats::new(Duration::from_secs(10));
        s.report([((PoolId(1), PgId(0)), c(1000, 500))], t0);
        s.report(
            [((PoolId(1), PgId(0)), c(3000, 500))],
            t0 + Duration::from_secs(1),
        );
        // The PG's leader moved: its counters restart from zero.
        s.report(
            [((PoolId(1), PgId(0)), c(200, 100))],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(s.totals()[&PoolId(1)].read_bytes, 3200);
        assert_eq!(s.cluster_totals().write_bytes, 600);
    }

    #[test]
    fn rates_use_the_real_window() {
        let t0 = Instant::now();
        let mut s = IoStats::new(Duration::from_secs(10));
        assert_eq!(s.rates(t0).window_seconds, 0.0, "no samples: no rate");
        for i in 0..=20u64 {
            // 1000 bytes/s read, steady.
            s.report(
                [((PoolId(1), PgId(0)), c(1000 * i, 0))],
                t0 + Duration::from_secs(i),
            );
        }
        s.recovered(t0 + Duration::from_secs(20));
        let r = s.rates(t0 + Duration::from_secs(20));
        assert!((r.read_bytes_per_sec - 1000.0).abs() < 1e-6, "{r:?}");
        assert!((r.window_seconds - 10.0).abs() < 1e-6, "{r:?}");
        assert!(r.recovery_pgs_per_sec > 0.0);
        // Long after the last report the window is empty again.
        assert_eq!(s.rates(t0 + Duration::from_secs(100)).window_seconds, 0.0);
    }
}

//! Failure detection bookkeeping: when each OSD was last heard from and since when it has been
//! down, and the resulting decisions. Heartbeats only touch this in-memory table; only the
//! decisions (mark down, mark out) become commands. Time is passed in.
//!
//! Two guards keep a monitor that cannot hear its OSDs (overloaded, stalled, cut off) from
//! marking healthy OSDs down en masse: automatic mark-down never takes the share of up OSDs
//! below `min_up_ratio` (Ceph's `mon_osd_min_up_ratio`), and time during which the monitor
//! itself could not run (a stall the caller measures and passes to [`FailureDetector::forgive`])
//! does not count as OSD silence.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::osd::Liveness;
use super::out_guards::{OutGuards, OutRefusal};
use super::state::ClusterState;
use super::types::OsdId;

/// How the failure detector decides. Every field is a config key; their defaults live with the
/// keys in `config.rs` (the only place), so the core holds no second copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailurePolicy {
    /// An up OSD without a heartbeat for this long is marked down.
    pub down_after: Duration,
    /// A down OSD that is in is marked out after this long down.
    pub out_after: Duration,
    /// Guards on automatic outs.
    pub guards: OutGuards,
    /// An OSD marked down this many times within `flap_window` is reported as flapping.
    pub flap_count: usize,
    pub flap_window: Duration,
    /// Automatic mark-down stops where it would leave fewer than this share of the OSDs
    /// that count (in, or up) up; 0 disables the guard.
    pub min_up_ratio: f64,
}

/// Heartbeat intervals kept per OSD: its window (the last N intervals, the way a cluster
/// monitor keeps a window of each peer's metrics).
pub const HEARTBEAT_WINDOW: usize = 8;
/// Intervals an OSD's window needs before the OSD can be found late.
const MIN_SAMPLES: usize = 3;
/// Late: silent for longer than this many times its usual interval...
const LATE_FACTOR: u32 = 3;
/// ... and for longer than this (an OSD beating every 10 ms is not late after 30 ms).
const MIN_LATE: Duration = Duration::from_secs(1);

/// An up OSD silent for much longer than it usually is, not yet long enough to be marked
/// down: the warning before the mark-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub id: OsdId,
    /// Since its last heartbeat.
    pub silent: Duration,
    /// The mean interval of its window.
    pub usual: Duration,
}

/// One OSD's heartbeat window: its last heartbeat and the intervals before it.
#[derive(Debug, Clone, Default)]
struct Window {
    last: Option<Instant>,
    intervals: VecDeque<Duration>,
}

impl Window {
    fn heard(&mut self, now: Instant) {
        if let Some(last) = self.last {
            if self.intervals.len() == HEARTBEAT_WINDOW {
                self.intervals.pop_front();
            }
            self.intervals
                .push_back(now.saturating_duration_since(last));
        }
        self.last = Some(now);
    }

    /// The mean interval, once there are enough of them.
    fn usual(&self) -> Option<Duration> {
        (self.intervals.len() >= MIN_SAMPLES)
            .then(|| self.intervals.iter().sum::<Duration>() / self.intervals.len() as u32)
    }
}

/// What the failure detector found at its last check, for health, status and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectorFindings {
    /// Automatic outs the guards refused.
    pub out_refused: Vec<(OsdId, OutRefusal)>,
    /// Silent OSDs kept up by the min-up-ratio guard.
    pub down_refused: Vec<OsdId>,
    /// OSDs marked down repeatedly, with how often.
    pub flapping: Vec<(OsdId, usize)>,
    /// Up OSDs late with their heartbeats, longest silent first.
    pub late: Vec<Late>,
}

/// When each OSD was last heard from, as the detector knew it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LastHeard {
    /// What an OSD never heard from counts from (the term start, moved by stalls).
    started: Instant,
    at: HashMap<OsdId, Instant>,
}

impl LastHeard {
    /// Nobody heard from yet, in a term started at `now`.
    pub fn new(now: Instant) -> LastHeard {
        LastHeard {
            started: now,
            at: HashMap::new(),
        }
    }

    /// When `id` was last heard from (the term start if never).
    pub fn last_seen(&self, id: OsdId) -> Instant {
        self.at.get(&id).copied().unwrap_or(self.started)
    }
}

/// What the detector decided on one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub mark_down: Vec<OsdId>,
    /// Silent OSDs that the min-up-ratio guard keeps up.
    pub down_refused: Vec<OsdId>,
    pub mark_out: Vec<OsdId>,
}

/// Per-term heartbeat bookkeeping.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    /// When this term began: every OSD counts as heard from then (grace after a takeover).
    started: Instant,
    last_seen: HashMap<OsdId, Instant>,
    down_since: HashMap<OsdId, Instant>,
    /// When the detector marked each OSD down, within the flap window.
    marked_down: HashMap<OsdId, VecDeque<Instant>>,
    /// Each up OSD's heartbeat window (dropped while it is not up, so a restart's gap is not
    /// an interval).
    windows: HashMap<OsdId, Window>,
    /// Up OSDs late with their heartbeats at the last check.
    late: Vec<Late>,
}

impl FailureDetector {
    /// A detector for a term starting at `now`.
    pub fn new(now: Instant) -> FailureDetector {
        FailureDetector {
            started: now,
            last_seen: HashMap::new(),
            down_since: HashMap::new(),
            marked_down: HashMap::new(),
            windows: HashMap::new(),
            late: Vec::new(),
        }
    }

    /// Records a heartbeat (or a boot) of `id` at `now`.
    pub fn heard_from(&mut self, id: OsdId, now: Instant) {
        self.last_seen.insert(id, now);
        self.down_since.remove(&id);
        self.windows.entry(id).or_default().heard(now);
    }

    /// Up OSDs late with their heartbeats at the last check: silent for more than
    /// `LATE_FACTOR` times their usual interval (and at least `MIN_LATE`), not yet marked
    /// down. Longest silent first.
    pub fn late(&self) -> Vec<Late> {
        self.late.clone()
    }

    /// When `id` was last heard from (the term start if never).
    pub fn last_seen(&self, id: OsdId) -> Instant {
        self.last_seen.get(&id).copied().unwrap_or(self.started)
    }

    /// A copy of when every OSD was last heard from, for readers outside the detector.
    pub fn last_heard(&self) -> LastHeard {
        LastHeard {
            started: self.started,
            at: self.last_seen.clone(),
        }
    }

    /// Up OSDs silent for longer than `down_after` go down (longest silent first, as far as
    /// the min-up-ratio guard allows); down OSDs that are in and have been down (as seen by
    /// this term) for longer than `out_after` go out.
    pub fn check(&mut self, state: &ClusterState, now: Instant, t: FailurePolicy) -> Decisions {
        let mut d = Decisions::default();
        let mut silent: Vec<(Instant, OsdId)> = Vec::new();
        let (mut up, mut counted) = (0usize, 0usize);
        self.late.clear();
        for osd in state.osds() {
            if osd.is_up() || osd.is_in() {
                counted += 1;
            }
            match osd.liveness {
                Liveness::Up { .. } => {
                    up += 1;
                    self.down_since.remove(&osd.id);
                    let seen = self.last_seen(osd.id);
                    let quiet = now.saturating_duration_since(seen);
                    if quiet > t.down_after {
                        silent.push((seen, osd.id));
                    } else if let Some(usual) = self.windows.get(&osd.id).and_then(Window::usual)
                        && quiet > (usual * LATE_FACTOR).max(MIN_LATE)
                    {
                        self.late.push(Late {
                            id: osd.id,
                            silent: quiet,
                            usual,
                        });
                    }
                }
                Liveness::Down { .. } if osd.is_in() => {
                    let since = *self.down_since.entry(osd.id).or_insert(now);
                    if now.saturating_duration_since(since) > t.out_after {
                        d.mark_out.push(osd.id);
                    }
                }
                _ => {
                    self.down_since.remove(&osd.id);
                }
            }
            if !osd.is_up() {
                self.windows.remove(&osd.id);
            }
        }
        self.late
            .sort_by(|a, b| b.silent.cmp(&a.silent).then(a.id.cmp(&b.id)));
        silent.sort();
        let allowed = downs_allowed(up, counted, t.min_up_ratio);
        let refused = silent.split_off(allowed.min(silent.len()));
        d.mark_down = silent.into_iter().map(|(_, id)| id).collect();
        d.down_refused = refused.into_iter().map(|(_, id)| id).collect();
        d.down_refused.sort();
        self.last_seen.retain(|id, _| state.osd(*id).is_some());
        self.windows.retain(|id, _| state.osd(*id).is_some());
        d
    }

    /// Moves every clock forward by `lost`, time during which the monitor could not run (so
    /// could not process heartbeats either): OSDs are not blamed for that silence.
    pub fn forgive(&mut self, lost: Duration, now: Instant) {
        self.started = (self.started + lost).min(now);
        for seen in self.last_seen.values_mut() {
            *seen = (*seen + lost).min(now);
        }
        for last in self.windows.values_mut().filter_map(|w| w.last.as_mut()) {
            *last = (*last + lost).min(now);
        }
        for since in self.down_since.values_mut() {
            *since = (*since + lost).min(now);
        }
    }

    /// Notes that the detector marked `id` down at `now` (for flap detection).
    pub fn marked_down(&mut self, id: OsdId, now: Instant) {
        self.marked_down.entry(id).or_default().push_back(now);
    }

    /// OSDs marked down at least `flap_count` times within `flap_window` before `now`, with
    /// their count.
    pub fn flapping(&mut self, now: Instant, p: &FailurePolicy) -> Vec<(OsdId, usize)> {
        let mut out = Vec::new();
        self.marked_down.retain(|id, times| {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > p.flap_window)
            {
                times.pop_front();
            }
            if times.len() >= p.flap_count {
                out.push((*id, times.len()));
            }
            !times.is_empty()
        });
        out.sort();
        out
    }
}

/// How many of `up` OSDs may go down while at least `ratio` of `counted` stay up.
fn downs_allowed(up: usize, counted: usize, ratio: f64) -> usize {
    if ratio <= 0.0 {
        return up;
    }
    let keep = (ratio * counted as f64).ceil() as usize;
    up.saturating_sub(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::tests::cluster;
    use crate::cluster::{ClusterFlag, command};

    const T: FailurePolicy = FailurePolicy {
        down_after: Duration::from_secs(10),
        out_after: Duration::from_secs(30),
        guards: OutGuards {
            min_in_ratio: 0.75,
            subtree_limit: None,
        },
        flap_count: 3,
        flap_window: Duration::from_secs(60),
        min_up_ratio: 0.3,
    };

    #[test]
    fn silent_osds_go_down_then_out_with_a_grace_after_takeover() {
        let mut s = cluster(3, 3);
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(t0);
        // Grace: nothing is marked down before one interval after the term began.
        assert_eq!(
            fd.check(&s, t0 + Duration::from_secs(9), T),
            Decisions::default()
        );
        fd.heard_from(OsdId(1), t0 + Duration::from_secs(9));
        fd.heard_from(OsdId(2), t0 + Duration::from_secs(9));
        let d = fd.check(&s, t0 + Duration::from_secs(11), T);
        assert_eq!(d.mark_down, vec![OsdId(3)]);
        s.apply(&command::MarkDown { ids: d.mark_down }).unwrap();
        // Down now; the out timer starts when the detector first sees it down.
        let seen_down = t0 + Duration::from_secs(12);
        assert!(fd.check(&s, seen_down, T).mark_out.is_empty());
        assert!(
            fd.check(&s, seen_down + Duration::from_secs(30), T)
                .mark_out
                .is_empty()
        );
        let d = fd.check(&s, seen_down + Duration::from_secs(31), T);
        assert_eq!(d.mark_out, vec![OsdId(3)]);
    }

    #[test]
    fn an_osd_silent_for_three_of_its_intervals_is_late_before_it_is_marked_down() {
        let mut s = cluster(3, 3);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut fd = FailureDetector::new(t0);
        // OSD 1 beats every 500 ms until 4 s, OSD 2 every second until 4 s, OSD 3 only twice
        // (too few intervals).
        for k in 0..=8u64 {
            fd.heard_from(OsdId(1), at(500 * k));
        }
        for k in 0..=4u64 {
            fd.heard_from(OsdId(2), at(1000 * k));
        }
        fd.heard_from(OsdId(3), at(0));
        fd.heard_from(OsdId(3), at(1000));
        // At 5.4 s: OSD 1 silent 1.4 s (< 3 × 500 ms), OSD 2 silent 1.4 s.
        assert!(fd.check(&s, at(5_400), T).mark_down.is_empty());
        assert!(fd.late().is_empty());
        // At 5.6 s OSD 1 is late (1.6 s > 1.5 s); OSD 2 not until 7 s.
        fd.check(&s, at(5_600), T);
        assert_eq!(
            fd.late(),
            [Late {
                id: OsdId(1),
                silent: Duration::from_millis(1_600),
                usual: Duration::from_millis(500),
            }]
        );
        fd.check(&s, at(10_100), T);
        let late: Vec<OsdId> = fd.late().iter().map(|l| l.id).collect();
        assert_eq!(late, [OsdId(1), OsdId(2)], "OSD 3 has too few intervals");
        // A beat ends the warning; past down_after a silent OSD is marked down, not late.
        fd.heard_from(OsdId(2), at(10_100));
        fd.heard_from(OsdId(3), at(10_100));
        let d = fd.check(&s, at(14_100), T);
        assert_eq!(d.mark_down, [OsdId(1)]);
        assert!(fd.late().is_empty(), "{:?}", fd.late());
        s.apply(&command::MarkDown { ids: d.mark_down }).unwrap();
        fd.check(&s, at(14_200), T);
        // A down OSD's window is dropped: its restart's gap is not an interval.
        assert!(!fd.windows.contains_key(&OsdId(1)));
    }

    #[test]
    fn mark_down_stops_at_the_min_up_ratio_longest_silent_first() {
        let s = cluster(10, 10);
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(t0);
        // OSDs 1 and 2 keep beating; 3..=10 fall silent, 10 first, then 9, ... then 3.
        for (i, id) in (3..=10).rev().enumerate() {
            fd.heard_from(OsdId(id), t0 + Duration::from_secs(i as u64));
        }
        for id in 1..=2 {
            fd.heard_from(OsdId(id), t0 + Duration::from_secs(30));
        }
        let d = fd.check(&s, t0 + Duration::from_secs(30), T);
        // 10 OSDs count, 3 must stay up: 7 of the 8 silent go down, the most recently heard
        // (osd.3) is kept up.
        assert_eq!(d.mark_down, (4..=10).rev().map(OsdId).collect::<Vec<_>>());
        assert_eq!(d.down_refused, [OsdId(3)]);
        // Without the guard, all 8.
        let off = FailurePolicy {
            min_up_ratio: 0.0,
            ..T
        };
        let d = fd.check(&s, t0 + Duration::from_secs(30), off);
        assert_eq!(d.mark_down.len(), 8);
        assert!(d.down_refused.is_empty());
    }

    #[test]
    fn the_guard_counts_osds_that_are_in_or_up() {
        let mut s = cluster(10, 10);
        // Four OSDs are long gone (down and out): they do not dilute the ratio.
        s.apply(&command::MarkDown {
            ids: (7..=10).map(OsdId).collect(),
        })
        .unwrap();
        s.apply(&command::MarkOut {
            ids: (7..=10).map(OsdId).collect(),
            guards: OutGuards {
                min_in_ratio: 0.0,
                subtree_limit: None,
            },
        })
        .unwrap();
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(t0);
        fd.heard_from(OsdId(1), t0 + Duration::from_secs(30));
        let d = fd.check(&s, t0 + Duration::from_secs(30), T);
        // 6 count, ceil(1.8) = 2 stay up: osd.1 (beating) and one silent one.
        assert_eq!(d.mark_down.len(), 4);
        assert_eq!(d.down_refused.len(), 1);
        assert_eq!(downs_allowed(0, 0, 0.3), 0);
        assert_eq!(downs_allowed(3, 3, 0.0), 3);
        assert_eq!(
            downs_allowed(1, 1, 0.3),
            0,
            "a lone OSD is never marked down"
        );
    }

    #[test]
    fn a_stall_of_the_monitor_is_not_held_against_the_osds() {
        let s = cluster(3, 3);
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(t0);
        for id in 1..=3 {
            fd.heard_from(OsdId(id), t0);
        }
        // The monitor could not run for 20 s; then the OSDs' queued heartbeats are not yet
        // processed when the check runs.
        let now = t0 + Duration::from_secs(20);
        fd.forgive(Duration::from_secs(19), now);
        assert_eq!(fd.check(&s, now, T), Decisions::default());
        // An OSD that stays silent afterwards still goes down after the interval.
        fd.heard_from(OsdId(1), now + Duration::from_secs(10));
        fd.heard_from(OsdId(2), now + Duration::from_secs(10));
        let d = fd.check(&s, now + Duration::from_secs(10), T);
        assert_eq!(d.mark_down, [OsdId(3)]);
        // Never moved past now.
        fd.forgive(Duration::from_secs(3600), now);
        assert!(fd.last_seen(OsdId(3)) <= now);
    }

    #[test]
    fn repeated_mark_downs_within_the_window_are_flapping() {
        let t0 = Instant::now();
        let mut fd = FailureDetector::new(t0);
        for i in 0..3 {
            fd.marked_down(OsdId(7), t0 + Duration::from_secs(i * 10));
        }
        fd.marked_down(OsdId(8), t0);
        assert_eq!(
            fd.flapping(t0 + Duration::from_secs(30), &T),
            vec![(OsdId(7), 3)]
        );
        // The oldest falls out of the window.
        assert!(fd.flapping(t0 + Duration::from_secs(61), &T).is_empty());
    }

    #[test]
    fn noout_and_nodown_are_honoured_by_the_commands() {
        let mut s = cluster(2, 2);
        s.apply(&command::SetFlag(ClusterFlag::NoDown)).unwrap();
        s.apply(&command::MarkDown {
            ids: vec![OsdId(1)],
        })
        .unwrap();
        assert!(s.osd(OsdId(1)).unwrap().is_up());
        s.apply(&command::UnsetFlag(ClusterFlag::NoDown)).unwrap();
        s.apply(&command::SetFlag(ClusterFlag::NoOut)).unwrap();
        s.apply(&command::MarkDown {
            ids: vec![OsdId(1)],
        })
        .unwrap();
        s.apply(&command::MarkOut {
            ids: vec![OsdId(1)],
            guards: T.guards,
        })
        .unwrap();
        let o = s.osd(OsdId(1)).unwrap();
        assert!(!o.is_up() && o.is_in());
    }
}

//! Failure detection bookkeeping: when each OSD was last heard from and since when it has been
//! down, and the resulting decisions. Heartbeats only touch this in-memory table; only the
//! decisions (mark down, mark out) become commands. Time is passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::osd::Liveness;
use super::osd_ops::OutGuards;
use super::state::ClusterState;
use super::types::OsdId;

/// How the failure detector decides.
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
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            down_after: Duration::from_secs(10),
            out_after: Duration::from_secs(30),
            guards: OutGuards::default(),
            flap_count: 5,
            flap_window: Duration::from_secs(600),
        }
    }
}

/// What the detector decided on one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    pub mark_down: Vec<OsdId>,
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
}

impl FailureDetector {
    /// A detector for a term starting at `now`.
    pub fn new(now: Instant) -> FailureDetector {
        FailureDetector {
            started: now,
            last_seen: HashMap::new(),
            down_since: HashMap::new(),
            marked_down: HashMap::new(),
        }
    }

    /// Records a heartbeat (or a boot) of `id` at `now`.
    pub fn heard_from(&mut self, id: OsdId, now: Instant) {
        self.last_seen.insert(id, now);
        self.down_since.remove(&id);
    }

    /// When `id` was last heard from (the term start if never).
    pub fn last_seen(&self, id: OsdId) -> Instant {
        self.last_seen.get(&id).copied().unwrap_or(self.started)
    }

    /// Up OSDs silent for longer than `down_after` go down; down OSDs that are in and have
    /// been down (as seen by this term) for longer than `out_after` go out.
    pub fn check(&mut self, state: &ClusterState, now: Instant, t: FailurePolicy) -> Decisions {
        let mut d = Decisions::default();
        for osd in state.osds() {
            match osd.liveness {
                Liveness::Up { .. } => {
                    self.down_since.remove(&osd.id);
                    if now.saturating_duration_since(self.last_seen(osd.id)) > t.down_after {
                        d.mark_down.push(osd.id);
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
        }
        self.last_seen.retain(|id, _| state.osd(*id).is_some());
        d
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::state::tests::cluster;
    use crate::cluster::{ClusterFlag, Command};

    const T: FailurePolicy = FailurePolicy {
        down_after: Duration::from_secs(10),
        out_after: Duration::from_secs(30),
        guards: OutGuards {
            min_in_ratio: 0.75,
            subtree_limit: None,
        },
        flap_count: 3,
        flap_window: Duration::from_secs(60),
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
        s.apply(&Command::MarkDown { ids: d.mark_down }).unwrap();
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
        s.apply(&Command::SetFlag(ClusterFlag::NoDown)).unwrap();
        s.apply(&Command::MarkDown {
            ids: vec![OsdId(1)],
        })
        .unwrap();
        assert!(s.osd(OsdId(1)).unwrap().is_up());
        s.apply(&Command::UnsetFlag(ClusterFlag::NoDown)).unwrap();
        s.apply(&Command::SetFlag(ClusterFlag::NoOut)).unwrap();
        s.apply(&Command::MarkDown {
            ids: vec![OsdId(1)],
        })
        .unwrap();
        s.apply(&Command::MarkOut {
            ids: vec![OsdId(1)],
            guards: T.guards,
        })
        .unwrap();
        let o = s.osd(OsdId(1)).unwrap();
        assert!(!o.is_up() && o.is_in());
    }
}

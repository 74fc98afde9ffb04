//! The seeded fault schedule: which fault comes next, aimed at the leader or at a standby, and
//! how long it lasts. The same seed gives the same sequence of steps (who leads at each step,
//! and so which monitor a role names, depends on the run).

use std::time::Duration;

/// A small deterministic generator (splitmix64): the schedule and the workload draw from it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration in [min, max].
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.below(span + 1))
    }
}

/// Which monitor a fault aims at, resolved when it is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    /// One of the standbys (`pick` chooses which).
    Standby {
        pick: u64,
    },
}

/// One fault and how long it lasts.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// kill -9 of a monitor (its member dies with it); with `host_down` its address stops
    /// answering too, as when the whole host crashes. A killed leader stays down until a new
    /// leader acknowledged a write, then `down_for` more; a standby `down_for`.
    KillMonitor {
        target: Target,
        host_down: bool,
        down_for: Duration,
    },
    /// kill -9 of a monitor's etcd member; the monitor restarts it.
    KillEtcd { target: Target },
    /// SIGSTOP, then SIGCONT after `stopped_for` (shorter or longer than the lease TTL).
    Pause {
        target: Target,
        stopped_for: Duration,
    },
    /// The monitor and its member cut off from the other two for `cut_for`.
    Partition { target: Target, cut_for: Duration },
    /// A fake OSD falls silent for `silent_for` (longer than `osd_down_after`), then restarts.
    CrashOsd { pick: u64, silent_for: Duration },
}

/// Timings the schedule scales its durations by.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub lease_ttl: Duration,
    pub osd_down_after: Duration,
}

/// The fault sequence of a run: first one of each kind in a seeded order (so even the short
/// run injects every kind, and crashes the leader's process and the leader's host), then random faults for as long as the
/// run lasts.
pub struct Schedule {
    rng: Rng,
    deck: Vec<Step>,
    t: Timings,
}

const SECOND: Duration = Duration::from_secs(1);

impl Schedule {
    /// The schedule of `seed`, with durations scaled by `t`.
    pub fn new(seed: u64, t: Timings) -> Schedule {
        let mut rng = Rng::new(seed);
        let targets = [target(&mut rng), target(&mut rng), target(&mut rng)];
        let mut deck = vec![
            kill_monitor(&mut rng, Target::Leader, false),
            kill_monitor(&mut rng, Target::Leader, true),
            Step::KillEtcd { target: targets[0] },
            pause(&mut rng, t, targets[1]),
            partition(&mut rng, t, targets[2]),
            crash_osd(&mut rng, t),
        ];
        // Fisher–Yates.
        for i in (1..deck.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            deck.swap(i, j);
        }
        Schedule { rng, deck, t }
    }

    /// The next step and the quiet time after it; once the deck is played, random steps while
    /// `more` is true.
    pub fn next(&mut self, more: bool) -> Option<(Step, Duration)> {
        let step = match self.deck.pop() {
            Some(s) => s,
            None if more => {
                let rng = &mut self.rng;
                let t = self.t;
                match rng.below(100) {
                    0..30 => {
                        let target = target(rng);
                        let host_down = rng.percent(50);
                        kill_monitor(rng, target, host_down)
                    }
                    30..45 => Step::KillEtcd {
                        target: target(rng),
                    },
                    45..65 => {
                        let target = target(rng);
                        pause(rng, t, target)
                    }
                    65..90 => {
                        let target = target(rng);
                        partition(rng, t, target)
                    }
                    _ => crash_osd(rng, t),
                }
            }
            None => return None,
        };
        let quiet = self.rng.between(SECOND / 2, 2 * SECOND);
        Some((step, quiet))
    }
}

fn target(rng: &mut Rng) -> Target {
    if rng.percent(50) {
        Target::Leader
    } else {
        Target::Standby {
            pick: rng.next_u64(),
        }
    }
}

fn kill_monitor(rng: &mut Rng, target: Target, host_down: bool) -> Step {
    Step::KillMonitor {
        target,
        host_down,
        down_for: rng.between(SECOND / 2, 3 * SECOND),
    }
}

fn pause(rng: &mut Rng, t: Timings, target: Target) -> Step {
    Step::Pause {
        target,
        stopped_for: rng.between(SECOND, 2 * t.lease_ttl + SECOND),
    }
}

fn partition(rng: &mut Rng, t: Timings, target: Target) -> Step {
    Step::Partition {
        target,
        cut_for: rng.between(t.lease_ttl + SECOND, 3 * t.lease_ttl),
    }
}

fn crash_osd(rng: &mut Rng, t: Timings) -> Step {
    Step::CrashOsd {
        pick: rng.next_u64(),
        silent_for: rng.between(t.osd_down_after + SECOND, t.osd_down_after + 4 * SECOND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timings = Timings {
        lease_ttl: Duration::from_secs(3),
        osd_down_after: Duration::from_secs(4),
    };

    fn steps(seed: u64, n: usize) -> Vec<(Step, Duration)> {
        let mut s = Schedule::new(seed, T);
        (0..n).map_while(|_| s.next(true)).collect()
    }

    #[test]
    fn a_seed_replays_the_same_schedule() {
        assert_eq!(steps(42, 30), steps(42, 30));
        assert_ne!(steps(42, 30), steps(43, 30));
    }

    #[test]
    fn the_short_run_injects_every_kind_and_kills_the_leader() {
        for seed in 0..50 {
            let mut s = Schedule::new(seed, T);
            let deck: Vec<Step> = std::iter::from_fn(|| s.next(false))
                .map(|(step, _)| step)
                .collect();
            assert_eq!(deck.len(), 6);
            for host in [false, true] {
                assert!(deck.iter().any(|s| matches!(
                    s,
                    Step::KillMonitor {
                        target: Target::Leader,
                        host_down,
                        ..
                    } if *host_down == host
                )));
            }
            assert!(deck.iter().any(|s| matches!(s, Step::KillEtcd { .. })));
            assert!(deck.iter().any(|s| matches!(s, Step::Pause { .. })));
            assert!(deck.iter().any(|s| matches!(s, Step::Partition { .. })));
            assert!(deck.iter().any(|s| matches!(s, Step::CrashOsd { .. })));
            assert!(s.next(false).is_none(), "the short run ends after the deck");
        }
    }

    #[test]
    fn durations_stay_in_their_bounds() {
        for (step, quiet) in steps(7, 500) {
            assert!(quiet >= SECOND / 2 && quiet <= 2 * SECOND);
            match step {
                Step::Partition { cut_for, .. } => {
                    assert!(cut_for > T.lease_ttl && cut_for <= 3 * T.lease_ttl)
                }
                Step::CrashOsd { silent_for, .. } => assert!(silent_for > T.osd_down_after),
                Step::Pause { stopped_for, .. } => {
                    assert!(stopped_for >= SECOND && stopped_for <= 2 * T.lease_ttl + SECOND)
                }
                Step::KillMonitor { down_for, .. } => assert!(down_for <= 3 * SECOND),
                Step::KillEtcd { .. } => {}
            }
        }
    }
}

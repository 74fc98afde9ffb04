//! Fault injection for tests: named points in the code that can be told to pause or panic.
//!
//! Enabled only through the environment, e.g.
//! `FASTBLOCK_FAILPOINTS="commit.before_txn=sleep(4000);failure_check.check=panic(1)"`
//! (several entries are separated by `;`). Actions: `sleep(MS)` pauses for MS milliseconds at
//! every hit; `panic` panics at every hit and `panic(N)` at the first N hits only (later hits
//! pass); `on` turns on a switch read with [`on`] (benchmarks' baselines). Unset, every point
//! is a no-op. See docs/testing.md for the list of points.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable that configures failpoints.
pub const ENV: &str = "FASTBLOCK_FAILPOINTS";

/// Paused after the local lease-deadline check and before the commit transaction is sent.
pub const COMMIT_BEFORE_TXN: &str = "commit.before_txn";

/// Hit at the start of every failure check (a term task).
pub const FAILURE_CHECK: &str = "failure_check.check";

/// A switch (`events.off=on`): the commit writer writes no events, so a benchmark can measure
/// a baseline without the event log in the same run. Never for a real cluster.
pub const EVENTS_OFF: &str = "events.off";

/// What a configured failpoint does when hit.
#[derive(Debug)]
enum Action {
    Sleep(Duration),
    /// A switch, read with [`on`].
    On,
    /// Panics while `left` is above zero (`u64::MAX`: always).
    Panic {
        left: AtomicU64,
    },
}

fn table() -> &'static HashMap<String, Action> {
    static TABLE: OnceLock<HashMap<String, Action>> = OnceLock::new();
    TABLE.get_or_init(|| parse(&std::env::var(ENV).unwrap_or_default()))
}

fn parse_action(action: &str) -> Option<Action> {
    if action == "on" {
        return Some(Action::On);
    }
    if action == "panic" {
        return Some(Action::Panic {
            left: AtomicU64::new(u64::MAX),
        });
    }
    if let Some(n) = action.strip_prefix("panic(") {
        let n = n.strip_suffix(')')?.parse().ok()?;
        return Some(Action::Panic {
            left: AtomicU64::new(n),
        });
    }
    let ms = action.strip_prefix("sleep(")?.strip_suffix(')')?;
    Some(Action::Sleep(Duration::from_millis(ms.parse().ok()?)))
}

fn parse(spec: &str) -> HashMap<String, Action> {
    let mut out = HashMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(name, action)| {
            Some((name.trim().to_string(), parse_action(action.trim())?))
        });
        match parsed {
            Some((name, action)) => {
                out.insert(name, action);
            }
            None => eprintln!(
                "{ENV}: ignoring malformed entry '{entry}' (want name=sleep(ms), name=panic, name=panic(n) or name=on)"
            ),
        }
    }
    out
}

/// Whether a hit of a `Panic` action panics, counting the hit.
fn panics(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
        0 => None,
        u64::MAX => Some(u64::MAX),
        n => Some(n - 1),
    })
    .is_ok()
}

/// Whether the switch `name` is configured `on`.
pub fn on(name: &str) -> bool {
    matches!(table().get(name), Some(Action::On))
}

/// Runs the failpoint `name` if it is configured: pauses, or panics.
pub async fn hit(name: &str) {
    match table().get(name) {
        None | Some(Action::On) => {}
        Some(Action::Sleep(d)) => {
            tracing::warn!(
                failpoint = name,
                pause_ms = d.as_millis() as u64,
                "failpoint hit"
            );
            tokio::time::sleep(*d).await;
        }
        Some(Action::Panic { left }) if panics(left) => {
            tracing::warn!(failpoint = name, "failpoint hit: panicking");
            panic!("failpoint {name}");
        }
        Some(Action::Panic { .. }) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_bad_ones() {
        let t =
            parse("a=sleep(5); b=sleep(x) ;c=panic;d=sleep(10);e=panic(2);f=panic(x);g=boom;h=on");
        assert_eq!(t.len(), 5);
        assert!(matches!(t["h"], Action::On));
        assert!(matches!(t["a"], Action::Sleep(d) if d == Duration::from_millis(5)));
        assert!(matches!(t["d"], Action::Sleep(d) if d == Duration::from_millis(10)));
        assert!(
            matches!(&t["c"], Action::Panic { left } if left.load(Ordering::SeqCst) == u64::MAX)
        );
        assert!(matches!(&t["e"], Action::Panic { left } if left.load(Ordering::SeqCst) == 2));
    }

    #[test]
    fn a_counted_panic_stops_after_its_count() {
        let left = AtomicU64::new(2);
        assert!(panics(&left));
        assert!(panics(&left));
        assert!(!panics(&left));
        assert!(!panics(&left));
        let always = AtomicU64::new(u64::MAX);
        assert!((0..5).all(|_| panics(&always)));
    }

    #[tokio::test]
    async fn unconfigured_points_do_nothing() {
        hit("no.such.point").await;
    }
}

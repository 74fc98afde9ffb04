//! Fault injection for tests: named points in the code that can be told to pause.
//!
//! Enabled only through the environment, e.g.
//! `FASTBLOCK_FAILPOINTS="commit.before_txn=sleep(4000)"` (milliseconds; several entries are
//! separated by `;`). Unset, every point is a no-op. See docs/testing.md for the list of points.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that configures failpoints.
pub const ENV: &str = "FASTBLOCK_FAILPOINTS";

/// Paused after the local lease-deadline check and before the commit transaction is sent.
pub const COMMIT_BEFORE_TXN: &str = "commit.before_txn";

fn table() -> &'static HashMap<String, Duration> {
    static TABLE: OnceLock<HashMap<String, Duration>> = OnceLock::new();
    TABLE.get_or_init(|| parse(&std::env::var(ENV).unwrap_or_default()))
}

fn parse(spec: &str) -> HashMap<String, Duration> {
    let mut out = HashMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(name, action)| {
            let ms = action.strip_prefix("sleep(")?.strip_suffix(')')?;
            Some((
                name.trim().to_string(),
                Duration::from_millis(ms.parse().ok()?),
            ))
        });
        match parsed {
            Some((name, d)) => {
                out.insert(name, d);
            }
            None => eprintln!("{ENV}: ignoring malformed entry '{entry}' (want name=sleep(ms))"),
        }
    }
    out
}

/// Pauses here if the failpoint `name` is configured.
pub async fn pause(name: &str) {
    if let Some(d) = table().get(name) {
        tracing::warn!(
            failpoint = name,
            pause_ms = d.as_millis() as u64,
            "failpoint hit"
        );
        tokio::time::sleep(*d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_skips_bad_ones() {
        let t = parse("a=sleep(5); b=sleep(x) ;c=panic;d=sleep(10)");
        assert_eq!(t.len(), 2);
        assert_eq!(t["a"], Duration::from_millis(5));
        assert_eq!(t["d"], Duration::from_millis(10));
    }
}

//! Multi-record changes that term tasks propose (mark-down of a failed host, PG refreshes after
//! an out, rebalance moves, flag replays), cut into commands that each fit one etcd transaction.
//!
//! A task proposes its items in parts of a bounded size; a part the pipeline finds too large
//! for one transaction is halved and both halves are proposed again, down to single items. A
//! single item that still does not fit cannot be committed under the configured limits: it is
//! reported back (and, by the caller, as the `TXN_TOO_LARGE` health check) instead of being
//! retried in a loop that never succeeds.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::cluster::Command;
use crate::commit::ProposeError;

/// The result of proposing one part: its items and what the pipeline answered.
pub type PartResult<T, R> = (Vec<T>, Result<R, ProposeError>);

/// Proposes `make(part)` for `items`, in order, in parts of at most `max_part` items, halving
/// every part the pipeline refuses as too large. Returns each proposed part with its result;
/// a part of one item refused as too large is returned with that error. Stops after the first
/// `NotLeader` (the term ended: nothing more can be committed).
pub async fn propose_in_parts<T, C, P, F>(
    propose: P,
    items: Vec<T>,
    max_part: usize,
    make: impl Fn(Vec<T>) -> C,
) -> Vec<PartResult<T, C::Reply>>
where
    T: Clone,
    C: Command,
    P: Fn(C) -> F,
    F: Future<Output = Result<C::Reply, ProposeError>>,
{
    let mut todo: Vec<Vec<T>> = items.chunks(max_part.max(1)).map(<[T]>::to_vec).collect();
    todo.reverse();
    let mut out = Vec::new();
    while let Some(part) = todo.pop() {
        match propose(make(part.clone())).await {
            Err(ProposeError::TooLarge { .. }) if part.len() > 1 => {
                let (a, b) = part.split_at(part.len() / 2);
                todo.push(b.to_vec());
                todo.push(a.to_vec());
            }
            Err(ProposeError::NotLeader) => {
                out.push((part, Err(ProposeError::NotLeader)));
                break;
            }
            result => out.push((part, result)),
        }
    }
    out
}

/// Changes that cannot be committed because even one item exceeds a transaction, by the task
/// that found them. Each task replaces its own list on every pass, so a change that fits again
/// (or is no longer needed) disappears from the report by itself.
#[derive(Default)]
pub struct TooLarge {
    by_task: ArcSwap<BTreeMap<&'static str, Arc<Vec<String>>>>,
}

impl TooLarge {
    /// Replaces what `task` reported (an empty list clears it).
    pub fn report(&self, task: &'static str, changes: Vec<String>) {
        let changes = Arc::new(changes);
        self.by_task.rcu(|old| {
            let mut map = (**old).clone();
            if changes.is_empty() {
                map.remove(task);
            } else {
                map.insert(task, changes.clone());
            }
            map
        });
    }

    /// Every change that does not fit, described in one line each.
    pub fn all(&self) -> Vec<String> {
        self.by_task
            .load()
            .values()
            .flat_map(|v| v.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::command::MarkDown;
    use crate::cluster::{Epoch, OsdId, reply};
    use std::cell::RefCell;

    fn ok() -> Result<reply::OsdMap, ProposeError> {
        Ok(reply::OsdMap {
            osdmap_epoch: Epoch(1),
        })
    }

    fn too_large() -> Result<reply::OsdMap, ProposeError> {
        Err(ProposeError::TooLarge {
            ops: 1000,
            bytes: 1 << 21,
        })
    }

    fn ids(cmd: &MarkDown) -> Vec<OsdId> {
        cmd.ids.clone()
    }

    fn items(n: u32) -> Vec<OsdId> {
        (1..=n).map(OsdId).collect()
    }

    #[tokio::test]
    async fn parts_that_fit_are_proposed_once_in_order() {
        let seen = RefCell::new(Vec::new());
        let out = propose_in_parts(
            |c| {
                seen.borrow_mut().push(ids(&c));
                async { ok() }
            },
            items(10),
            4,
            |ids| MarkDown { ids },
        )
        .await;
        let sizes: Vec<usize> = seen.borrow().iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(_, r)| r.is_ok()));
        let flat: Vec<OsdId> = out.into_iter().flat_map(|(p, _)| p).collect();
        assert_eq!(flat, items(10), "every item once, in order");
    }

    #[tokio::test]
    async fn a_part_too_large_is_halved_until_it_fits() {
        // At most 3 items fit one transaction: parts of 8 become 4 + 4, then 2 + 2 + 2 + 2.
        let proposed = RefCell::new(0);
        let out = propose_in_parts(
            |c| {
                *proposed.borrow_mut() += 1;
                let n = ids(&c).len();
                async move { if n > 3 { too_large() } else { ok() } }
            },
            items(16),
            8,
            |ids| MarkDown { ids },
        )
        .await;
        assert!(out.iter().all(|(p, r)| r.is_ok() && p.len() == 2));
        let flat: Vec<OsdId> = out.into_iter().flat_map(|(p, _)| p).collect();
        assert_eq!(flat, items(16));
        // 2 parts of 8, 4 of 4 refused; 8 of 2 committed.
        assert_eq!(*proposed.borrow(), 2 + 4 + 8);
    }

    #[tokio::test]
    async fn a_single_item_that_never_fits_is_reported_and_the_rest_goes_through() {
        let out = propose_in_parts(
            |c| {
                let has_bad = ids(&c).contains(&OsdId(5));
                async move { if has_bad { too_large() } else { ok() } }
            },
            items(8),
            8,
            |ids| MarkDown { ids },
        )
        .await;
        let stuck: Vec<&Vec<OsdId>> = out
            .iter()
            .filter(|(_, r)| matches!(r, Err(ProposeError::TooLarge { .. })))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(stuck, [&vec![OsdId(5)]]);
        let done: usize = out
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(p, _)| p.len())
            .sum();
        assert_eq!(done, 7, "every other item committed");
    }

    #[tokio::test]
    async fn not_leader_stops_at_once() {
        let proposed = RefCell::new(0);
        let out = propose_in_parts(
            |_| {
                *proposed.borrow_mut() += 1;
                async { Err(ProposeError::NotLeader) }
            },
            items(10),
            2,
            |ids| MarkDown { ids },
        )
        .await;
        assert_eq!(*proposed.borrow(), 1);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn too_large_reports_replace_per_task() {
        let t = TooLarge::default();
        assert!(t.all().is_empty());
        t.report("reconcile", vec!["a".into(), "b".into()]);
        t.report("failure_check", vec!["c".into()]);
        assert_eq!(t.all().len(), 3);
        t.report("reconcile", Vec::new());
        assert_eq!(t.all(), ["c"]);
    }
}

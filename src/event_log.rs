//! The event log as one monitor sees it: every monitor, leader or standby, follows
//! `<prefix>/events/` with one etcd watch and keeps the most recent events in memory, so that
//! thousands of WatchEvents streams share one watch and read by id without touching etcd.
//! Older events are read from etcd. The log is written only by the leader's commit pipeline
//! (in the transactions of the changes the events describe) and trimmed only by its retention
//! task ([`compact`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::EventType as WatchEventType;
use parking_lot::RwLock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Event, decode_event_batch};
use crate::etcd::{EtcdFailure, EventReadError, EventStore, Fence, Store, StoreError};
use crate::metrics::Metrics;
use crate::timing;

/// Events held in memory (the newest).
const RECENT_EVENTS: usize = 16_384;
/// Transactions' worth of events read per etcd request.
const READ_BATCHES: i64 = 128;

/// How long and how many events the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many events (whole transactions are deleted, so a little fewer).
    pub max_count: u64,
    /// Events older than this are deleted.
    pub max_age: Duration,
}

/// One monitor's view of the event log.
pub struct EventLog {
    store: EventStore,
    /// The newest events, ids contiguous.
    recent: RwLock<VecDeque<Arc<Event>>>,
    /// The newest id this monitor has seen (0: none yet).
    latest: watch::Sender<u64>,
    /// The oldest id kept in etcd as last read (0: the log is empty).
    oldest: AtomicU64,
    /// Whether the log was read once (until then `latest` means nothing).
    synced: AtomicBool,
}

impl EventLog {
    pub fn new(store: EventStore) -> Arc<EventLog> {
        Arc::new(EventLog {
            store,
            recent: RwLock::new(VecDeque::new()),
            latest: watch::channel(0).0,
            oldest: AtomicU64::new(0),
            synced: AtomicBool::new(false),
        })
    }

    /// The etcd reads behind it.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The newest id seen by this monitor (0: none).
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Changes whenever newer events arrive.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Whether this monitor has read the log once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The oldest id kept, as last read (0: the log is empty).
    pub fn oldest(&self) -> u64 {
        self.oldest.load(Ordering::Relaxed)
    }

    /// Up to `limit` events after id `after`, in id order: from memory when it holds them,
    /// otherwise from etcd. The first may be later than `after + 1` when the events in between
    /// were deleted by the retention (the caller checks).
    pub async fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Event>>, EventReadError> {
        {
            let recent = self.recent.read();
            if let Some(front) = recent.front()
                && front.id <= after.saturating_add(1)
            {
                let skip = (after + 1 - front.id) as usize;
                return Ok(recent.iter().skip(skip).take(limit).cloned().collect());
            }
        }
        let page = self.store.read_after(after, READ_BATCHES).await?;
        Ok(page.events.into_iter().take(limit).map(Arc::new).collect())
    }

    /// How many events of type `kind` the newest events in memory hold from `since_ms` (Unix
    /// ms) on. Only what memory holds is counted (the newest 16,384 events).
    pub fn count_recent(&self, kind: &str, since_ms: u64) -> usize {
        self.recent
            .read()
            .iter()
            .rev()
            .take_while(|e| e.time_ms >= since_ms)
            .filter(|e| e.kind == kind)
            .count()
    }

    /// Follows the log until `stop`: reads the newest events, then watches for more; starts
    /// again on any failure.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut backoff = timing::ETCD_RETRY_MIN;
            while !stop.is_cancelled() {
                match log.follow(&stop).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "event log follower failed; reading it again");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
                    }
                }
            }
        });
    }

    async fn follow(&self, stop: &CancellationToken) -> Result<(), FollowError> {
        let (oldest, _) = self.store.oldest().await?;
        let page = self.store.read_before(u64::MAX, READ_BATCHES).await?;
        let newest = match page.events.last() {
            Some(e) => e.id,
            None => self.store.next_id().await?.saturating_sub(1),
        };
        self.oldest.store(oldest.unwrap_or(0), Ordering::Relaxed);
        self.replace(page.events, newest);
        let (endpoint, mut stream) = self.store.watch(page.revision + 1).await?;
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                m = stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return Err(FollowError::Closed),
                Err(e) => {
                    let failure = EtcdFailure::from_client(&e);
                    self.store.failed(endpoint, &failure);
                    return Err(failure.into());
                }
            };
            if resp.canceled() {
                return Err(FollowError::Cancelled(resp.cancel_reason().to_string()));
            }
            let mut deleted = false;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let Some(first) = self.store.keys().parse_event_batch(&key) else {
                    continue;
                };
                match event.event_type() {
                    WatchEventType::Delete => deleted = true,
                    WatchEventType::Put => match decode_event_batch(first, kv.value()) {
                        Ok(batch) => self.append(batch),
                        Err(reason) => {
                            tracing::warn!(key = %crate::text::shown(&key), %reason, "skipping an event batch that does not decode");
                        }
                    },
                }
            }
            if deleted {
                let (oldest, _) = self.store.oldest().await?;
                self.oldest.store(oldest.unwrap_or(0), Ordering::Relaxed);
            }
        }
    }

    /// Replaces what is held by `events` (the newest), `newest` being the newest id.
    fn replace(&self, events: Vec<Event>, newest: u64) {
        let mut recent = self.recent.write();
        recent.clear();
        // Only a contiguous tail is kept.
        let mut tail: Vec<Arc<Event>> = Vec::new();
        for e in events.into_iter().rev() {
            if tail.last().is_some_and(|l: &Arc<Event>| l.id != e.id + 1) {
                break;
            }
            tail.push(Arc::new(e));
        }
        recent.extend(tail.into_iter().rev());
        while recent.len() > RECENT_EVENTS {
            recent.pop_front();
        }
        drop(recent);
        self.synced.store(true, Ordering::Release);
        self.latest.send_replace(newest);
    }

    /// Adds one transaction's events as they are committed.
    fn append(&self, batch: Vec<Event>) {
        let (Some(first), Some(last)) = (batch.first().map(|e| e.id), batch.last().map(|e| e.id))
        else {
            return;
        };
        let latest = self.latest();
        if first != latest + 1 {
            // Ids went back (the log was restored) or some were missed: start afresh from
            // this batch; reads of older ids go to etcd.
            tracing::warn!(
                held = latest,
                first,
                "event ids do not follow the ones held; holding only the new ones"
            );
            self.replace(batch, last);
            return;
        }
        let mut recent = self.recent.write();
        if recent.is_empty() && self.oldest() == 0 {
            self.oldest.store(first, Ordering::Relaxed);
        }
        recent.extend(batch.into_iter().map(Arc::new));
        while recent.len() > RECENT_EVENTS {
            recent.pop_front();
        }
        drop(recent);
        self.latest.send_replace(last);
    }
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Read(#[from] EventReadError),
    #[error(transparent)]
    Etcd(#[from] EtcdFailure),
    #[error("watch cancelled: {0}")]
    Cancelled(String),
    #[error("watch stream closed")]
    Closed,
}

/// What one retention pass deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub events: u64,
    /// The oldest id kept after the pass (0: the log is empty).
    pub oldest: u64,
}

/// One retention pass by the leader: deletes the oldest transactions' events while the log
/// holds more than `max_count` events or its oldest is older than `max_age`. Deletes are
/// fenced: a deposed leader deletes nothing.
pub async fn compact(
    store: &Store,
    fence: &Fence,
    retention: Retention,
    latest: u64,
    metrics: &Metrics,
) -> Result<Compacted, CompactError> {
    let events = store.events();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let too_old = now_ms.saturating_sub(retention.max_age.as_millis() as u64);
    let mut done = Compacted::default();
    let keys = events.keys();
    loop {
        let page = events.read_after(0, READ_BATCHES).await?;
        let Some(&first) = page.batch_starts.first() else {
            return Ok(done);
        };
        done.oldest = first;
        // Keep the newest `max_count` events and none older than `max_age`; a transaction's
        // events go together, so the cut is at the first batch holding an event to keep.
        let keep_from = latest.saturating_add(1).saturating_sub(retention.max_count);
        let cut = page
            .events
            .iter()
            .find(|e| e.id >= keep_from && e.time_ms >= too_old)
            .map(|keep| {
                page.batch_starts
                    .iter()
                    .rev()
                    .find(|s| **s <= keep.id)
                    .copied()
                    .unwrap_or(first)
            });
        let cut = match cut {
            Some(c) if c <= first => return Ok(done),
            Some(c) => c,
            None => match page.events.last() {
                // Every event read goes; more may follow.
                Some(last) => last.id + 1,
                None => return Ok(done),
            },
        };
        let deleted = store
            .delete_range(fence, &keys.event_batch(0), &keys.event_batch(cut))
            .await?;
        if deleted == 0 {
            return Ok(done);
        }
        done.events += cut - first;
        done.oldest = cut;
        metrics.events_compacted.inc_by(cut - first);
    }
}

/// Why a retention pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Read(#[from] EventReadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

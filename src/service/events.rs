//! WatchEvents and ListEvents: every monitor serves the event log, standbys included
//! (`crate::event_log`). A stream reads by id, so a slow reader is never handed a gap: it
//! falls behind and catches up from memory or etcd, and only when the events it needs were
//! deleted by the retention does its stream end with EVENTS_COMPACTED.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::{MonitorService, convert, requests, status};
use crate::cluster::Event;
use crate::etcd::EventReadError;
use crate::event_log::EventLog;
use crate::proto::monitor as api;
use crate::service::reasons;

/// Events per stream message.
const EVENTS_PER_MESSAGE: usize = 256;
/// Messages a stream buffers before it waits for its reader.
const BUFFER: usize = 8;
/// Events ListEvents returns at most, and returns when `last` is 0.
pub const MAX_LIST: u32 = 10_000;
const DEFAULT_LIST: u32 = 20;
/// Events ListEvents examines at most looking for the asked types.
const MAX_SCAN: usize = 1_000_000;
/// How long a call waits for this monitor's first read of the log.
const SYNC_WAIT: Duration = Duration::from_secs(10);

fn read_error(e: &EventReadError) -> Status {
    status::error(
        Code::Unavailable,
        reasons::ETCD_UNAVAILABLE,
        format!("the event log cannot be read: {e}"),
    )
}

fn compacted(after: u64, oldest: u64) -> Status {
    status::error_with_metadata(
        Code::OutOfRange,
        reasons::EVENTS_COMPACTED,
        format!(
            "events after {after} are no longer kept; the oldest kept is {oldest}: list or watch from there (start OLDEST)"
        ),
        [("oldest_id".to_string(), oldest.to_string())].into(),
    )
}

fn ahead(after: u64, latest: u64) -> Status {
    status::error_with_metadata(
        Code::OutOfRange,
        reasons::EVENTS_AHEAD,
        format!(
            "event {after} was never written; the newest is {latest} (the log was restored from a backup?): watch from now"
        ),
        [("latest_id".to_string(), latest.to_string())].into(),
    )
}

impl MonitorService {
    /// Checks a resume point against the log: older than what is kept, or never written.
    async fn check_after(&self, log: &EventLog, after: u64) -> Result<(), Status> {
        let store = log.store();
        let (oldest, _) = store.oldest().await.map_err(|e| read_error(&e))?;
        let next = store.next_id().await.map_err(|e| read_error(&e))?;
        if after >= next {
            return Err(ahead(after, next - 1));
        }
        match oldest {
            Some(oldest) if after + 1 < oldest => Err(compacted(after, oldest)),
            // Nothing kept although events were written: all were deleted.
            None if after + 1 < next => Err(compacted(after, next)),
            _ => Ok(()),
        }
    }

    pub(super) async fn list_events(
        &self,
        r: api::ListEventsRequest,
    ) -> Result<api::ListEventsResponse, Status> {
        let types = requests::event_types(&r.types)?;
        let want = if r.last == 0 {
            DEFAULT_LIST
        } else {
            r.last.min(MAX_LIST)
        } as usize;
        let log = &self.node.events;
        let store = log.store();
        let mut found: Vec<Event> = Vec::new();
        let mut scanned = 0;
        if r.after_id > 0 {
            self.check_after(log, r.after_id).await?;
            let mut after = r.after_id;
            while found.len() < want && scanned < MAX_SCAN {
                let page = store
                    .read_after(after, 64)
                    .await
                    .map_err(|e| read_error(&e))?;
                let Some(last) = page.events.last().map(|e| e.id) else {
                    break;
                };
                scanned += page.events.len();
                found.extend(page.events.into_iter().filter(|e| e.matches(&types)));
                after = last;
            }
            found.truncate(want);
        } else {
            let mut before = u64::MAX;
            while found.len() < want && scanned < MAX_SCAN {
                let page = store
                    .read_before(before, 64)
                    .await
                    .map_err(|e| read_error(&e))?;
                let Some(first) = page.events.first().map(|e| e.id) else {
                    break;
                };
                scanned += page.events.len();
                let mut matching: Vec<Event> = page
                    .events
                    .into_iter()
                    .filter(|e| e.matches(&types))
                    .collect();
                matching.append(&mut found);
                found = matching;
                before = first;
                if !page.more {
                    break;
                }
            }
            let extra = found.len().saturating_sub(want);
            found.drain(..extra);
        }
        let (oldest, _) = store.oldest().await.map_err(|e| read_error(&e))?;
        let next = store.next_id().await.map_err(|e| read_error(&e))?;
        Ok(api::ListEventsResponse {
            events: found.iter().map(convert::event).collect(),
            oldest_id: oldest.unwrap_or(0),
            latest_id: next - 1,
        })
    }

    pub(super) async fn watch_events(
        &self,
        r: api::WatchEventsRequest,
    ) -> Result<ReceiverStream<Result<api::WatchEventsResponse, Status>>, Status> {
        let types = requests::event_types(&r.types)?;
        let log = self.node.events.clone();
        wait_synced(&log).await?;
        let cursor = match api::EventStart::try_from(r.start).unwrap_or_default() {
            api::EventStart::Now => log.latest(),
            api::EventStart::Oldest => {
                let (oldest, _) = log.store().oldest().await.map_err(|e| read_error(&e))?;
                match oldest {
                    Some(o) => o - 1,
                    None => log.store().next_id().await.map_err(|e| read_error(&e))? - 1,
                }
            }
            api::EventStart::After => {
                self.check_after(&log, r.after_id).await?;
                r.after_id
            }
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let metrics = self.node.metrics.clone();
        let progress_every = self.node.watch.progress_every;
        tokio::spawn(async move {
            metrics.event_watch_streams.inc();
            if let Err(status) = stream(&log, cursor, &types, progress_every, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
            metrics.event_watch_streams.dec();
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// Waits until this monitor has read the log once (a monitor just started).
async fn wait_synced(log: &EventLog) -> Result<(), Status> {
    let mut latest = log.subscribe();
    let synced = tokio::time::timeout(SYNC_WAIT, async {
        while !log.synced() {
            if latest.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    if synced.is_err() || !log.synced() {
        return Err(status::error(
            Code::Unavailable,
            reasons::ETCD_UNAVAILABLE,
            "this monitor has not read the event log yet (etcd unreachable?); retry",
        ));
    }
    Ok(())
}

type Sender = mpsc::Sender<Result<api::WatchEventsResponse, Status>>;

/// Feeds one stream from the event after `cursor` on, until its reader goes away (Ok) or it
/// must end with a status.
async fn stream(
    log: &Arc<EventLog>,
    mut cursor: u64,
    types: &[String],
    progress_every: Duration,
    tx: &Sender,
) -> Result<(), Status> {
    let progress = |last_id| {
        Ok(api::WatchEventsResponse {
            events: Vec::new(),
            last_id,
        })
    };
    // Where the stream starts: the caller learns its position at once.
    if tx.send(progress(cursor)).await.is_err() {
        return Ok(());
    }
    let mut latest = log.subscribe();
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let events = log
            .after(cursor, EVENTS_PER_MESSAGE)
            .await
            .map_err(|e| read_error(&e))?;
        if let Some(first) = events.first() {
            if first.id != cursor + 1 {
                // The events in between were deleted while this stream lagged behind.
                return Err(compacted(cursor, first.id));
            }
            cursor = events.last().map_or(cursor, |e| e.id);
            let matching: Vec<api::Event> = events
                .iter()
                .filter(|e| e.matches(types))
                .map(|e| convert::event(e))
                .collect();
            // Events filtered out still move the stream on: a progress mark now and then
            // lets the reader resume past them.
            if !matching.is_empty() || last_sent.elapsed() >= progress_every {
                let msg = api::WatchEventsResponse {
                    events: matching,
                    last_id: cursor,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return Ok(());
                }
                last_sent = tokio::time::Instant::now();
            }
            continue;
        }
        if log.latest() < cursor {
            // This monitor's copy may only lag etcd (the resume point was checked against
            // etcd, or came from another monitor): ids went back only if etcd says so too
            // (the log was restored from a backup).
            let next = log.store().next_id().await.map_err(|e| read_error(&e))?;
            if next <= cursor {
                return Err(ahead(cursor, next - 1));
            }
        }
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            changed = latest.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(last_sent + progress_every) => {
                if tx.send(progress(cursor)).await.is_err() {
                    return Ok(());
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

//! Follows the event log: a WatchEvents stream on any monitor, opened again (on the same or
//! another monitor) after the last id it saw whenever it breaks, so a failover loses nothing
//! and repeats nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use tonic::Streaming;

use super::watch::{Backoff, retryable};
use super::{ClientError, MonitorClient};
use crate::proto::monitor as api;

/// What [`EventWatcher::next`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum EventItem {
    /// The next event of the asked types.
    Event(api::Event),
    /// Everything up to `last_id` was examined and nothing (more) matched.
    Progress { last_id: u64 },
    /// The stream was (re)opened on this monitor.
    Connected { monitor: String },
}

/// Where a new watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Events committed from now on.
    Now,
    /// Every event still kept.
    Oldest,
    /// The events after this id.
    After(u64),
}

/// Follows the event log across reconnections and failovers.
pub struct EventWatcher {
    client: Arc<MonitorClient>,
    types: Vec<String>,
    /// Where the next stream starts: before the first stream as asked, then after the last id
    /// seen.
    start: Start,
    stream: Option<Streaming<api::WatchEventsResponse>>,
    pending: VecDeque<api::Event>,
    backoff: Backoff,
}

impl EventWatcher {
    pub fn new(client: Arc<MonitorClient>, start: Start, types: Vec<String>) -> EventWatcher {
        EventWatcher {
            client,
            types,
            start,
            stream: None,
            pending: VecDeque::new(),
            backoff: Backoff::default(),
        }
    }

    /// The last id this watcher examined (None before the first message).
    pub fn last_id(&self) -> Option<u64> {
        match self.start {
            Start::After(id) => Some(id),
            Start::Now | Start::Oldest => None,
        }
    }

    /// The next event (or progress mark). Reconnects as long as it takes; fails only on
    /// answers that retrying cannot fix (an id no longer kept, a bad filter).
    pub async fn next(&mut self) -> Result<EventItem, ClientError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(EventItem::Event(e));
            }
            let Some(stream) = self.stream.as_mut() else {
                match self.open().await {
                    Ok(monitor) => return Ok(EventItem::Connected { monitor }),
                    Err(e) if retryable(&e) => {
                        self.backoff.pause().await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            match stream.message().await {
                Ok(Some(msg)) => {
                    self.backoff = Backoff::default();
                    self.start = Start::After(msg.last_id);
                    if msg.events.is_empty() {
                        return Ok(EventItem::Progress {
                            last_id: msg.last_id,
                        });
                    }
                    self.pending.extend(msg.events);
                }
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let e = ClientError::Status(status);
                    if !retryable(&e) {
                        return Err(e);
                    }
                    self.backoff.pause().await;
                }
            }
        }
    }

    async fn open(&mut self) -> Result<String, ClientError> {
        let (start, after_id) = match self.start {
            Start::Now => (api::EventStart::Now, 0),
            Start::Oldest => (api::EventStart::Oldest, 0),
            Start::After(id) => (api::EventStart::After, id),
        };
        let request = api::WatchEventsRequest {
            start: start as i32,
            after_id,
            types: self.types.clone(),
        };
        let (stream, monitor) = self
            .client
            .call_any_at(move |mut c| {
                let request = request.clone();
                async move { c.watch_events(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        self.stream = Some(stream);
        Ok(monitor)
    }
}

//! Reads of the event log in etcd (`<prefix>/events/<first id>`, one key per committed
//! transaction's events) and the watch every monitor follows it with. Writes happen only in the
//! commit pipeline's transactions; deletes only through [`super::Store::delete_range`] under the
//! leader fence (retention).

use etcd_client::{GetOptions, SortOrder, SortTarget, WatchOptions, WatchStream};

use super::endpoints::{Etcd, EtcdFailure, within};
use super::keys::{KeyLayout, prefix_end};
use crate::cluster::{Counters, Event, Record, RecordKey, decode_event_batch, decode_record};
use crate::timing;

/// Events read in one request, with the revision they were read at.
#[derive(Debug, Default)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub revision: i64,
    /// Whether more batches follow the ones read (in the direction read).
    pub more: bool,
    /// The first id of each transaction's batch read, ascending.
    pub batch_starts: Vec<u64>,
}

/// Why the event log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventReadError {
    #[error("etcd request failed: {0}")]
    Etcd(#[from] EtcdFailure),
    #[error("stored event batch {key} is invalid: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The event log's reads.
#[derive(Clone)]
pub struct EventStore {
    etcd: Etcd,
    keys: KeyLayout,
}

impl EventStore {
    pub fn new(etcd: Etcd, keys: KeyLayout) -> EventStore {
        EventStore { etcd, keys }
    }

    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    async fn get(
        &self,
        key: String,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, EtcdFailure> {
        self.etcd.get(key, Some(options)).await
    }

    fn decode(&self, resp: &etcd_client::GetResponse) -> Result<EventPage, EventReadError> {
        let mut events = Vec::new();
        let mut batch_starts = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key()).to_string();
            let Some(first) = self.keys.parse_event_batch(&key) else {
                continue;
            };
            let batch = decode_event_batch(first, kv.value()).map_err(|reason| {
                EventReadError::Corrupt {
                    key: crate::text::shown(&key),
                    reason,
                }
            })?;
            batch_starts.push(first);
            events.extend(batch);
        }
        events.sort_by_key(|e| e.id);
        batch_starts.sort_unstable();
        Ok(EventPage {
            events,
            batch_starts,
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            more: resp.more(),
        })
    }

    /// Up to `batches` transactions' events from the one holding event `after + 1` on, in id
    /// order; events up to `after` are left out.
    pub async fn read_after(&self, after: u64, batches: i64) -> Result<EventPage, EventReadError> {
        let prefix = self.keys.events_prefix();
        // The batch holding `after + 1` is the last one whose first id is at most that.
        let holding = self
            .get(
                prefix.clone(),
                GetOptions::new()
                    .with_range(self.keys.event_batch(after.saturating_add(2)))
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_keys_only()
                    .with_limit(1),
            )
            .await?;
        let start = holding
            .kvs()
            .first()
            .map(|kv| kv.key().to_vec())
            .unwrap_or_else(|| self.keys.event_batch(after.saturating_add(1)).into_bytes());
        let resp = self
            .get(
                String::from_utf8_lossy(&start).to_string(),
                GetOptions::new()
                    .with_range(prefix_end(&prefix))
                    .with_sort(SortTarget::Key, SortOrder::Ascend)
                    .with_limit(batches),
            )
            .await?;
        let mut page = self.decode(&resp)?;
        page.events.retain(|e| e.id > after);
        Ok(page)
    }

    /// Up to `batches` transactions' events before event `before` (the newest ones first
    /// read), returned in id order.
    pub async fn read_before(
        &self,
        before: u64,
        batches: i64,
    ) -> Result<EventPage, EventReadError> {
        let prefix = self.keys.events_prefix();
        let resp = self
            .get(
                prefix.clone(),
                GetOptions::new()
                    .with_range(self.keys.event_batch(before))
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(batches),
            )
            .await?;
        self.decode(&resp)
    }

    /// The id of the oldest event kept (None: the log is empty), and the revision read at.
    pub async fn oldest(&self) -> Result<(Option<u64>, i64), EventReadError> {
        let prefix = self.keys.events_prefix();
        let resp = self
            .get(
                prefix.clone(),
                GetOptions::new()
                    .with_range(prefix_end(&prefix))
                    .with_sort(SortTarget::Key, SortOrder::Ascend)
                    .with_keys_only()
                    .with_limit(1),
            )
            .await?;
        let first = resp.kvs().first().and_then(|kv| {
            self.keys
                .parse_event_batch(&String::from_utf8_lossy(kv.key()))
        });
        Ok((first, resp.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// The id the next event will get, as stored (a linearizable read of the counters).
    pub async fn next_id(&self) -> Result<u64, EventReadError> {
        let key = self.keys.record(&RecordKey::Counters);
        let resp = self.get(key, GetOptions::new()).await?;
        Ok(match resp.kvs().first() {
            Some(kv) => match decode_record(&RecordKey::Counters, kv.value()) {
                Ok(Record::Counters(c)) => c.next_event_id,
                Ok(_) | Err(_) => Counters::default().next_event_id,
            },
            None => Counters::default().next_event_id,
        })
    }

    /// Watches the log from `revision` on.
    pub async fn watch(&self, revision: i64) -> Result<(usize, WatchStream), EtcdFailure> {
        let prefix = self.keys.events_prefix();
        let (endpoint, mut client) = self.etcd.pick();
        let opts = WatchOptions::new()
            .with_range(prefix_end(&prefix))
            .with_start_revision(revision);
        let stream = within(
            timing::ETCD_REQUEST_TIMEOUT,
            client.watch(prefix, Some(opts)),
        )
        .await
        .inspect_err(|e| self.etcd.failed(endpoint, e))?;
        Ok((endpoint, stream))
    }

    /// Reports a failed watch through endpoint `i`.
    pub fn failed(&self, i: usize, e: &EtcdFailure) {
        self.etcd.failed(i, e);
    }
}

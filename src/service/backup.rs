//! Backup: every stored record read at one etcd revision, streamed to the caller (`fbclient
//! -op=backup` writes it to a file; docs/backup-restore.md). Served by the leader: the read's
//! first request carries the leader fence, so a deposed leader cannot hand out a snapshot.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::{MonitorService, reasons, status};
use crate::cluster::{Record, RecordKey, decode_record};
use crate::etcd::StoreError;
use crate::migrate::backup::FORMAT_VERSION;
use crate::proto::monitor as api;

/// Chunks queued for a slow reader before the read from etcd waits.
const BUFFER: usize = 4;
/// Largest chunk sent (a page of PG-table chunks can be several MiB).
const CHUNK_BYTES: usize = 1 << 20;

impl MonitorService {
    pub(super) async fn backup(
        &self,
        _r: api::BackupRequest,
    ) -> Result<ReceiverStream<Result<api::BackupChunk, Status>>, Status> {
        let serving = self.leader()?;
        let store = self.node.store.clone();
        let keys = store.keys().clone();
        let (mut reader, meta) = store
            .snapshot_reader(
                &serving.term.fence,
                vec![keys.cluster_prefix(), keys.blob_prefix()],
                keys.record(&RecordKey::OsdMapMeta),
            )
            .await
            .map_err(|e| store_status(&e, &self.node.leader_hint()))?;
        let osdmap_epoch = match meta.map(|v| decode_record(&RecordKey::OsdMapMeta, &v)) {
            Some(Ok(Record::OsdMapMeta(m))) => m.epoch.0,
            Some(Err(e)) => return Err(Status::internal(format!("stored osdmap meta: {e}"))),
            _ => 0,
        };
        let header = api::BackupHeader {
            format_version: FORMAT_VERSION,
            revision: reader.revision(),
            created_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            monitor: self.node.me.name.clone(),
            monitor_version: crate::VERSION.to_string(),
            etcd_prefix: keys.root().trim_end_matches('/').to_string(),
            entry_count: reader.total(),
            osdmap_epoch,
        };
        tracing::info!(
            revision = reader.revision(),
            entries = reader.total(),
            osdmap_epoch,
            "backup: streaming the stored state"
        );
        let (tx, rx) = mpsc::channel(BUFFER);
        let hint = self.node.leader_hint();
        tokio::spawn(async move {
            let mut chunk = api::BackupChunk {
                header: Some(header),
                entries: Vec::new(),
            };
            let mut bytes = 0;
            let mut sent = 0u64;
            loop {
                let page = match reader.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(store_status(&e, &hint))).await;
                        return;
                    }
                };
                for (key, value) in page {
                    let Some(relative) = keys.relative(&key) else {
                        continue;
                    };
                    bytes += relative.len() + value.len() + 8;
                    chunk.entries.push(api::BackupEntry {
                        key: relative.to_string(),
                        value,
                    });
                    sent += 1;
                    if bytes >= CHUNK_BYTES {
                        let full = std::mem::take(&mut chunk);
                        bytes = 0;
                        if tx.send(Ok(full)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if (chunk.header.is_some() || !chunk.entries.is_empty())
                && tx.send(Ok(chunk)).await.is_err()
            {
                return;
            }
            tracing::info!(entries = sent, "backup: streamed");
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// The status of a failed read: deposed (NOT_LEADER), etcd trouble (UNAVAILABLE), bad data.
fn store_status(e: &StoreError, leader_hint: &str) -> Status {
    match e {
        StoreError::Fenced => status::not_leader(leader_hint),
        StoreError::Etcd(_) => status::error(
            Code::Unavailable,
            reasons::ETCD_UNAVAILABLE,
            format!("reading the state for the backup: {e}"),
        ),
        StoreError::Corrupt(_) | StoreError::Maintenance(_) => Status::internal(e.to_string()),
    }
}

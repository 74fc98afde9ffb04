//! Writing a whole cluster state into an etcd that no monitor serves from: the path of
//! `fastblock-mon restore` and `fastblock-mon import-go`.
//!
//! The writer campaigns in the monitors' own election and writes only while it leads, every
//! transaction carrying the leader fence like the monitors' commits (a monitor started
//! meanwhile queues behind it). It first writes `<prefix>/maintenance`, so no monitor loads a
//! half-written state; then the records in transactions within the configured limits (OSDs,
//! PG chunks before their pools, images, tombstones, purges, OSD config texts); and last, in
//! one transaction, the id counters, the osdmap meta and the deletion of the maintenance key.
//! Interrupted anywhere, it leaves the maintenance key: monitors keep waiting, and the same
//! command run again with `--force` starts over.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use etcd_client::GetOptions;
use prost::Message;

use crate::cluster::{BlobKey, ClusterState, RecordKey, encode_record};
use crate::commit::TxnLimits;
use crate::etcd::keys::prefix_end;
use crate::etcd::{EncodedOp, Etcd, Fence, KeyLayout, Store};
use crate::leadership::{ElectionSettings, Leadership, Role};
use crate::metrics::Metrics;
use crate::proto::store::{MaintenanceRecord, MonitorRecord};
use crate::timing;

/// How long the writer waits to lead (etcd starting, an old lease of its own expiring).
const LEAD_WAIT: Duration = Duration::from_secs(60);

/// What is in the target before writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetContents {
    /// Keys of cluster state and OSD config texts.
    pub keys: u64,
    /// A maintenance key left by an interrupted import or restore.
    pub interrupted: bool,
}

/// A writer that leads the election of one etcd prefix.
pub struct MaintenanceWriter {
    keys: KeyLayout,
    store: Store,
    fence: Fence,
    limits: TxnLimits,
    leadership: Leadership,
    operation: String,
}

impl MaintenanceWriter {
    /// Refuses when a monitor campaigns or leads (the state must not change under a serving
    /// monitor), then campaigns and waits to lead.
    pub async fn take_over(
        etcd: Etcd,
        keys: KeyLayout,
        limits: TxnLimits,
        lease_ttl: Duration,
        operation: &str,
    ) -> anyhow::Result<MaintenanceWriter> {
        let candidates = candidates(&etcd, &keys).await?;
        if !candidates.is_empty() {
            bail!(
                "monitors are running on this etcd ({}): stop every monitor of the cluster (or run them with --maintenance), then run {operation} again",
                candidates.join(", ")
            );
        }
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let me = MonitorRecord {
            name: format!("{operation}@{host}"),
            version: crate::VERSION.to_string(),
            started_at_ms: now_ms(),
            ..MonitorRecord::default()
        };
        let leadership = Leadership::spawn(
            etcd.clone(),
            ElectionSettings {
                keys: keys.clone(),
                lease_ttl,
                me,
            },
            Metrics::new(),
        );
        let mut role = leadership.role();
        let term = tokio::time::timeout(LEAD_WAIT, async {
            loop {
                if let Role::Leader(term) = &*role.borrow_and_update() {
                    return Some(term.clone());
                }
                if role.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        let term = match term {
            Ok(Some(t)) => t,
            _ => {
                leadership.resign_and_stop().await;
                bail!(
                    "could not take the lead of the election within {}s (is etcd reachable? is a monitor running?)",
                    LEAD_WAIT.as_secs()
                );
            }
        };
        let store = Store::new(etcd.clone(), keys.clone(), Metrics::new());
        Ok(MaintenanceWriter {
            keys,
            store,
            fence: term.fence.clone(),
            limits,
            leadership,
            operation: operation.to_string(),
        })
    }

    /// What the target holds now.
    pub async fn contents(&self) -> anyhow::Result<TargetContents> {
        let counted = self
            .store
            .count(
                &self.fence,
                &[
                    self.keys.cluster_prefix(),
                    self.keys.blob_prefix(),
                    self.keys.events_prefix(),
                ],
                self.keys.maintenance(),
            )
            .await
            .context("reading the target etcd")?;
        Ok(TargetContents {
            keys: counted.keys,
            interrupted: counted.also.is_some(),
        })
    }

    /// Deletes all cluster state, OSD config texts and the event log (it describes the state
    /// being replaced; the written state's counter numbers the events from then on). Fenced;
    /// the maintenance key is written first so no monitor loads the empty state meanwhile.
    pub async fn wipe(&self) -> anyhow::Result<()> {
        self.mark().await?;
        self.store
            .delete_prefixes(
                &self.fence,
                &[
                    self.keys.cluster_prefix(),
                    self.keys.blob_prefix(),
                    self.keys.events_prefix(),
                ],
            )
            .await
            .context("deleting the target's state")
    }

    /// Writes `state` and `blobs` (see the module comment for the order). `progress` hears
    /// (records written, records in all) after each transaction.
    pub async fn write_state(
        &self,
        state: &ClusterState,
        blobs: &[(BlobKey, Vec<u8>)],
        mut progress: impl FnMut(u64, u64),
    ) -> anyhow::Result<WriteStats> {
        self.mark().await?;
        let keys = state.record_keys();
        let (last, body): (Vec<RecordKey>, Vec<RecordKey>) = keys
            .into_iter()
            .partition(|k| matches!(k, RecordKey::Counters | RecordKey::OsdMapMeta));
        let total = (body.len() + blobs.len() + last.len()) as u64;
        let op_of = |k: &RecordKey| -> anyhow::Result<EncodedOp> {
            let record = state
                .record(k)
                .with_context(|| format!("record {k:?} listed but absent"))?;
            Ok(EncodedOp {
                key: self.keys.record(k),
                value: Some(encode_record(&record)),
            })
        };
        let mut stats = WriteStats::default();
        let mut batch: Vec<EncodedOp> = Vec::new();
        let mut batch_bytes = 0;
        let ops = body.iter().map(op_of).chain(blobs.iter().map(|(k, v)| {
            Ok(EncodedOp {
                key: self.keys.blob(k),
                value: Some(v.clone()),
            })
        }));
        for op in ops {
            let op = op?;
            let size = op.size();
            if size > self.limits.max_bytes {
                bail!(
                    "the record {} is {size} bytes, over etcd_txn_max_bytes ({}); raise the limit (and etcd's --max-request-bytes)",
                    op.key,
                    self.limits.max_bytes
                );
            }
            if !batch.is_empty()
                && (batch.len() + 1 > self.limits.max_ops
                    || batch_bytes + size > self.limits.max_bytes)
            {
                self.commit(&mut batch, &mut stats).await?;
                batch_bytes = 0;
                progress(stats.records, total);
            }
            batch_bytes += size;
            batch.push(op);
        }
        if !batch.is_empty() {
            self.commit(&mut batch, &mut stats).await?;
            progress(stats.records, total);
        }
        // The last transaction makes the state whole: counters, osdmap meta, marker gone.
        let mut final_ops = last.iter().map(op_of).collect::<anyhow::Result<Vec<_>>>()?;
        final_ops.push(EncodedOp {
            key: self.keys.maintenance(),
            value: None,
        });
        let n = final_ops.len() as u64 - 1;
        self.store
            .commit(&self.fence, &final_ops)
            .await
            .context("writing the osdmap meta (the last transaction)")?;
        stats.transactions += 1;
        stats.records += n;
        progress(stats.records, total);
        Ok(stats)
    }

    /// Resigns the election: monitors may lead again.
    pub async fn finish(self) {
        self.leadership.resign_and_stop().await;
    }

    async fn commit(
        &self,
        batch: &mut Vec<EncodedOp>,
        stats: &mut WriteStats,
    ) -> anyhow::Result<()> {
        let bytes: usize = batch.iter().map(EncodedOp::size).sum();
        self.store
            .commit(&self.fence, batch)
            .await
            .with_context(|| format!("writing {} records", batch.len()))?;
        stats.transactions += 1;
        stats.records += batch.len() as u64;
        stats.bytes += bytes as u64;
        batch.clear();
        Ok(())
    }

    /// Writes the maintenance key.
    async fn mark(&self) -> anyhow::Result<()> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_string())
            .unwrap_or_default();
        let value = MaintenanceRecord {
            operation: self.operation.clone(),
            host,
            version: crate::VERSION.to_string(),
            started_at_ms: now_ms(),
        }
        .encode_to_vec();
        self.store
            .commit(
                &self.fence,
                &[EncodedOp {
                    key: self.keys.maintenance(),
                    value: Some(value),
                }],
            )
            .await
            .context("writing the maintenance key")
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub records: u64,
    pub transactions: u64,
    pub bytes: u64,
}

/// Names of the candidates in the election (running monitors).
async fn candidates(etcd: &Etcd, keys: &KeyLayout) -> anyhow::Result<Vec<String>> {
    let prefix = keys.election_prefix();
    let resp = etcd
        .request(timing::ETCD_REQUEST_TIMEOUT, |c| {
            let prefix = prefix.clone();
            let mut kv = c.kv_client();
            async move {
                kv.get(
                    prefix.clone(),
                    Some(GetOptions::new().with_range(prefix_end(&prefix))),
                )
                .await
            }
        })
        .await
        .context("cannot reach etcd")?;
    Ok(resp
        .kvs()
        .iter()
        .map(|kv| {
            MonitorRecord::decode(kv.value())
                .map(|m| crate::text::shown(&m.name))
                .unwrap_or_else(|_| "an unknown candidate".to_string())
        })
        .collect())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

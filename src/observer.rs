//! Watches the election and the monitor registry in etcd and publishes who leads and which
//! monitors are alive. Every monitor runs one: standbys use it for leader hints, `GetLeader`
//! answers from it, and /readyz reports whether it is connected.

use std::time::Duration;

use etcd_client::{GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions};
use prost::Message;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::LeaderEpoch;
use crate::etcd::endpoints::within;
use crate::etcd::keys::prefix_end;
use crate::etcd::{Etcd, EtcdFailure, KeyLayout};
use crate::proto::store::MonitorRecord;
use crate::timing;

/// The elected leader as stored in etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderInfo {
    pub record: MonitorRecord,
    pub epoch: LeaderEpoch,
}

/// What this monitor knows about the monitors of the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorView {
    /// The current leader; None during an election.
    pub leader: Option<LeaderInfo>,
    /// Registered (alive) monitors, sorted by name.
    pub monitors: Vec<MonitorRecord>,
    /// False while etcd cannot be read or watched; the rest is then the last known view.
    pub connected: bool,
}

/// Why reading or watching the view failed; the observer reads it again after a pause.
#[derive(Debug, thiserror::Error)]
enum ViewError {
    #[error(transparent)]
    Etcd(#[from] EtcdFailure),
    #[error("watch cancelled: {0}")]
    WatchCancelled(String),
    #[error("watch stream closed")]
    WatchClosed,
    #[error("unexpected transaction answer")]
    UnexpectedAnswer,
}

/// Starts the observer; the view is updated until `stop` is cancelled.
pub fn spawn(
    client: Etcd,
    keys: KeyLayout,
    stop: CancellationToken,
) -> watch::Receiver<MonitorView> {
    let (tx, rx) = watch::channel(MonitorView::default());
    tokio::spawn(async move {
        let mut backoff = timing::ETCD_RETRY_MIN;
        while !stop.is_cancelled() {
            if let Err(e) = observe(&client, &keys, &tx, &stop, &mut backoff).await {
                tracing::debug!(error = %e, "monitor view refresh failed");
                tx.send_if_modified(|v| std::mem::replace(&mut v.connected, false));
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
            }
        }
    });
    rx
}

/// Reads the view, then watches for changes and re-reads on each. Returns on any error.
async fn observe(
    client: &Etcd,
    keys: &KeyLayout,
    tx: &watch::Sender<MonitorView>,
    stop: &CancellationToken,
    backoff: &mut Duration,
) -> Result<(), ViewError> {
    let (view, revision) = read(client, keys).await?;
    tx.send_if_modified(|v| replace_if_changed(v, view));
    *backoff = timing::ETCD_RETRY_MIN;

    let election = keys.election_prefix();
    let monitors = keys.monitors_prefix();
    let opts = |p: &str| {
        WatchOptions::new()
            .with_range(prefix_end(p))
            .with_start_revision(revision + 1)
    };
    let (endpoint, mut watcher) = client.pick();
    let mut stream = within(
        timing::ETCD_REQUEST_TIMEOUT,
        watcher.watch(election.clone(), Some(opts(&election))),
    )
    .await
    .inspect_err(|e| client.failed(endpoint, e))?;
    stream
        .watch(monitors.clone(), Some(opts(&monitors)))
        .await
        .map_err(|e| EtcdFailure::from_client(&e))?;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = stream.message() => m,
        };
        match msg {
            Ok(Some(resp)) if resp.canceled() => {
                return Err(ViewError::WatchCancelled(resp.cancel_reason().to_string()));
            }
            Ok(Some(resp)) if !resp.events().is_empty() => {
                let (view, _) = read(client, keys).await?;
                tx.send_if_modified(|v| replace_if_changed(v, view));
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(ViewError::WatchClosed),
            Err(e) => {
                let failure = EtcdFailure::from_client(&e);
                client.failed(endpoint, &failure);
                return Err(failure.into());
            }
        }
    }
}

fn replace_if_changed(current: &mut MonitorView, new: MonitorView) -> bool {
    if *current == new {
        false
    } else {
        *current = new;
        true
    }
}

/// One consistent read of the election and the registry.
async fn read(client: &Etcd, keys: &KeyLayout) -> Result<(MonitorView, i64), ViewError> {
    let election = keys.election_prefix();
    let monitors = keys.monitors_prefix();
    let txn = Txn::new().and_then([
        TxnOp::get(
            election.clone(),
            Some(
                GetOptions::new()
                    .with_range(prefix_end(&election))
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1),
            ),
        ),
        TxnOp::get(
            monitors.clone(),
            Some(GetOptions::new().with_range(prefix_end(&monitors))),
        ),
    ]);
    let resp = client
        .request(timing::ETCD_REQUEST_TIMEOUT, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    let mut parts = resp.op_responses().into_iter();
    let (Some(TxnOpResponse::Get(leader)), Some(TxnOpResponse::Get(registered))) =
        (parts.next(), parts.next())
    else {
        return Err(ViewError::UnexpectedAnswer);
    };
    let leader = leader.kvs().first().and_then(|kv| {
        let record = MonitorRecord::decode(kv.value()).ok()?;
        Some(LeaderInfo {
            record,
            epoch: LeaderEpoch(kv.create_revision() as u64),
        })
    });
    let mut monitors: Vec<MonitorRecord> = registered
        .kvs()
        .iter()
        .filter_map(|kv| MonitorRecord::decode(kv.value()).ok())
        .collect();
    monitors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((
        MonitorView {
            leader,
            monitors,
            connected: true,
        },
        revision,
    ))
}

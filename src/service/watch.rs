//! WatchClusterMap: map changes pushed to subscribers instead of polled.
//!
//! Each subscriber has a task and a small bounded channel. The task remembers the epochs the
//! subscriber has and, after every commit, steps through the published snapshots it has not
//! seen yet (the leader keeps the recent ones), sending one update per changed map per
//! snapshot: the subscriber sees every epoch, in commit order. Every record carries the epoch
//! of its last change and purges leave tombstones, so an update from any epoch can be computed
//! from a snapshot alone. A subscriber that reads slowly blocks only its own task; when it
//! reads again the task continues from the epochs actually sent, folding what it missed into
//! one update (a full map if it fell more than `watch_history_epochs` behind): never an
//! unbounded queue, never a gap. Updates are encoded once per (map, from, to) and shared by
//! every subscriber at the same epoch.

use std::collections::HashMap;

use parking_lot::RwLock;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{MonitorService, convert, reasons, status};
use crate::cluster::{ClusterState, Epoch, PoolId};
use crate::node::WatchSettings;
use crate::proto::monitor as api;
use crate::proto::wire::WatchClusterMapResponseFields;
use crate::proto::wire::watch_cluster_map_response_fields::Update;
use crate::term::TermContext;
use crate::wire::WatchClusterMapResponse;

/// Updates buffered per subscriber before its task waits (and later coalesces).
const BUFFER: usize = 16;
/// Most cached updates before the cache is cleared.
const CACHE_LIMIT: usize = 4096;
/// Most bytes of cached updates before the cache is cleared (full maps of big pools are MiBs).
const CACHE_BYTES: usize = 64 << 20;

/// Which map an update is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Osdmap,
    Pool(PoolId),
}

/// (map, from epoch (None: full), to epoch).
type UpdateKey = (Subject, Option<u64>, u64);

/// Updates encoded once and shared by every subscriber at the same epochs.
#[derive(Default)]
pub(super) struct WatchCache {
    updates: RwLock<CachedUpdates>,
}

#[derive(Default)]
struct CachedUpdates {
    by_key: HashMap<UpdateKey, WatchClusterMapResponse>,
    bytes: usize,
}

impl WatchCache {
    fn get_or_build(
        &self,
        key: UpdateKey,
        build: impl FnOnce() -> WatchClusterMapResponseFields,
    ) -> WatchClusterMapResponse {
        // Thousands of watchers at the same epoch look up the same update: they share a read
        // lock; the first one builds it.
        if let Some(u) = self.updates.read().by_key.get(&key) {
            return u.clone();
        }
        let u = WatchClusterMapResponse::encode(&build());
        let size = prost::Message::encoded_len(&u);
        let mut cache = self.updates.write();
        // Another watcher may have built it meanwhile: everyone must share one buffer.
        if let Some(u) = cache.by_key.get(&key) {
            return u.clone();
        }
        if cache.by_key.len() >= CACHE_LIMIT || cache.bytes + size > CACHE_BYTES {
            cache.by_key.clear();
            cache.bytes = 0;
        }
        if cache.by_key.insert(key, u.clone()).is_none() {
            cache.bytes += size;
        }
        u
    }
}

/// What one subscriber has.
pub(super) struct Subscriber {
    /// None: it does not watch the osdmap. Some(None): it has no osdmap yet. Some(Some(e)): it
    /// has epoch e (which may be 0 on a new cluster).
    osdmap: Option<Option<u64>>,
    /// Pool epochs it has; None when it does not watch pgmaps.
    pools: Option<HashMap<u32, u64>>,
}

impl Subscriber {
    /// What the request says the subscriber has and wants; an unknown scope means all maps.
    pub(super) fn new(r: api::WatchClusterMapRequest) -> Subscriber {
        let scope = api::WatchScope::try_from(r.scope).unwrap_or(api::WatchScope::All);
        let all = matches!(scope, api::WatchScope::All | api::WatchScope::Unspecified);
        Subscriber {
            osdmap: (all || scope == api::WatchScope::Osdmap)
                .then_some((r.osdmap_epoch > 0).then_some(r.osdmap_epoch)),
            pools: (all || scope == api::WatchScope::Pgmaps).then_some(r.pool_epochs),
        }
    }
}

impl MonitorService {
    pub(super) async fn watch_cluster_map(
        &self,
        r: api::WatchClusterMapRequest,
    ) -> Result<ReceiverStream<Result<WatchClusterMapResponse, Status>>, Status> {
        let serving = self.leader()?;
        let subscriber = Subscriber::new(r);
        let (tx, rx) = mpsc::channel(BUFFER);
        let node = self.node.clone();
        let cache = self.watches.clone();
        let settings = self.node.watch;
        tokio::spawn(async move {
            let metrics = &node.metrics;
            metrics.watch_streams.inc();
            let result = run(&serving, &cache, settings, subscriber, &tx, metrics).await;
            if let Err(status) = result {
                let status = status.unwrap_or_else(|| status::not_leader(&node.leader_hint()));
                let _ = tx.send(Err(status)).await;
            }
            metrics.watch_streams.dec();
        });
        Ok(ReceiverStream::new(rx))
    }
}

/// Feeds one subscriber until it goes away (Ok) or the stream must end with a status
/// (Err(Some)), or with NOT_LEADER because the term ended (Err(None)).
async fn run(
    serving: &TermContext,
    cache: &WatchCache,
    settings: WatchSettings,
    mut sub: Subscriber,
    tx: &mpsc::Sender<Result<WatchClusterMapResponse, Status>>,
    metrics: &crate::metrics::Metrics,
) -> Result<(), Option<Status>> {
    let leader = serving.term.epoch.0;
    let pipeline = &serving.pipeline;
    let mut commits = pipeline.commits();
    // Start from the newest snapshot: whatever the subscriber has, one update brings it there.
    let mut snaps = vec![pipeline.latest()];
    let mut last_seq = 0;
    let mut progress = tokio::time::interval(settings.progress_every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    progress.tick().await;
    let mut sent_since_tick = true;
    loop {
        for (seq, snap) in snaps {
            for update in updates(&mut sub, &snap, cache, settings, leader)? {
                if tx.send(Ok(update)).await.is_err() {
                    return Ok(());
                }
                metrics.watch_updates.inc();
                sent_since_tick = true;
            }
            last_seq = seq;
        }
        tokio::select! {
            _ = serving.term.ended().cancelled() => return Err(None),
            r = commits.changed() => if r.is_err() {
                return Err(None);
            },
            _ = progress.tick() => {
                if !sent_since_tick {
                    let p = progress_update(&sub, leader);
                    if tx.send(Ok(p)).await.is_err() {
                        return Ok(());
                    }
                    metrics.watch_updates.inc();
                }
                sent_since_tick = false;
            }
            _ = tx.closed() => return Ok(()),
        }
        snaps = pipeline.history_after(last_seq);
    }
}

/// The updates that bring `sub` from its epochs to `snap`'s, and its new epochs.
pub(super) fn updates(
    sub: &mut Subscriber,
    snap: &ClusterState,
    cache: &WatchCache,
    settings: WatchSettings,
    leader: u64,
) -> Result<Vec<WatchClusterMapResponse>, Option<Status>> {
    let mut out = Vec::new();
    if let Some(have) = sub.osdmap {
        let now = snap.osdmap_epoch().0;
        // None: nothing to send; Some(None): a full map; Some(Some(h)): a delta from h.
        let send = match have {
            Some(h) if h > now => return Err(Some(client_ahead("osdmap", h, now))),
            Some(h) if h == now => None,
            Some(h) if now - h <= settings.history_epochs => Some(Some(h)),
            // Nothing yet, or too far behind.
            _ => Some(None),
        };
        if let Some(from) = send {
            out.push(cache.get_or_build((Subject::Osdmap, from, now), || {
                osd_update(snap, from, leader)
            }));
            sub.osdmap = Some(Some(now));
        }
    }
    if let Some(pools) = &mut sub.pools {
        // Pools the subscriber knows that are gone: an explicit deletion.
        let mut gone: Vec<u32> = pools
            .keys()
            .copied()
            .filter(|id| snap.pool(PoolId(*id)).is_none())
            .collect();
        gone.sort_unstable();
        for id in gone {
            let have = pools.remove(&id).unwrap_or(0);
            let deleted = match snap.tombstone(PoolId(id)) {
                Some(t) => t.deleted_epoch.0,
                // Ids are never reused: below the counter it was a pool once.
                None if id > 0 && id < snap.counters().next_pool_id => 0,
                None => return Err(Some(client_ahead("pool", u64::from(id), 0))),
            };
            out.push(WatchClusterMapResponse::from(
                WatchClusterMapResponseFields {
                    update: Some(Update::Pgmap(api::PgMapUpdate {
                        pool_id: id,
                        full: false,
                        from_epoch: have,
                        epoch: deleted,
                        pool: None,
                        pgs: Vec::new(),
                        deleted: true,
                    })),
                    leader_epoch: leader,
                },
            ));
        }
        for p in snap.pools() {
            let now = p.epoch.0;
            let have = pools.get(&p.id.0).copied().unwrap_or(0);
            if have > now {
                return Err(Some(client_ahead("pool epoch", have, now)));
            }
            if have == now && have != 0 {
                continue;
            }
            // Pool epochs start at 1, so 0 means "nothing yet".
            let from = (have != 0 && now - have <= settings.history_epochs).then_some(have);
            out.push(cache.get_or_build((Subject::Pool(p.id), from, now), || {
                pool_update(snap, p.id, from, leader)
            }));
            pools.insert(p.id.0, now);
        }
    }
    Ok(out)
}

fn client_ahead(what: &str, have: u64, now: u64) -> Status {
    status::error(
        tonic::Code::FailedPrecondition,
        reasons::CLIENT_AHEAD,
        format!("the client has {what} {have} but this leader has {now}: watch again from epoch 0"),
    )
}

/// The osdmap from `from` (None: full) to the snapshot's epoch. A delta that would change most
/// of the map is sent full instead.
fn osd_update(
    snap: &ClusterState,
    from: Option<u64>,
    leader: u64,
) -> WatchClusterMapResponseFields {
    let (changed, removed) = snap.osd_changes_since(Epoch(from.unwrap_or(0)));
    let full = match from {
        None => true,
        Some(_) => changed.len() * 2 > snap.osd_count().max(1),
    };
    let update = if full {
        api::OsdMapUpdate {
            full: true,
            from_epoch: 0,
            epoch: snap.osdmap_epoch().0,
            osds: snap.osds().map(|o| convert::osd_info(o)).collect(),
            removed: Vec::new(),
            flags: convert::flags(snap.flags()),
            core_num: snap.core_num().unwrap_or(0),
        }
    } else {
        api::OsdMapUpdate {
            full: false,
            from_epoch: from.unwrap_or(0),
            epoch: snap.osdmap_epoch().0,
            osds: changed.into_iter().map(|o| convert::osd_info(o)).collect(),
            removed: removed.into_iter().map(|id| id.0).collect(),
            flags: convert::flags(snap.flags()),
            core_num: snap.core_num().unwrap_or(0),
        }
    };
    WatchClusterMapResponseFields {
        update: Some(Update::Osdmap(update)),
        leader_epoch: leader,
    }
}

/// A pool's pgmap from `from` (None: full) to the snapshot's epoch.
fn pool_update(
    snap: &ClusterState,
    id: PoolId,
    from: Option<u64>,
    leader: u64,
) -> WatchClusterMapResponseFields {
    let Some(p) = snap.pool(id) else {
        return WatchClusterMapResponseFields::default();
    };
    let changed: Vec<api::PgInfo> = match from {
        None => Vec::new(),
        Some(f) => p
            .pgs
            .changed_since(Epoch(f))
            .map(|(pg, info)| convert::pg_info(pg.0, info))
            .collect(),
    };
    let full = from.is_none() || changed.len() * 2 > p.pgs.len().max(1);
    let pgs = if full {
        p.pgs
            .iter()
            .map(|(pg, info)| convert::pg_info(pg.0, info))
            .collect()
    } else {
        changed
    };
    WatchClusterMapResponseFields {
        update: Some(Update::Pgmap(api::PgMapUpdate {
            pool_id: id.0,
            full,
            from_epoch: if full { 0 } else { from.unwrap_or(0) },
            epoch: p.epoch.0,
            pool: Some(convert::pool_info(p)),
            pgs,
            deleted: false,
        })),
        leader_epoch: leader,
    }
}

fn progress_update(sub: &Subscriber, leader: u64) -> WatchClusterMapResponse {
    WatchClusterMapResponse::from(WatchClusterMapResponseFields {
        update: Some(Update::Progress(api::WatchProgress {
            osdmap_epoch: sub.osdmap.flatten().unwrap_or(0),
            pool_epochs: sub.pools.clone().unwrap_or_default(),
        })),
        leader_epoch: leader,
    })
}

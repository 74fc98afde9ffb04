//! The client side of a chaos run, through the client library: workers that write (OSD ids,
//! pools, images, flags, out/in), a prober that writes without pause (failover times), a
//! poller and map watchers that read — each recording its operations or observations in the
//! history — and the reads of the state at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use fastblock_monitor::client::{
    ClientError, ClientOptions, MapEvent, MapWatcher, MonitorClient, Scope,
};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::proto::monitor::ClusterFlag;
use fastblock_monitor::proto::monitor::monitor_client::MonitorClient as RawClient;
use fastblock_monitor::sim::{HeartbeatRecord, fake_uuid};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

use crate::checker::FinalState;
use crate::history::{Granted, History, Observation, Op, Reply};
use crate::schedule::Rng;

const MIB: u64 = 1 << 20;

/// A client of every monitor with the given deadline, attempt timeout and back-off bounds.
pub fn client(
    monitors: &[String],
    deadline: Duration,
    attempt: Duration,
    backoff: (Duration, Duration),
) -> Arc<MonitorClient> {
    Arc::new(
        MonitorClient::new(
            monitors,
            ClientOptions {
                deadline,
                attempt_timeout: attempt,
                connect_timeout: Duration::from_secs(1),
                min_backoff: backoff.0,
                max_backoff: backoff.1,
            },
        )
        .expect("client"),
    )
}

/// A leader call of the raw client, for [`record`].
macro_rules! rpc {
    ($method:ident, $request:expr) => {{
        let request = $request;
        move |mut c: RawClient<Channel>| {
            let request = request.clone();
            async move { c.$method(request).await.map(tonic::Response::into_inner) }
        }
    }};
}

/// Runs `call` on the leader and records its invoke, then its ok (with `reply` of the answer
/// and the answering monitor) or its failure.
async fn record<T, F, Fut>(
    h: &History,
    process: &str,
    client: &MonitorClient,
    what: Op,
    call: F,
    reply: impl FnOnce(&T) -> Reply,
) -> Result<T, ClientError>
where
    F: Fn(RawClient<Channel>) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let op = h.invoke(process, what);
    match client.call_leader_at(call).await {
        Ok((answer, by)) => {
            let mut r = reply(&answer);
            r.answered_by = by;
            h.ok(process, op, r);
            Ok(answer)
        }
        Err(e) => {
            h.fail(process, op, e.to_string());
            Err(e)
        }
    }
}

fn term(leader_epoch: u64) -> Option<u64> {
    Some(leader_epoch)
}

fn image_reply(r: &api::ImageResponse) -> Reply {
    Reply {
        granted: r.image.as_ref().map(|i| Granted::Image(i.id)),
        image_size: r.image.as_ref().map(|i| i.size),
        ..Reply::default()
    }
}

/// What a worker believes about the things it owns (its guesses can be wrong after an
/// unacknowledged operation; the history, not the belief, is what gets checked).
#[derive(Default)]
struct Belief {
    pools: Vec<String>,
    images: BTreeSet<(String, String)>,
    flag_set: bool,
    out: Option<u32>,
    names: u32,
    ids_applied: u32,
}

impl Belief {
    fn forget_pool(&mut self, pool: &str) {
        self.pools.retain(|p| p != pool);
        self.images.retain(|(p, _)| p != pool);
    }
}

/// One writer. It owns its pools (`w<id>-p<n>`), its images (`w<id>-i<n>`, in its pools or
/// the shared base pool), one flag and a few OSDs, so every thing has one writer that works
/// one operation at a time.
pub struct Worker {
    pub id: usize,
    pub client: Arc<MonitorClient>,
    pub history: Arc<History>,
    pub rng: Rng,
    pub base_pool: String,
    pub osds: Vec<u32>,
    pub flag: ClusterFlag,
}

/// OSD ids a worker applies for at most.
const IDS_PER_WORKER: u32 = 20;

impl Worker {
    /// Works until `stop`, pausing 100–300 ms between operations.
    pub async fn run(mut self, stop: CancellationToken) {
        let name = format!("worker-{}", self.id);
        let mut belief = Belief::default();
        while !stop.is_cancelled() {
            self.step(&name, &mut belief).await;
            let pause = self
                .rng
                .between(Duration::from_millis(100), Duration::from_millis(300));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn step(&mut self, name: &str, b: &mut Belief) {
        let (h, c) = (&*self.history, &*self.client);
        let roll = self.rng.below(100);
        if roll < 8 && b.ids_applied < IDS_PER_WORKER {
            b.ids_applied += 1;
            let uuid = fake_uuid(&format!("chaos-apply-w{}", self.id), b.ids_applied);
            let _ = record(
                h,
                name,
                c,
                Op::ApplyId { uuid: uuid.clone() },
                rpc!(apply_id, api::ApplyIdRequest { uuid }),
                |r| Reply {
                    granted: Some(Granted::Osd(r.osd_id)),
                    osdmap_epoch: Some(r.osdmap_epoch),
                    leader_epoch: term(r.leader_epoch),
                    ..Reply::default()
                },
            )
            .await;
        } else if roll < 16 && b.pools.len() < 2 {
            b.names += 1;
            let pool = format!("w{}-p{}", self.id, b.names);
            if create_pool(h, name, c, &pool, 8).await.is_ok() {
                b.pools.push(pool);
            }
        } else if roll < 20 && !b.pools.is_empty() {
            let pool = b.pools[self.rng.below(b.pools.len() as u64) as usize].clone();
            let r = record(
                h,
                name,
                c,
                Op::DeletePool { name: pool.clone() },
                rpc!(delete_pool, api::DeletePoolRequest { name: pool.clone() }),
                |r| Reply {
                    pool_epochs: vec![(r.pool_id, r.deleted_epoch)],
                    leader_epoch: term(r.leader_epoch),
                    ..Reply::default()
                },
            )
            .await;
            if r.is_ok() || reason(&r) == Some("UNKNOWN_POOL_NAME") {
                b.forget_pool(&pool);
            }
        } else if roll < 45 || b.images.is_empty() {
            b.names += 1;
            let image = format!("w{}-i{}", self.id, b.names);
            let pool = if !b.pools.is_empty() && self.rng.percent(50) {
                b.pools[self.rng.below(b.pools.len() as u64) as usize].clone()
            } else {
                self.base_pool.clone()
            };
            let size = (1 + self.rng.below(64)) * MIB;
            let request = api::CreateImageRequest {
                pool_name: pool.clone(),
                image_name: image.clone(),
                size,
                object_size: 0,
            };
            let r = record(
                h,
                name,
                c,
                Op::CreateImage {
                    pool: pool.clone(),
                    name: image.clone(),
                    size,
                },
                rpc!(create_image, request),
                image_reply,
            )
            .await;
            match reason(&r) {
                _ if r.is_ok() => {
                    b.images.insert((pool, image));
                }
                Some("IMAGE_EXISTS") => {
                    b.images.insert((pool, image));
                }
                Some("UNKNOWN_POOL_NAME") => b.forget_pool(&pool),
                _ => {}
            }
        } else if roll < 75 {
            let k = self.rng.below(b.images.len() as u64) as usize;
            let (pool, image) = b.images.iter().nth(k).cloned().expect("an image");
            let r = if roll < 65 {
                let size = (1 + self.rng.below(64)) * MIB;
                let request = api::ResizeImageRequest {
                    pool_name: pool.clone(),
                    image_name: image.clone(),
                    size,
                    allow_shrink: true,
                };
                let what = Op::ResizeImage {
                    pool: pool.clone(),
                    name: image.clone(),
                    size,
                };
                record(h, name, c, what, rpc!(resize_image, request), image_reply)
                    .await
                    .map(|_| ())
            } else {
                let request = api::RemoveImageRequest {
                    pool_name: pool.clone(),
                    image_name: image.clone(),
                };
                let what = Op::RemoveImage {
                    pool: pool.clone(),
                    name: image.clone(),
                };
                let r = record(h, name, c, what, rpc!(remove_image, request), |_| {
                    Reply::default()
                })
                .await
                .map(|_| ());
                if r.is_ok() {
                    b.images.remove(&(pool.clone(), image.clone()));
                }
                r
            };
            match reason(&r) {
                Some("IMAGE_NOT_FOUND") => {
                    b.images.remove(&(pool, image));
                }
                Some("UNKNOWN_POOL_NAME") => b.forget_pool(&pool),
                _ => {}
            }
        } else if roll < 87 {
            let flag = self.flag;
            let osdmap = |epoch: u64, leader: u64| Reply {
                osdmap_epoch: Some(epoch),
                leader_epoch: term(leader),
                ..Reply::default()
            };
            let r = if b.flag_set {
                let request = api::UnsetFlagRequest { flag: flag as i32 };
                record(
                    h,
                    name,
                    c,
                    Op::UnsetFlag { flag },
                    rpc!(unset_flag, request),
                    |r| osdmap(r.osdmap_epoch, r.leader_epoch),
                )
                .await
            } else {
                let request = api::SetFlagRequest { flag: flag as i32 };
                record(
                    h,
                    name,
                    c,
                    Op::SetFlag { flag },
                    rpc!(set_flag, request),
                    |r| osdmap(r.osdmap_epoch, r.leader_epoch),
                )
                .await
            };
            if r.is_ok() {
                b.flag_set = !b.flag_set;
            }
        } else {
            let osdmap = |r: &api::OsdChangeResponse| Reply {
                osdmap_epoch: Some(r.osdmap_epoch),
                leader_epoch: term(r.leader_epoch),
                ..Reply::default()
            };
            match b.out {
                Some(osd) => {
                    let request = api::OsdInRequest { osd_id: osd };
                    let r =
                        record(h, name, c, Op::OsdIn { osd }, rpc!(osd_in, request), osdmap).await;
                    if r.is_ok() {
                        b.out = None;
                    }
                }
                None => {
                    let osd = self.osds[self.rng.below(self.osds.len() as u64) as usize];
                    let request = api::OsdOutRequest { osd_id: osd };
                    let r = record(
                        h,
                        name,
                        c,
                        Op::OsdOut { osd },
                        rpc!(osd_out, request),
                        osdmap,
                    )
                    .await;
                    if r.is_ok() {
                        b.out = Some(osd);
                    }
                }
            }
        }
    }
}

/// Applies ids for `n` OSDs that never boot (they only make the state larger), in `lanes`
/// parallel sequences of recorded operations (`setup-<lane>`).
pub async fn apply_ids(client: &MonitorClient, history: &History, n: u32, lanes: u32) {
    let lane = |k: u32| async move {
        let process = format!("setup-{k}");
        let mut i = k;
        while i < n {
            let uuid = fake_uuid("chaos-idle", i);
            let r = record(
                history,
                &process,
                client,
                Op::ApplyId { uuid: uuid.clone() },
                rpc!(apply_id, api::ApplyIdRequest { uuid }),
                |r| Reply {
                    granted: Some(Granted::Osd(r.osd_id)),
                    osdmap_epoch: Some(r.osdmap_epoch),
                    leader_epoch: term(r.leader_epoch),
                    ..Reply::default()
                },
            )
            .await;
            if r.is_ok() {
                i += lanes;
            }
        }
    };
    futures::future::join_all((0..lanes).map(lane)).await;
}

/// Creates a size-3 pool of `pg_count` PGs with host failure domain.
pub async fn create_pool(
    h: &History,
    process: &str,
    c: &MonitorClient,
    pool: &str,
    pg_count: u32,
) -> Result<u32, ClientError> {
    let request = api::CreatePoolRequest {
        name: pool.to_string(),
        pg_size: 3,
        pg_count,
        failure_domain: "host".to_string(),
        root: String::new(),
    };
    let what = Op::CreatePool {
        name: pool.to_string(),
        pg_count,
    };
    record(h, process, c, what, rpc!(create_pool, request), |r| Reply {
        granted: Some(Granted::Pool(r.pool_id)),
        pool_epochs: vec![(r.pool_id, r.pool_epoch)],
        leader_epoch: term(r.leader_epoch),
        ..Reply::default()
    })
    .await
    .map(|r| r.pool_id)
}

fn reason<T>(r: &Result<T, ClientError>) -> Option<&'static str> {
    let reason = r.as_ref().err()?.reason()?;
    ["UNKNOWN_POOL_NAME", "IMAGE_NOT_FOUND", "IMAGE_EXISTS"]
        .into_iter()
        .find(|known| *known == reason)
}

/// The prober's image: the prober resizes it without pause, so the first write a new leader
/// acknowledges after a failover is seen within a few tens of milliseconds.
pub const PROBE_IMAGE: &str = "probe";

/// Creates the prober's image in `pool` (retrying until it exists).
pub async fn create_probe(client: &MonitorClient, history: &History, pool: &str) {
    loop {
        let request = api::CreateImageRequest {
            pool_name: pool.to_string(),
            image_name: PROBE_IMAGE.to_string(),
            size: MIB,
            object_size: 0,
        };
        let what = Op::CreateImage {
            pool: pool.to_string(),
            name: PROBE_IMAGE.to_string(),
            size: MIB,
        };
        let r = record(
            history,
            "prober",
            client,
            what,
            rpc!(create_image, request),
            image_reply,
        )
        .await;
        if r.is_ok() || reason(&r) == Some("IMAGE_EXISTS") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A write acknowledged after every writer stopped: the leader's commit pipeline is FIFO, so
/// once it is acknowledged no earlier write is still pending (one whose client gave up can
/// still be committed until then). It shrinks the probe image back to 1 MiB.
pub async fn barrier(
    client: &MonitorClient,
    history: &History,
    pool: &str,
) -> Result<(), ClientError> {
    let request = api::ResizeImageRequest {
        pool_name: pool.to_string(),
        image_name: PROBE_IMAGE.to_string(),
        size: MIB,
        allow_shrink: true,
    };
    let what = Op::ResizeImage {
        pool: pool.to_string(),
        name: PROBE_IMAGE.to_string(),
        size: MIB,
    };
    record(
        history,
        "final",
        client,
        what,
        rpc!(resize_image, request),
        image_reply,
    )
    .await
    .map(|_| ())
}

/// How long the prober waits for one monitor's answer.
const PROBE_WAIT: Duration = Duration::from_millis(400);

/// How long the prober waits for the other monitors once one has refused its write.
const PROBE_STRAGGLERS: Duration = Duration::from_millis(150);

/// Grows the probe image by 1 MiB per write until `stop`. Each write is offered to every
/// monitor at once and only a leader can accept it, so the first write a new leader accepts
/// after a failover is seen within one round, whatever leader hints the monitors give.
pub async fn prober(
    client: Arc<MonitorClient>,
    monitors: Vec<String>,
    history: Arc<History>,
    pool: String,
    stop: CancellationToken,
) {
    let mut size = MIB;
    while !stop.is_cancelled() {
        size += MIB;
        let request = api::ResizeImageRequest {
            pool_name: pool.clone(),
            image_name: PROBE_IMAGE.to_string(),
            size,
            allow_shrink: false,
        };
        let op = history.invoke(
            "prober",
            Op::ResizeImage {
                pool: pool.clone(),
                name: PROBE_IMAGE.to_string(),
                size,
            },
        );
        let mut offers: FuturesUnordered<_> = monitors
            .iter()
            .map(|m| {
                let raw = client.raw(m);
                let request = request.clone();
                async move {
                    let answer = match raw {
                        Ok(mut c) => tokio::time::timeout(PROBE_WAIT, c.resize_image(request))
                            .await
                            .map_err(|_| format!("no answer within {PROBE_WAIT:?}"))
                            .and_then(|r| r.map_err(|s| s.message().to_string())),
                        Err(e) => Err(e.to_string()),
                    };
                    (m, answer)
                }
            })
            .collect();
        let mut refusals = Vec::new();
        let mut accepted = None;
        // Once a monitor has refused, the others get at most PROBE_STRAGGLERS more: a monitor
        // whose host is down never answers, and waiting PROBE_WAIT for it every round would
        // blur the failover time it measures by that much. An answer cut short is recorded as
        // a failure, which the checker reads as "maybe applied".
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, offers.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        refusals.push(format!(
                            "others silent {PROBE_STRAGGLERS:?} after a refusal"
                        ));
                        break;
                    }
                },
                None => offers.next().await,
            };
            let Some((m, answer)) = next else { break };
            match answer {
                Ok(r) => {
                    accepted = Some((m.clone(), r.into_inner()));
                    break;
                }
                Err(e) => {
                    refusals.push(format!("{m}: {e}"));
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + PROBE_STRAGGLERS);
                }
            }
        }
        match accepted {
            Some((by, r)) => history.ok(
                "prober",
                op,
                Reply {
                    answered_by: by,
                    ..image_reply(&r)
                },
            ),
            None => history.fail("prober", op, refusals.join("; ")),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads the cluster status and the pool list four times a second until `stop`.
pub async fn poller(client: Arc<MonitorClient>, history: Arc<History>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let _ = record(
            &history,
            "poller",
            &client,
            Op::ReadStatus,
            rpc!(get_cluster_status, api::GetClusterStatusRequest {}),
            |r| Reply {
                osdmap_epoch: Some(r.osdmap_epoch),
                leader_epoch: term(r.leader_epoch),
                ..Reply::default()
            },
        )
        .await;
        let _ = record(
            &history,
            "poller",
            &client,
            Op::ListPools,
            rpc!(list_pools, api::ListPoolsRequest {}),
            |r| Reply {
                pool_epochs: r.pools.iter().map(|p| (p.id, p.epoch)).collect(),
                leader_epoch: term(r.leader_epoch),
                ..Reply::default()
            },
        )
        .await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Follows the maps through WatchClusterMap until `stop`, recording every epoch it reaches and
/// every OSD it sees go from up to down.
pub async fn watcher(
    name: String,
    client: Arc<MonitorClient>,
    history: Arc<History>,
    stop: CancellationToken,
) {
    let mut watcher = MapWatcher::new(client.clone(), Scope::All);
    // Per OSD: the last osdmap epoch at which this watcher held it up.
    let mut last_up: HashMap<u32, u64> = HashMap::new();
    let mut down: HashSet<u32> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = watcher.next() => e,
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                history.observe(
                    &name,
                    Observation::WatchError {
                        error: e.to_string(),
                    },
                );
                watcher = MapWatcher::new(client.clone(), Scope::All);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        match event {
            MapEvent::Connected { monitor } => {
                history.observe(&name, Observation::Connected { monitor })
            }
            MapEvent::Osdmap { epoch, .. } => {
                history.observe(&name, Observation::Osdmap { epoch });
                for (id, osd) in &watcher.maps().osds {
                    if osd.up {
                        last_up.insert(*id, epoch);
                        down.remove(id);
                    } else if let Some(&up_at) = last_up.get(id)
                        && down.insert(*id)
                    {
                        history.observe(
                            &name,
                            Observation::OsdDown {
                                osd: *id,
                                last_up_epoch: up_at,
                                epoch,
                            },
                        );
                    }
                }
            }
            MapEvent::Pgmap { pool, epoch, .. } => {
                history.observe(&name, Observation::Pool { pool, epoch })
            }
            MapEvent::PoolDeleted { pool, epoch } => {
                history.observe(&name, Observation::PoolDeleted { pool, epoch })
            }
            MapEvent::Progress => {}
        }
    }
}

/// Adds the fleet's heartbeats to the history, one operation per heartbeat of `osd.<id>`.
pub fn record_heartbeats(history: &History, records: Vec<HeartbeatRecord>) {
    for r in records {
        let process = format!("osd.{}", r.osd);
        let op = history.invoke_at(
            history.since_start(r.sent),
            &process,
            Op::Heartbeat {
                osd: r.osd,
                boot_instance: r.boot_instance,
            },
        );
        let at = history.since_start(r.answered);
        match r.result {
            Ok(a) => history.ok_at(
                at,
                &process,
                op,
                Reply {
                    leader_epoch: term(a.leader_epoch),
                    osdmap_epoch: Some(a.osdmap_epoch),
                    pool_epochs: a.pool_epochs.into_iter().collect(),
                    ..Reply::default()
                },
            ),
            Err(e) => history.fail_at(at, &process, op, e),
        }
    }
}

/// Reads back what the workload touched: pools, flags, OSDs, and the images named in `images`.
pub async fn final_state(
    client: &MonitorClient,
    images: &BTreeSet<(String, String)>,
) -> Result<FinalState, ClientError> {
    let pools = client
        .list_pools(api::ListPoolsRequest {})
        .await?
        .pools
        .into_iter()
        .map(|p| (p.name, (p.id, p.pg_count)))
        .collect();
    let map = client
        .get_osd_map(api::GetOsdMapRequest {
            osd_id: 0,
            epoch: 0,
        })
        .await?;
    let osdmap = map.osdmap.as_ref().expect("a full osdmap");
    let flags = osdmap
        .flags
        .iter()
        .filter_map(|f| ClusterFlag::try_from(*f).ok())
        .collect();
    let osds = osdmap
        .osds
        .iter()
        .map(|o| (o.id, (o.uuid.clone(), o.r#in)))
        .collect();
    let mut found = BTreeMap::new();
    for (pool, image) in images {
        let r = client
            .get_image_info(api::GetImageInfoRequest {
                pool_name: pool.clone(),
                image_name: image.clone(),
            })
            .await;
        match r {
            Ok(r) => {
                if let Some(i) = r.image {
                    found.insert((pool.clone(), image.clone()), (i.id, i.size));
                }
            }
            Err(e)
                if matches!(
                    e.reason().as_deref(),
                    Some("IMAGE_NOT_FOUND" | "UNKNOWN_POOL_NAME")
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(FinalState {
        pools,
        images: found,
        flags,
        osds,
    })
}

/// The PGs that are not simply active (state other than ACTIVE, or a change in progress),
/// described for the report; empty when every PG of every pool is active.
pub async fn inactive_pgs(client: &MonitorClient) -> Result<Vec<String>, ClientError> {
    let active = api::PgStateBit::Active as u32;
    let pools = client
        .get_pg_map(api::GetPgMapRequest::default())
        .await?
        .pools;
    Ok(pools
        .iter()
        .flat_map(|p| {
            p.pgs
                .iter()
                .filter(|g| g.state != active || !g.new_members.is_empty())
                .map(|g| {
                    format!(
                        "{}.{} state {} members {:?} new {:?}",
                        p.pool_id, g.id, g.state, g.members, g.new_members
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect())
}

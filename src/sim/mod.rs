//! A fleet of fake OSDs that drives the real monitor protocol: ids, boots, heartbeats, and the
//! OSD side of the PG lifecycle (a PG's first live member reports itself leader; target
//! memberships are carried out after a delay that stands in for data movement). OSDs can be
//! killed (they fall silent) and revived (they restart with a new boot instance), so a whole
//! down → out → remap → active cycle can be watched. Used by `fbclient fakestartcluster`, the
//! tests and the benchmarks; 10,000 OSDs run in one process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, MapWatcher, MonitorClient, PoolMap, Scope};
use crate::proto::monitor as api;
use crate::service::reasons;

/// What fleet to run.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub osds: u32,
    pub hosts: u32,
    /// 0: no rack labels; otherwise hosts are spread over this many racks.
    pub racks: u32,
    pub cores: u32,
    /// Names are `<prefix>-host<N>`; uuids are derived from the prefix, so two fleets with
    /// different prefixes never share an OSD.
    pub prefix: String,
    /// The interval between heartbeats of one OSD.
    pub heartbeat_every: Duration,
    /// How often the fleet looks for PG work besides map changes (changes that finished
    /// taking their time).
    pub poll_every: Duration,
    /// How long a membership change takes (the data movement it stands for).
    pub change_takes: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Keep every heartbeat with its answer ([`Fleet::heartbeat_records`]); the record grows
    /// for as long as the fleet runs, so only tests that check it turn it on.
    pub record_heartbeats: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            osds: 30,
            hosts: 10,
            racks: 0,
            cores: 4,
            prefix: "fake".to_string(),
            heartbeat_every: Duration::from_secs(3),
            poll_every: Duration::from_millis(250),
            change_takes: Duration::from_millis(500),
            concurrency: 64,
            record_heartbeats: false,
        }
    }
}

/// One fake OSD.
#[derive(Debug)]
pub struct SimOsd {
    pub id: u32,
    pub uuid: String,
    pub host: String,
    pub rack: String,
    instance: AtomicU64,
    alive: AtomicBool,
}

impl SimOsd {
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    pub fn instance(&self) -> u64 {
        self.instance.load(Ordering::Relaxed)
    }
}

/// Counters of what the fleet did (for progress output and tests).
#[derive(Debug, Default)]
pub struct FleetStats {
    pub heartbeats: AtomicU64,
    pub heartbeat_errors: AtomicU64,
    pub leader_reports: AtomicU64,
    pub changes_finished: AtomicU64,
    pub errors: AtomicU64,
}

/// One heartbeat of a fake OSD as the OSD saw it: when it went out, when the answer came back,
/// and the answer (or the error's text).
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    pub osd: u32,
    pub boot_instance: u64,
    pub sent: Instant,
    pub answered: Instant,
    pub result: Result<api::HeartbeatResponse, String>,
}

/// A running fleet.
pub struct Fleet {
    client: Arc<MonitorClient>,
    /// Heartbeats go over connections of their own, as a real OSD's would: a burst of PG
    /// reports queued on the shared connections must not delay them past the down grace.
    heartbeat_client: MonitorClient,
    spec: FleetSpec,
    osds: Vec<Arc<SimOsd>>,
    by_id: HashMap<u32, Arc<SimOsd>>,
    pub stats: FleetStats,
    /// When each remapped PG (pool, pg, version) was first seen: the change "takes" from then.
    changes: Mutex<HashMap<(u32, u32), (u64, Instant)>>,
    /// Leader reports already sent, per (pool, pg) → PG version they answered.
    reported: Mutex<HashMap<(u32, u32), u64>>,
    /// Every heartbeat and its answer, when the spec asks for it.
    heartbeat_log: Mutex<Vec<HeartbeatRecord>>,
}

/// A deterministic uuid for fake OSD `n` of a fleet.
pub fn fake_uuid(prefix: &str, n: u32) -> String {
    let h = xxhash_rust::xxh3::xxh3_64(prefix.as_bytes());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (h >> 4) & 0xfff,
        h & 0xfff,
        n
    )
}

impl Fleet {
    /// Applies ids for and boots every OSD; `progress(done, total)` is called as they boot.
    pub async fn start(
        client: Arc<MonitorClient>,
        spec: FleetSpec,
        progress: impl Fn(u32, u32) + Send + Sync,
    ) -> Result<Arc<Fleet>, ClientError> {
        let done = AtomicU64::new(0);
        let total = spec.osds;
        let booted: Vec<Result<Arc<SimOsd>, ClientError>> = stream::iter(0..spec.osds)
            .map(|n| {
                let (client, spec) = (&client, &spec);
                let (done, progress) = (&done, &progress);
                async move {
                    let host_no = n % spec.hosts.max(1);
                    let uuid = fake_uuid(&spec.prefix, n);
                    let id = client
                        .apply_id(api::ApplyIdRequest { uuid: uuid.clone() })
                        .await?
                        .osd_id;
                    let osd = Arc::new(SimOsd {
                        id,
                        uuid,
                        host: format!("{}-host{host_no}", spec.prefix),
                        rack: if spec.racks > 0 {
                            format!("{}-rack{}", spec.prefix, host_no % spec.racks)
                        } else {
                            String::new()
                        },
                        instance: AtomicU64::new(new_instance(n)),
                        alive: AtomicBool::new(true),
                    });
                    boot(client, spec, &osd).await?;
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(d as u32, total);
                    Ok(osd)
                }
            })
            .buffer_unordered(spec.concurrency.max(1))
            .collect()
            .await;
        let mut osds = Vec::with_capacity(booted.len());
        for o in booted {
            osds.push(o?);
        }
        osds.sort_by_key(|o| o.id);
        let by_id = osds.iter().map(|o| (o.id, o.clone())).collect();
        Ok(Arc::new(Fleet {
            heartbeat_client: client.with_own_connections(),
            client,
            spec,
            osds,
            by_id,
            stats: FleetStats::default(),
            changes: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            heartbeat_log: Mutex::new(Vec::new()),
        }))
    }

    /// The fleet's OSDs, by id.
    pub fn osds(&self) -> &[Arc<SimOsd>] {
        &self.osds
    }

    /// Every heartbeat sent so far with its answer, in the order the answers came (empty unless
    /// the spec sets `record_heartbeats`).
    pub fn heartbeat_records(&self) -> Vec<HeartbeatRecord> {
        self.heartbeat_log.lock().clone()
    }

    /// Stops an OSD: it falls silent (no heartbeat, no PG work), like a crashed process.
    pub fn kill(&self, id: u32) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|o| o.alive.swap(false, Ordering::Relaxed))
    }

    /// Restarts a killed OSD with a new boot instance. A crash leaves it marked up with its
    /// old run, which is stopped first (OsdStop) so the new run can boot at once.
    pub async fn revive(&self, id: u32) -> Result<(), ClientError> {
        let Some(osd) = self.by_id.get(&id) else {
            return Ok(());
        };
        if osd.alive() {
            return Ok(());
        }
        osd.instance
            .store(new_instance(osd.instance() as u32 + 1), Ordering::Relaxed);
        match boot(&self.client, &self.spec, osd).await {
            Err(e) if e.reason().as_deref() == Some(reasons::OSD_ALREADY_UP) => {
                self.client
                    .osd_stop(api::OsdStopRequest { osd_id: id })
                    .await?;
                boot(&self.client, &self.spec, osd).await?;
            }
            other => other?,
        }
        osd.alive.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs heartbeats and the PG protocol until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let beats = tokio::spawn(self.clone().heartbeats(stop.clone()));
        let pgs = tokio::spawn(self.clone().pg_protocol(stop.clone()));
        let _ = beats.await;
        let _ = pgs.await;
    }

    /// Every live OSD heartbeats once per interval, in waves of bounded concurrency.
    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.spec.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let live: Vec<Arc<SimOsd>> = self.osds.iter().filter(|o| o.alive()).cloned().collect();
            stream::iter(live)
                .for_each_concurrent(self.spec.concurrency.max(1), |o| {
                    let fleet = &self;
                    async move {
                        let boot_instance = o.instance();
                        let sent = Instant::now();
                        let r = fleet
                            .heartbeat_client
                            .heartbeat(api::HeartbeatRequest {
                                osd_id: o.id,
                                boot_instance,
                            })
                            .await;
                        match &r {
                            Ok(_) => fleet.stats.heartbeats.fetch_add(1, Ordering::Relaxed),
                            Err(_) => fleet.stats.heartbeat_errors.fetch_add(1, Ordering::Relaxed),
                        };
                        if fleet.spec.record_heartbeats {
                            let record = HeartbeatRecord {
                                osd: o.id,
                                boot_instance,
                                sent,
                                answered: Instant::now(),
                                result: r.map_err(|e| e.to_string()),
                            };
                            fleet.heartbeat_log.lock().push(record);
                        }
                    }
                })
                .await;
        }
    }

    /// Plays the OSD side of the PG protocol, following the pgmaps through a watch stream. A
    /// timer looks again now and then: a membership change completes after `change_takes`
    /// even when no map changes.
    async fn pg_protocol(self: Arc<Self>, stop: CancellationToken) {
        let mut watcher = MapWatcher::new(self.client.clone(), Scope::Pgmaps);
        let mut tick = tokio::time::interval(self.spec.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = watcher.next() => if let Err(e) = event {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "map watch failed");
                    continue;
                },
                _ = tick.tick() => {}
            }
            let work = self.pg_work(&watcher.maps().pools);
            stream::iter(work)
                .for_each_concurrent(self.spec.concurrency.max(1), |w| {
                    let fleet = &self;
                    async move { fleet.send(w).await }
                })
                .await;
        }
    }

    /// What the live OSDs have to tell the monitor about their PGs.
    fn pg_work(&self, pools: &BTreeMap<u32, PoolMap>) -> Vec<PgWork> {
        let now = Instant::now();
        let mut changes = self.changes.lock();
        let reported = self.reported.lock();
        let mut live_changes = HashSet::new();
        let mut out = Vec::new();
        for (pool_id, pool) in pools {
            for pg in pool.pgs.values() {
                let key = (*pool_id, pg.id);
                let leader = pg
                    .members
                    .iter()
                    .copied()
                    .find(|m| self.by_id.get(m).is_some_and(|o| o.alive()));
                let Some(leader) = leader else { continue };
                if !pg.new_members.is_empty() {
                    live_changes.insert(key);
                    let first_seen = changes.entry(key).or_insert((pg.version, now));
                    let targets_alive = pg
                        .new_members
                        .iter()
                        .all(|m| self.by_id.get(m).is_some_and(|o| o.alive()));
                    if targets_alive
                        && now.saturating_duration_since(first_seen.1) >= self.spec.change_takes
                    {
                        // The group's leader after the change reports it: a target member.
                        out.push(PgWork::Finish {
                            pool: *pool_id,
                            pg: pg.id,
                            reporter: pg.new_members[0],
                            members: pg.new_members.clone(),
                        });
                    }
                    continue;
                }
                let creating = pg.state & api::PgStateBit::Creating as u32 != 0;
                let wrong_leader = pg.leader != leader;
                if (creating || wrong_leader) && reported.get(&key) != Some(&pg.version) {
                    out.push(PgWork::Leader {
                        pool: *pool_id,
                        pg: pg.id,
                        leader,
                        members: pg.members.clone(),
                        version: pg.version,
                    });
                }
            }
        }
        changes.retain(|k, _| live_changes.contains(k));
        out
    }

    async fn send(&self, w: PgWork) {
        let result = match &w {
            PgWork::Leader {
                pool,
                pg,
                leader,
                members,
                version,
            } => {
                let r = self
                    .client
                    .leader_be_elected(api::LeaderBeElectedRequest {
                        leader_id: *leader,
                        pool_id: *pool,
                        pg_id: *pg,
                        members: members.clone(),
                        new_members: Vec::new(),
                    })
                    .await;
                if r.is_ok() {
                    self.stats.leader_reports.fetch_add(1, Ordering::Relaxed);
                    self.reported.lock().insert((*pool, *pg), *version);
                }
                r.map(|_| ())
            }
            PgWork::Finish {
                pool,
                pg,
                reporter,
                members,
            } => {
                let r = self
                    .client
                    .pg_member_change_finish(api::PgMemberChangeFinishRequest {
                        result: 0,
                        pool_id: *pool,
                        pg_id: *pg,
                        members: members.clone(),
                        leader_id: *reporter,
                    })
                    .await;
                if r.is_ok() {
                    self.stats.changes_finished.fetch_add(1, Ordering::Relaxed);
                }
                r.map(|_| ())
            }
        };
        if let Err(e) = result {
            // A PG that changed under us (already finished, moved away from the reporter, pool
            // deleted) is not an error of the fleet: the next poll sees the new state.
            if !matches!(
                e.reason().as_deref(),
                Some(
                    reasons::PG_NOT_REMAPPED
                        | reasons::PG_MEMBERS_MISMATCH
                        | reasons::LEADER_NOT_MEMBER
                        | reasons::POOL_NOT_FOUND
                        | reasons::PG_NOT_FOUND
                )
            ) {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, ?w, "fake OSD request failed");
            }
        }
    }
}

/// One request the fleet owes the monitor.
#[derive(Debug)]
enum PgWork {
    Leader {
        pool: u32,
        pg: u32,
        leader: u32,
        members: Vec<u32>,
        version: u64,
    },
    Finish {
        pool: u32,
        pg: u32,
        reporter: u32,
        members: Vec<u32>,
    },
}

/// A boot instance for a run: distinct per restart and per process run.
fn new_instance(salt: u32) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    (now ^ (u64::from(salt) << 40)).max(1)
}

async fn boot(client: &MonitorClient, spec: &FleetSpec, osd: &SimOsd) -> Result<(), ClientError> {
    // Every fake OSD has an address of its own, so all can use the same ports.
    client
        .boot(api::BootRequest {
            osd_id: osd.id,
            uuid: osd.uuid.clone(),
            size: 4 << 40,
            shard_ports: (0..spec.cores)
                .map(|i| {
                    (
                        i,
                        api::ShardPort {
                            core_id: i,
                            port: 20_000 + i,
                            raw_port: 40_000 + i,
                        },
                    )
                })
                .collect(),
            address: format!(
                "10.{}.{}.{}",
                (osd.id >> 16) & 255,
                (osd.id >> 8) & 255,
                osd.id & 255
            ),
            host: osd.host.clone(),
            core_num: spec.cores,
            config: format!("# fake osd {}\nhost = {}\n", osd.id, osd.host),
            boot_instance: osd.instance(),
            rack: osd.rack.clone(),
            root: String::new(),
        })
        .await
        .map(|_| ())
}

//! A fleet of fake OSDs that drives the real monitor protocol: ids, boots, heartbeats, and the
//! OSD side of the PG lifecycle (a PG's first live member reports itself leader; target
//! memberships are carried out after a delay that stands in for data movement). OSDs can be
//! killed (they fall silent) and revived (they restart with a new boot instance), so a whole
//! down → out → remap → active cycle can be watched. Used by `fbclient fakestartcluster`, the
//! tests and the benchmarks; 10,000 OSDs run in one process.
//!
//! What the OSDs decide to send (which PG gets a leader report, which change is finished and by
//! whom) is decided here, once (`Fleet::pg_work`); how it travels is the transport's business
//! (`transport.rs`): our gRPC API (`grpc.rs`), or the legacy framed protocol of the C++ OSDs
//! ([`legacy`]: one pipelined connection per OSD, the 3 s GetClusterMap poll as heartbeat and
//! map source).

mod grpc;
pub mod legacy;
mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, MonitorClient, PoolMap};
use crate::proto::monitor as api;
use transport::{Sent, Transport};

/// Which protocol the fake OSDs speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetProtocol {
    /// Our gRPC API: heartbeats, a map watch, the PG calls.
    #[default]
    Grpc,
    /// The framed protobuf protocol of the C++ OSDs on the monitor port
    /// (LEGACY-PROTOCOL.md §6–§8, §12).
    Legacy,
}

impl FleetProtocol {
    /// Every protocol by its flag name.
    pub const NAMES: [(&'static str, FleetProtocol); 2] = [
        ("grpc", FleetProtocol::Grpc),
        ("legacy", FleetProtocol::Legacy),
    ];

    /// The protocol named `name` (`grpc`, `legacy`); the error lists both.
    pub fn parse(name: &str) -> Result<FleetProtocol, String> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown protocol {} (known: {})",
                    crate::text::shown(name),
                    known.join(", ")
                )
            })
    }
}

/// Why the fleet could not do something (boot, revive).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A gRPC call failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A legacy request failed or was refused.
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
}

/// What fleet to run.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub osds: u32,
    pub hosts: u32,
    /// 0: no rack labels; otherwise hosts are spread over this many racks (gRPC only: the
    /// legacy Boot carries no rack).
    pub racks: u32,
    pub cores: u32,
    /// Names are `<prefix>-host<N>`; uuids are derived from the prefix, so two fleets with
    /// different prefixes never share an OSD.
    pub prefix: String,
    /// The interval between heartbeats of one OSD (legacy: between its cluster-map polls).
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
    /// Heartbeats answered (over the legacy protocol: cluster-map polls answered).
    pub heartbeats: AtomicU64,
    pub heartbeat_errors: AtomicU64,
    pub leader_reports: AtomicU64,
    pub changes_finished: AtomicU64,
    pub errors: AtomicU64,
    /// Legacy protocol: connections made again after one was lost.
    pub reconnects: AtomicU64,
    /// Legacy protocol: boots sent again because the monitor no longer had the OSD up.
    pub reboots: AtomicU64,
}

/// One heartbeat of a fake OSD as the OSD saw it: when it went out, when the answer came back,
/// and the answer (or the error's text). Over the legacy protocol a heartbeat is a
/// GetClusterMap poll, recorded with the osdmap and pool versions it left the OSD with.
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
    transport: Transport,
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
    /// Applies ids for and boots every OSD over gRPC; `progress(done, total)` is called as
    /// they boot.
    pub async fn start(
        client: Arc<MonitorClient>,
        spec: FleetSpec,
        progress: impl Fn(u32, u32) + Send + Sync,
    ) -> Result<Arc<Fleet>, SimError> {
        Self::start_with(Transport::grpc(client), spec, progress).await
    }

    /// Applies ids for and boots every OSD over the legacy framed protocol, each OSD on a
    /// connection of its own to the first of `monitors` that accepts one (the monitors'
    /// `port`, where gRPC is served too).
    pub async fn start_legacy(
        monitors: &[String],
        options: legacy::ConnOptions,
        spec: FleetSpec,
        progress: impl Fn(u32, u32) + Send + Sync,
    ) -> Result<Arc<Fleet>, SimError> {
        let transport = Transport::Legacy(legacy::Legacy::new(monitors, options));
        Self::start_with(transport, spec, progress).await
    }

    async fn start_with(
        transport: Transport,
        spec: FleetSpec,
        progress: impl Fn(u32, u32) + Send + Sync,
    ) -> Result<Arc<Fleet>, SimError> {
        let done = AtomicU64::new(0);
        let total = spec.osds;
        let booted: Vec<Result<Arc<SimOsd>, SimError>> = stream::iter(0..spec.osds)
            .map(|n| {
                let (transport, spec) = (&transport, &spec);
                let (done, progress) = (&done, &progress);
                async move {
                    let host_no = n % spec.hosts.max(1);
                    let uuid = fake_uuid(&spec.prefix, n);
                    let id = transport.apply_id(&uuid).await?;
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
                    transport.boot(spec, &osd).await?;
                    let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                    progress(d as u32, total);
                    Ok(osd)
                }
            })
            .buffer_unordered(spec.concurrency.max(1))
            .collect()
            .await;
        transport.booted().await;
        let mut osds = Vec::with_capacity(booted.len());
        for o in booted {
            osds.push(o?);
        }
        osds.sort_by_key(|o| o.id);
        let by_id = osds.iter().map(|o| (o.id, o.clone())).collect();
        Ok(Arc::new(Fleet {
            transport,
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

    /// The protocol the fleet speaks.
    pub fn protocol(&self) -> FleetProtocol {
        self.transport.protocol()
    }

    /// The legacy transport's copy of the pgmaps.
    #[cfg(test)]
    fn maps_for_tests(&self) -> &legacy::PolledMaps {
        match &self.transport {
            Transport::Legacy(l) => l.maps(),
            Transport::Grpc(_) => panic!("not a legacy fleet"),
        }
    }

    /// Every heartbeat sent so far with its answer, in the order the answers came (empty unless
    /// the spec sets `record_heartbeats`).
    pub fn heartbeat_records(&self) -> Vec<HeartbeatRecord> {
        self.heartbeat_log.lock().clone()
    }

    /// Stops an OSD: it falls silent (no heartbeat, no PG work), like a crashed process (over
    /// the legacy protocol its connection is closed too).
    pub fn kill(&self, id: u32) -> bool {
        let killed = self
            .by_id
            .get(&id)
            .is_some_and(|o| o.alive.swap(false, Ordering::Relaxed));
        if killed {
            self.transport.silence(id);
        }
        killed
    }

    /// Restarts a killed OSD with a new boot instance. A crash leaves it marked up with its
    /// old run, which is stopped first (OsdStop) so the new run can boot at once.
    pub async fn revive(&self, id: u32) -> Result<(), SimError> {
        let Some(osd) = self.by_id.get(&id) else {
            return Ok(());
        };
        if osd.alive() {
            return Ok(());
        }
        osd.instance
            .store(new_instance(osd.instance() as u32 + 1), Ordering::Relaxed);
        self.transport.restart(&self.spec, osd).await?;
        osd.alive.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Runs heartbeats and the PG protocol until `stop` (over the legacy protocol every
    /// connection is closed then, as when OSD processes exit).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let beats = tokio::spawn(Transport::liveness(self.clone(), stop.clone()));
        let pgs = tokio::spawn(self.clone().pg_protocol(stop.clone()));
        let _ = beats.await;
        let _ = pgs.await;
        self.transport.stopped();
    }

    /// Keeps one heartbeat and its answer, when the spec asks for it.
    fn record_heartbeat(
        &self,
        osd: &SimOsd,
        boot_instance: u64,
        sent: Instant,
        result: Result<api::HeartbeatResponse, String>,
    ) {
        if self.spec.record_heartbeats {
            let record = HeartbeatRecord {
                osd: osd.id,
                boot_instance,
                sent,
                answered: Instant::now(),
                result,
            };
            self.heartbeat_log.lock().push(record);
        }
    }

    /// Whether OSD `id` is one of this fleet's and alive.
    fn is_alive(&self, id: u32) -> bool {
        self.by_id.get(&id).is_some_and(|o| o.alive())
    }

    /// Plays the OSD side of the PG protocol, following the pgmaps as the transport learns
    /// them (a watch stream, or the OSDs' polls). A timer looks again now and then: a
    /// membership change completes after `change_takes` even when no map changes.
    async fn pg_protocol(self: Arc<Self>, stop: CancellationToken) {
        let mut maps = self.transport.maps();
        let mut tick = tokio::time::interval(self.spec.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = maps.changed() => if let Err(e) = changed {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "map watch failed");
                    continue;
                },
                _ = tick.tick() => {}
            }
            let work = maps.work(&self);
            stream::iter(work)
                .for_each_concurrent(self.spec.concurrency.max(1), |w| {
                    let fleet = &self;
                    async move { fleet.send(w).await }
                })
                .await;
        }
    }

    /// What the live OSDs have to tell the monitor about their PGs: the one decision of what
    /// to send, whatever the transport. A PG's leader is its first live member; `pg.leader` is
    /// the leader the monitor holds (gRPC), or the one this fleet last reported (legacy: its
    /// maps carry no leader).
    fn pg_work(&self, pools: &BTreeMap<u32, PoolMap>) -> Vec<PgWork> {
        let now = Instant::now();
        let mut changes = self.changes.lock();
        let reported = self.reported.lock();
        let mut live_changes = HashSet::new();
        let mut out = Vec::new();
        for (pool_id, pool) in pools {
            for pg in pool.pgs.values() {
                let key = (*pool_id, pg.id);
                let leader = pg.members.iter().copied().find(|m| self.is_alive(*m));
                let Some(leader) = leader else { continue };
                if !pg.new_members.is_empty() {
                    live_changes.insert(key);
                    let first_seen = changes.entry(key).or_insert((pg.version, now));
                    let targets_alive = pg.new_members.iter().all(|m| self.is_alive(*m));
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

    /// Sends one piece of PG work and keeps count of what it did.
    async fn send(&self, w: PgWork) {
        match self.transport.send(&w).await {
            Ok(Sent::Done) => match &w {
                PgWork::Leader {
                    pool, pg, version, ..
                } => {
                    self.stats.leader_reports.fetch_add(1, Ordering::Relaxed);
                    self.reported.lock().insert((*pool, *pg), *version);
                }
                PgWork::Finish { .. } => {
                    self.stats.changes_finished.fetch_add(1, Ordering::Relaxed);
                }
            },
            // The PG changed under us (already finished, moved away from the reporter, pool
            // deleted), or the reporter is between connections: not an error of the fleet,
            // the next look sees the new state.
            Ok(Sent::Skipped) => {}
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, ?w, "fake OSD request failed");
            }
        }
    }
}

/// One request the fleet owes the monitor.
#[derive(Debug)]
enum PgWork {
    /// `leader` reports itself the raft leader of the PG, with its members.
    Leader {
        pool: u32,
        pg: u32,
        leader: u32,
        members: Vec<u32>,
        version: u64,
    },
    /// `reporter` (the group's leader after the change) reports the change to `members` done.
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

/// The address a fake OSD boots with: every fake OSD has one of its own, so all can use the
/// same ports.
fn fake_address(id: u32) -> String {
    format!("10.{}.{}.{}", (id >> 16) & 255, (id >> 8) & 255, id & 255)
}

/// The (core id, RDMA port, raw port) of shard `i` of a fake OSD.
fn fake_shard(i: u32) -> (u32, u32, u32) {
    (i, 20_000 + i, 40_000 + i)
}

/// The config text a fake OSD reports at boot.
fn fake_config(osd: &SimOsd) -> String {
    format!("# fake osd {}\nhost = {}\n", osd.id, osd.host)
}

//! Chaos test with a history checker: three monitors, each with its embedded etcd member in a
//! network namespace of its own, a fleet of fake OSDs and a client workload, while a seeded
//! schedule kills monitors and etcd members, freezes monitors and partitions them. Every
//! operation, observation and fault goes into a history that `checker.rs` judges at the end.
//!
//! The seed is printed at the start and on failure; `CHAOS_SEED=<n>` replays a schedule and
//! `CHAOS_DURATION=<10m>` keeps injecting faults that long (`make chaos`); without it the run
//! injects one fault of each kind. docs/testing.md describes the rules.

#[path = "../common/mod.rs"]
mod common;

mod checker;
mod history;
mod nemesis;
mod schedule;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::Topology;
use common::{ClusterOptions, TestCluster};
use fastblock_monitor::client::{ClientError, MonitorClient};
use fastblock_monitor::proto::monitor::ClusterFlag;
use fastblock_monitor::sim::{Fleet, FleetSpec};
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use checker::{FinalState, Rule, Rules, Violation};
use history::{Entry, Event, Fault, History, Observation};
use nemesis::Nemesis;
use schedule::{Rng, Schedule, Timings};

const LEASE_TTL: Duration = Duration::from_secs(3);
const OSD_DOWN_AFTER: Duration = Duration::from_secs(4);
/// Bound on waits for things that must happen (a leader, a boot, PGs active again).
const LONG: Duration = Duration::from_secs(180);
const WORKERS: usize = 3;
/// The fleet's first OSDs are the workers' to mark out and in; the rest the nemesis's to crash
/// (a crashed OSD boots again, and a boot marks it in).
const WORKER_OSDS: usize = 12;
const BASE_POOL: &str = "base";
/// OSD ids applied for at the start that never boot: they make the state a new leader loads
/// span several pages, as a real cluster's does.
const IDLE_OSDS: u32 = 2_000;

#[test]
fn chaos_with_every_member_in_etcd_server() {
    run(true);
}

#[test]
fn chaos_with_each_monitors_own_member_in_etcd_server() {
    run(false);
}

/// Prints how to replay the run when the test fails (by a violation or by any panic).
struct ReplayHint {
    seed: u64,
    test: &'static str,
}

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos: FAILED with seed {seed}; replay: CHAOS_SEED={seed} cargo nextest run --test chaos {test} (or CHAOS_SEED={seed} make chaos)",
                seed = self.seed,
                test = self.test,
            );
        }
    }
}

fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CHAOS_SEED must be an unsigned integer, got {s:?}")),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            // Small enough to type.
            h.finish() % 1_000_000_000
        }
    }
}

fn duration() -> Option<Duration> {
    let text = std::env::var("CHAOS_DURATION").ok()?;
    Some(humantime::parse_duration(text.trim()).unwrap_or_else(|e| {
        panic!("CHAOS_DURATION must be a duration such as 10m, got {text:?}: {e}")
    }))
}

fn run(every_member: bool) {
    let test = if every_member {
        "chaos_with_every_member_in_etcd_server"
    } else {
        "chaos_with_each_monitors_own_member_in_etcd_server"
    };
    let seed = seed();
    let length = duration();
    eprintln!(
        "chaos: {test}: CHAOS_SEED={seed}, {}",
        match length {
            Some(d) => format!("faults for {}", humantime::format_duration(d)),
            None => "one fault of each kind".to_string(),
        }
    );
    let _hint = ReplayHint { seed, test };
    let started = Instant::now();

    let mut run = Run::start(every_member, seed);
    let workload = run.start_workload();
    let mut violations = run.inject_faults(length);
    let end = run.end(workload);
    violations.extend(end.violations);

    let entries = run.history.entries();
    let rules = Rules {
        lease_ttl: LEASE_TTL,
        failover_slack: Duration::from_secs(1),
        osd_down_after: OSD_DOWN_AFTER,
    };
    match (&end.served, &end.reloaded) {
        (Ok(served), Ok(reloaded)) => violations.extend(checker::check(
            &entries,
            &rules,
            served,
            reloaded,
            &run.osd_ids,
        )),
        (served, reloaded) => {
            let why = |r: &Result<FinalState, _>| match r {
                Ok(_) => "read".to_string(),
                Err(e) => format!("{e}"),
            };
            violations.push(Violation {
                rule: Rule::NoRecovery,
                detail: format!(
                    "the final state could not be read (served: {}; after the handover: {})",
                    why(served),
                    why(reloaded)
                ),
                entries: Vec::new(),
            });
        }
    }

    let handover = if end.handover < nemesis::FAILOVER_WAIT {
        format!(
            "the next leader served after {:.3} s",
            end.handover.as_secs_f64()
        )
    } else {
        format!(
            "no other monitor served within {FAILOVER_WAIT:?}",
            FAILOVER_WAIT = nemesis::FAILOVER_WAIT
        )
    };
    eprintln!(
        "{}\n  graceful handover at the end: {handover}",
        summary(&entries, &rules, started.elapsed(), end.pgs_active_after),
    );
    if let Some(dir) = run.keep(&entries, &format!("{test}-{seed}")) {
        eprintln!("chaos: history and monitor logs in {}", dir.display());
    }
    if !violations.is_empty() {
        eprintln!("{}", checker::report(&entries, &violations));
        let mut broken: Vec<Rule> = violations.iter().map(|v| v.rule).collect();
        broken.sort();
        broken.dedup();
        panic!(
            "chaos: {} violation(s) of {broken:?} with CHAOS_SEED={seed}",
            violations.len()
        );
    }
}

/// A cluster under test with its fleet and its history. Fields drop in order: the tasks stop,
/// then the monitors die, then the namespaces go.
struct Run {
    runtime: tokio::runtime::Runtime,
    cluster: TestCluster,
    net: Arc<Topology>,
    seed: u64,
    history: Arc<History>,
    monitors: Vec<String>,
    /// A client for the setup and the final reads, with a long deadline.
    admin: Arc<MonitorClient>,
    fleet: Arc<Fleet>,
    fleet_stop: CancellationToken,
    fleet_task: JoinHandle<()>,
    /// The fleet's OSD ids.
    osd_ids: Vec<u32>,
    /// The fenced-transaction count last seen per monitor process.
    fenced: HashMap<usize, f64>,
}

/// The tasks of the workload: writers (workers and prober) and observers (poller, watchers).
struct Workload {
    work: CancellationToken,
    writers: Vec<JoinHandle<()>>,
    observe: CancellationToken,
    observers: Vec<JoinHandle<()>>,
}

/// What the end of a run found.
struct End {
    served: Result<FinalState, ClientError>,
    reloaded: Result<FinalState, ClientError>,
    handover: Duration,
    pgs_active_after: Option<Duration>,
    violations: Vec<Violation>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Run {
    /// Starts the monitors in their namespaces and the fleet; creates the base pool, the probe
    /// image and the idle OSD ids; waits until every PG is active.
    fn start(every_member: bool, seed: u64) -> Run {
        let net = Arc::new(Topology::create(3));
        let mut cluster = TestCluster::new(
            3,
            ClusterOptions {
                lease_ttl_secs: LEASE_TTL.as_secs(),
                extra_config: format!(
                    "osd_down_after = \"{}s\"\n# No automatic out: the workload alone marks OSDs out and in.\nosd_out_after = \"1h\"",
                    OSD_DOWN_AFTER.as_secs()
                ),
                list_all_members: every_member,
                network: Some(net.clone()),
                ..ClusterOptions::default()
            },
        );
        cluster.start_all();
        cluster.wait_leader(&[0, 1, 2], LONG);
        let monitors: Vec<String> = cluster.monitors.iter().map(|m| m.grpc.clone()).collect();
        for (i, m) in monitors.iter().enumerate() {
            eprintln!("chaos: m{} is {m}", i + 1);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let history = Arc::new(History::new());
        let admin = workload::client(&monitors, LONG, Duration::from_secs(5), (ms(50), ms(1000)));
        let fleet_client = workload::client(
            &monitors,
            Duration::from_secs(5),
            ms(1000),
            (ms(20), ms(200)),
        );
        let fleet = runtime
            .block_on(Fleet::start(
                fleet_client,
                FleetSpec {
                    osds: 24,
                    hosts: 6,
                    cores: 2,
                    prefix: "chaos".to_string(),
                    heartbeat_every: ms(500),
                    poll_every: ms(200),
                    change_takes: ms(300),
                    record_heartbeats: true,
                    ..FleetSpec::default()
                },
                |_, _| {},
            ))
            .expect("the fleet boots");
        let fleet_stop = CancellationToken::new();
        let fleet_task = runtime.spawn(fleet.clone().run(fleet_stop.clone()));
        runtime.block_on(async {
            workload::create_pool(&history, "setup", &admin, BASE_POOL, 32)
                .await
                .expect("base pool");
            workload::create_probe(&admin, &history, BASE_POOL).await;
            workload::apply_ids(&admin, &history, IDLE_OSDS, 32).await;
        });
        let osd_ids = fleet.osds().iter().map(|o| o.id).collect();
        let run = Run {
            runtime,
            cluster,
            net,
            seed,
            history,
            monitors,
            admin,
            fleet,
            fleet_stop,
            fleet_task,
            osd_ids,
            fenced: HashMap::new(),
        };
        run.pgs_active("before the first fault")
            .unwrap_or_else(|v| panic!("{}", v.detail));
        run
    }

    /// Waits until every PG of every pool is active with no change in progress.
    fn pgs_active(&self, when: &str) -> Result<Duration, Violation> {
        let since = Instant::now();
        let mut last = Vec::new();
        while since.elapsed() < LONG {
            match self.runtime.block_on(workload::inactive_pgs(&self.admin)) {
                Ok(inactive) if inactive.is_empty() => return Ok(since.elapsed()),
                Ok(inactive) => last = inactive,
                Err(e) => last = vec![e.to_string()],
            }
            std::thread::sleep(ms(500));
        }
        let shown: Vec<&String> = last.iter().take(10).collect();
        Err(Violation {
            rule: Rule::PgsNotActive,
            detail: format!(
                "{when}: {} PGs not active after {LONG:?}: {shown:?}",
                last.len()
            ),
            entries: Vec::new(),
        })
    }

    /// Starts the workers, the prober, the poller and two watchers.
    fn start_workload(&self) -> Workload {
        let (work, observe) = (CancellationToken::new(), CancellationToken::new());
        let client = |deadline: u64, attempt: u64| {
            workload::client(
                &self.monitors,
                Duration::from_secs(deadline),
                ms(attempt),
                (ms(50), ms(500)),
            )
        };
        let mut observers = vec![self.runtime.spawn(workload::poller(
            client(5, 1000),
            self.history.clone(),
            observe.clone(),
        ))];
        for w in 1..=2 {
            observers.push(self.runtime.spawn(workload::watcher(
                format!("watcher-{w}"),
                client(10, 2000),
                self.history.clone(),
                observe.clone(),
            )));
        }
        let flags = [
            ClusterFlag::Noout,
            ClusterFlag::Norebalance,
            ClusterFlag::Noin,
        ];
        let mut writers: Vec<_> = (0..WORKERS)
            .map(|k| {
                let worker = workload::Worker {
                    id: k + 1,
                    client: client(10, 2000),
                    history: self.history.clone(),
                    rng: Rng::new(self.seed ^ (0xC0FFEE + k as u64)),
                    base_pool: BASE_POOL.to_string(),
                    osds: self.osd_ids[..WORKER_OSDS]
                        .iter()
                        .copied()
                        .skip(k)
                        .step_by(WORKERS)
                        .collect(),
                    flag: flags[k % flags.len()],
                };
                self.runtime.spawn(worker.run(work.clone()))
            })
            .collect();
        writers.push(self.runtime.spawn(workload::prober(
            client(5, 1000),
            self.monitors.clone(),
            self.history.clone(),
            BASE_POOL.to_string(),
            work.clone(),
        )));
        Workload {
            work,
            writers,
            observe,
            observers,
        }
    }

    /// Plays the schedule: the deck, then random faults for `length` if given.
    fn inject_faults(&mut self, length: Option<Duration>) -> Vec<Violation> {
        self.history.fault(Fault::Note("faults begin".to_string()));
        let mut nemesis = Nemesis::new(
            &mut self.cluster,
            &self.net,
            &self.history,
            &self.fleet,
            self.runtime.handle(),
            self.osd_ids[WORKER_OSDS..].to_vec(),
            &mut self.fenced,
        );
        let mut schedule = Schedule::new(
            self.seed,
            Timings {
                lease_ttl: LEASE_TTL,
                osd_down_after: OSD_DOWN_AFTER,
            },
        );
        let started = Instant::now();
        let mut violations = Vec::new();
        while let Some((step, quiet)) = schedule.next(length.is_some_and(|d| started.elapsed() < d))
        {
            if let Err(v) = nemesis.run(&step) {
                violations.push(v);
                break;
            }
            std::thread::sleep(quiet);
        }
        self.history.fault(Fault::Note("faults end".to_string()));
        violations
    }

    /// Stops the writers and waits for the writes still pending in the leader; reads the state
    /// the leader serves, hands over gracefully to a leader that loads it from etcd and reads
    /// it again; waits for every PG to be active; stops the observers and the fleet and adds
    /// the fleet's heartbeats to the history.
    fn end(&mut self, w: Workload) -> End {
        let mut violations = Vec::new();
        w.work.cancel();
        for t in w.writers {
            let _ = self.runtime.block_on(t);
        }
        let barrier = workload::barrier(&self.admin, &self.history, BASE_POOL);
        if let Err(e) = self.runtime.block_on(barrier) {
            violations.push(Violation {
                rule: Rule::NoRecovery,
                detail: format!("a write after the writers stopped was not acknowledged: {e}"),
                entries: Vec::new(),
            });
        }
        let images = checker::image_keys(&self.history.entries());
        let served = self
            .runtime
            .block_on(workload::final_state(&self.admin, &images));
        let mut nemesis = Nemesis::new(
            &mut self.cluster,
            &self.net,
            &self.history,
            &self.fleet,
            self.runtime.handle(),
            Vec::new(),
            &mut self.fenced,
        );
        let leader = nemesis.leader();
        let monitor = nemesis.address(leader);
        self.history.fault(Fault::GracefulStop {
            monitor: monitor.clone(),
        });
        let handover = Instant::now();
        nemesis.cluster.signal(leader, Signal::SIGTERM);
        nemesis.cluster.wait_exit(leader, LONG);
        nemesis.forget(leader);
        // Any leader from now on loaded the state from etcd. The stopped monitor comes back
        // once another serves, or after FAILOVER_WAIT if none does.
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        while handover.elapsed() < nemesis::FAILOVER_WAIT
            && !others.iter().any(|&i| nemesis.cluster.is_serving_leader(i))
        {
            std::thread::sleep(ms(50));
        }
        let handover = handover.elapsed();
        self.history.fault(Fault::Restart { monitor });
        nemesis.cluster.start(leader);
        nemesis.cluster.wait_leader(&[0, 1, 2], LONG);
        let reloaded = self
            .runtime
            .block_on(workload::final_state(&self.admin, &images));
        if let Err(v) = nemesis.settle() {
            violations.push(v);
        }
        let pgs = self.pgs_active("after healing");
        if let Err(v) = &pgs {
            violations.push(v.clone());
        }
        w.observe.cancel();
        self.fleet_stop.cancel();
        for t in w.observers {
            let _ = self.runtime.block_on(t);
        }
        let _ = self.runtime.block_on(&mut self.fleet_task);
        workload::record_heartbeats(&self.history, self.fleet.heartbeat_records());
        End {
            served,
            reloaded,
            handover,
            pgs_active_after: pgs.ok(),
            violations,
        }
    }

    /// Keeps the history and the monitors' logs beyond the run's temp dir, in
    /// `target/tmp/<name>/`; None when they could not be written.
    fn keep(&self, entries: &[Entry], name: &str) -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::create_dir_all(&dir).ok()?;
        let text: String = entries.iter().map(|e| format!("{e}\n")).collect();
        std::fs::write(dir.join("history"), text).ok()?;
        for m in &self.cluster.monitors {
            std::fs::copy(&m.log, dir.join(format!("{}.log", m.name))).ok()?;
        }
        Some(dir)
    }
}

/// What the run did: operations by kind, faults, failover times, mark-downs, fenced writes.
fn summary(entries: &[Entry], rules: &Rules, took: Duration, pgs_took: Option<Duration>) -> String {
    let ops = checker::operations(entries);
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for op in &ops {
        let kind = format!("{:?}", op.what)
            .split([' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string();
        let slot = by_kind.entry(kind).or_default();
        if op.ok().is_some() {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    let mut out = format!(
        "chaos: {:.0} s, {} history entries\n  operations (ok/not ok):",
        took.as_secs_f64(),
        entries.len()
    );
    for (kind, (ok, not)) in &by_kind {
        out.push_str(&format!(" {kind} {ok}/{not};"));
    }
    out.push_str("\n  faults:");
    for e in entries {
        if let Event::Fault(f) = &e.event
            && !matches!(f, Fault::Note(_))
        {
            out.push_str(&format!("\n    {:>8.3}s {f:?}", e.at.as_secs_f64()));
        }
    }
    out.push_str(&format!(
        "\n  failovers (bound for a crash: {:?}):",
        rules.lease_ttl + rules.failover_slack
    ));
    for f in checker::failovers(entries, &ops, rules).0 {
        out.push_str(&format!(
            "\n    {:>8.3}s {} → {}",
            f.at.as_secs_f64(),
            f.fault,
            match f.took {
                Some(t) => format!(
                    "first write on another monitor after {:.3} s",
                    t.as_secs_f64()
                ),
                None =>
                    "no failover (no write on another monitor before the next fault)".to_string(),
            }
        ));
    }
    let downs: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Observed(Observation::OsdDown { osd, epoch, .. })
                if e.process == "watcher-1" =>
            {
                Some(format!("osd.{osd}@{epoch}"))
            }
            _ => None,
        })
        .collect();
    out.push_str(&format!(
        "\n  OSDs seen marked down by watcher-1: {downs:?}"
    ));
    let fenced: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Observed(Observation::Fenced { monitor, count }) => {
                Some(format!("{monitor}: {count}"))
            }
            _ => None,
        })
        .collect();
    out.push_str(&format!("\n  fenced transactions counted: {fenced:?}"));
    if let Some(t) = pgs_took {
        out.push_str(&format!(
            "\n  every PG active {:.1} s after the last heal",
            t.as_secs_f64()
        ));
    }
    out
}

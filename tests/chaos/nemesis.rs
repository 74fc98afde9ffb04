//! Fault injection: carries out one schedule step on the real cluster — kill -9 of a monitor or
//! of its etcd member, SIGSTOP/SIGCONT, a partition in the network namespaces, a fake OSD
//! falling silent — records it in the history, heals it, and waits until the cluster is whole
//! again (every monitor and member healthy, one leader) before the next step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastblock_monitor::sim::Fleet;
use nix::sys::signal::Signal;

use crate::checker::{Rule, Violation};
use crate::common::{TestCluster, http_get, netns::Topology, process_alive};
use crate::history::{Event, Fault, History, Observation};
use crate::schedule::{Step, Target};

/// How long a healed cluster may take to be whole again.
const RECOVERY: Duration = Duration::from_secs(120);

/// How long a killed leader stays down at most while no other monitor answers as leader
/// (well past the failover bound; its return ends a stall that depends on it).
pub const FAILOVER_WAIT: Duration = Duration::from_secs(20);

const FENCED: &str = "fastblock_etcd_txn_failures_total{reason=\"fenced\"}";

/// The fault injector of one run.
pub struct Nemesis<'a> {
    pub cluster: &'a mut TestCluster,
    pub net: &'a Topology,
    pub history: &'a History,
    pub fleet: &'a Arc<Fleet>,
    pub runtime: &'a tokio::runtime::Handle,
    /// The fake OSDs the nemesis may crash (the workload never marks them out or in).
    pub crashable: Vec<u32>,
    /// The fenced-transaction count last seen per monitor (reset when it restarts).
    pub fenced: &'a mut HashMap<usize, f64>,
}

impl<'a> Nemesis<'a> {
    /// A nemesis for `cluster` in `net`, crashing only the fake OSDs in `crashable`.
    pub fn new(
        cluster: &'a mut TestCluster,
        net: &'a Topology,
        history: &'a History,
        fleet: &'a Arc<Fleet>,
        runtime: &'a tokio::runtime::Handle,
        crashable: Vec<u32>,
        fenced: &'a mut HashMap<usize, f64>,
    ) -> Nemesis<'a> {
        Nemesis {
            cluster,
            net,
            history,
            fleet,
            runtime,
            crashable,
            fenced,
        }
    }

    /// The gRPC address of monitor `i`: how the history names monitors.
    pub fn address(&self, i: usize) -> String {
        self.cluster.monitors[i].grpc.clone()
    }

    /// The serving leader (the cluster is whole between steps).
    pub fn leader(&self) -> usize {
        self.cluster.wait_leader(&[0, 1, 2], RECOVERY)
    }

    fn resolve(&self, target: Target) -> (usize, bool) {
        let leader = self.leader();
        match target {
            Target::Leader => (leader, true),
            Target::Standby { pick } => {
                let standbys: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
                (standbys[(pick % standbys.len() as u64) as usize], false)
            }
        }
    }

    /// Injects `step`, heals it, and waits until the cluster is whole again.
    pub fn run(&mut self, step: &Step) -> Result<(), Violation> {
        match *step {
            Step::KillMonitor {
                target,
                host_down,
                down_for,
            } => {
                let (i, was_leader) = self.resolve(target);
                let monitor = self.address(i);
                self.scrape_fenced();
                self.history.fault(Fault::Kill {
                    monitor: monitor.clone(),
                    was_leader,
                    host_down,
                });
                if host_down {
                    self.net.host_down(i);
                }
                self.cluster.kill9(i);
                self.forget(i);
                if was_leader {
                    self.wait_for_new_leader(&monitor);
                }
                std::thread::sleep(down_for);
                self.history.fault(Fault::Restart { monitor });
                self.net.heal();
                self.cluster.start(i);
            }
            Step::KillEtcd { target } => {
                let (i, was_leader) = self.resolve(target);
                let pid = self
                    .cluster
                    .etcd_pid(i)
                    .expect("a whole cluster runs every member");
                self.history.fault(Fault::KillEtcd {
                    monitor: self.address(i),
                    was_leader,
                });
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            Step::Pause {
                target,
                stopped_for,
            } => {
                let (i, was_leader) = self.resolve(target);
                let monitor = self.address(i);
                self.history.fault(Fault::Stop {
                    monitor: monitor.clone(),
                    was_leader,
                });
                self.cluster.signal(i, Signal::SIGSTOP);
                std::thread::sleep(stopped_for);
                self.history.fault(Fault::Continue { monitor });
                self.cluster.signal(i, Signal::SIGCONT);
            }
            Step::Partition { target, cut_for } => {
                let (i, was_leader) = self.resolve(target);
                let monitor = self.address(i);
                self.history.fault(Fault::Partition {
                    monitor: monitor.clone(),
                    was_leader,
                });
                self.net.isolate(i);
                std::thread::sleep(cut_for);
                self.history.fault(Fault::Heal { monitor });
                self.net.heal();
            }
            Step::CrashOsd { pick, silent_for } => {
                let osd = self.crashable[(pick % self.crashable.len() as u64) as usize];
                self.history.fault(Fault::CrashOsd { osd });
                self.fleet.kill(osd);
                std::thread::sleep(silent_for);
                self.history.fault(Fault::ReviveOsd { osd });
                self.revive(osd)?;
            }
        }
        self.settle()
    }

    /// Waits until a monitor other than `killed` answers a leader-only call (at most
    /// [`FAILOVER_WAIT`]; the checker judges how long the first write took).
    fn wait_for_new_leader(&self, killed: &str) {
        let since = self.history.now();
        let deadline = Instant::now() + FAILOVER_WAIT;
        while Instant::now() < deadline {
            let served = self.history.any_since(since, |e| {
                matches!(&e.event, Event::Ok { reply, .. }
                    if reply.answered_by != killed && !reply.answered_by.is_empty())
            });
            if served {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn revive(&self, osd: u32) -> Result<(), Violation> {
        let deadline = Instant::now() + RECOVERY;
        loop {
            match self.runtime.block_on(self.fleet.revive(osd)) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(Violation {
                        rule: Rule::NoRecovery,
                        detail: format!("osd.{osd} could not boot again within {RECOVERY:?}: {e}"),
                        entries: Vec::new(),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Waits until every etcd member answers healthy, one monitor serves as leader and both
    /// others are standbys that know it; then records new fenced transactions.
    pub fn settle(&mut self) -> Result<(), Violation> {
        let deadline = Instant::now() + RECOVERY;
        let mut last = String::new();
        loop {
            match self.whole() {
                Ok(()) => break,
                Err(why) if Instant::now() > deadline => {
                    let at = self.history.now();
                    return Err(Violation {
                        rule: Rule::NoRecovery,
                        detail: format!(
                            "the cluster was not whole {RECOVERY:?} after the last fault was healed (at {:.3}s): {why}",
                            at.as_secs_f64()
                        ),
                        entries: Vec::new(),
                    });
                }
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !last.is_empty() {
            self.history
                .fault(Fault::Note(format!("whole again (was: {last})")));
        }
        self.scrape_fenced();
        Ok(())
    }

    fn whole(&self) -> Result<(), String> {
        for (i, m) in self.cluster.monitors.iter().enumerate() {
            if !m.pid().is_some_and(process_alive) {
                return Err(format!("{} is not running", m.name));
            }
            let health = http_get(m.etcd_client_url.trim_start_matches("http://"), "/health");
            if !health.is_some_and(|(_, body)| body.contains("\"health\":\"true\"")) {
                return Err(format!("etcd member of {} not healthy", m.name));
            }
            let ready = self.cluster.readyz(i);
            if !ready.as_ref().is_some_and(|r| r["ready"] == true) {
                return Err(format!("{} not ready: {ready:?}", m.name));
            }
        }
        let leaders = (0..3)
            .filter(|&i| self.cluster.is_serving_leader(i))
            .count();
        if leaders != 1 {
            return Err(format!("{leaders} serving leaders"));
        }
        Ok(())
    }

    /// Forgets monitor `i`'s counters (it was stopped; a new process starts from zero).
    pub fn forget(&mut self, i: usize) {
        self.fenced.remove(&i);
    }

    /// Records every rise of a monitor's fenced-transaction counter.
    pub fn scrape_fenced(&mut self) {
        for i in 0..3 {
            if self.cluster.monitors[i].pid().is_none() {
                continue;
            }
            let count = self.cluster.metric(i, FENCED).unwrap_or(0.0);
            let seen = self.fenced.entry(i).or_insert(0.0);
            if count > *seen {
                *seen = count;
                self.history.observe(
                    "scraper",
                    Observation::Fenced {
                        monitor: self.cluster.monitors[i].grpc.clone(),
                        count,
                    },
                );
            }
        }
    }
}

//! `fakestartcluster`: runs a fleet of fake OSDs (`crate::sim`) that boot, heartbeat and play
//! the OSD side of the PG protocol, so `createpool` gives active PGs and killing a fake OSD
//! shows the whole down → out → remap → active cycle. A progress bar while the OSDs boot; then
//! a one-line summary every `-interval` until Ctrl-C or `-duration`. `-kill` and `-churn`
//! kill OSDs by themselves; stdin takes `kill ID`, `revive ID`, `status` and `quit`.
//! `-protocol=legacy` runs the OSDs over the framed protobuf protocol of the C++ OSDs
//! (`crate::sim::legacy`) instead of gRPC; the summary still comes from GetClusterStatus.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

use super::output::{emit, emit_json, health_name};
use super::{Ctx, Failure};
use crate::proto::monitor as api;
use crate::sim::{Fleet, FleetProtocol, FleetSpec, SimError, legacy};

/// How often the summary is printed when `-interval` is absent.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Heartbeat interval of the fake OSDs when `-heartbeat` is absent (the OSDs' default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);
const COMMANDS: &str = "kill ID, revive ID, status, quit";

/// Runs the fleet until Ctrl-C, SIGTERM, `-duration` or `quit` on stdin.
pub async fn start_cluster(ctx: &Ctx) -> Result<(), Failure> {
    let a = &ctx.args;
    let (osds, hosts) = match (a.osdcount, a.hostcount) {
        (Some(o), Some(h)) if o > 0 && h > 0 => (o, h),
        _ => {
            return Err(Failure::Usage(
                "fakestartcluster needs -osdcount and -hostcount above 0".to_string(),
            ));
        }
    };
    let heartbeat = a.heartbeat.unwrap_or(DEFAULT_HEARTBEAT);
    let interval = a.interval.unwrap_or(DEFAULT_INTERVAL);
    if heartbeat.is_zero() || interval.is_zero() || a.churn.is_some_and(|c| c.is_zero()) {
        return Err(Failure::Usage(
            "-heartbeat, -interval and -churn must be above 0".to_string(),
        ));
    }
    let protocol = a.protocol.unwrap_or_default();
    let racks = a.rackcount.unwrap_or(0);
    if protocol == FleetProtocol::Legacy && racks > 0 {
        return Err(Failure::Usage(
            "-rackcount needs -protocol=grpc: the legacy Boot carries no rack".to_string(),
        ));
    }
    let spec = FleetSpec {
        osds,
        hosts,
        racks,
        cores: a.cores.unwrap_or(FleetSpec::default().cores),
        prefix: a.prefix.clone().unwrap_or_else(|| "fake".to_string()),
        heartbeat_every: heartbeat,
        ..FleetSpec::default()
    };
    let stop = super::stopped(a.duration);
    tokio::pin!(stop);

    let bar = progress_bar(osds, ctx.json());
    let started = Instant::now();
    let booting = {
        let bar = bar.clone();
        let progress = move |done, _| bar.set_position(u64::from(done));
        let client = ctx.client.clone();
        let options = legacy::ConnOptions {
            reply_timeout: a.timeout,
            ..legacy::ConnOptions::default()
        };
        async move {
            match protocol {
                FleetProtocol::Grpc => Fleet::start(client, spec, progress).await,
                FleetProtocol::Legacy => {
                    Fleet::start_legacy(client.addresses(), options, spec, progress).await
                }
            }
        }
    };
    let fleet = tokio::select! {
        _ = &mut stop => {
            bar.finish_and_clear();
            return Ok(());
        }
        f = booting => f,
    };
    bar.finish_and_clear();
    let fleet = fleet.map_err(fleet_failure)?;

    let mut run = Runner {
        json: ctx.json(),
        client: ctx.client.clone(),
        fleet: fleet.clone(),
        started,
        victim: None,
        rng: super::osds::random_u64() | 1,
    };
    let first = fleet.osds().first().map_or(0, |o| o.id);
    let last = fleet.osds().last().map_or(0, |o| o.id);
    run.say(
        format!(
            "started {osds} fake OSDs (osd.{first}..osd.{last}) on {hosts} hosts in {:.1}s; \
             {}; stdin commands: {COMMANDS}",
            started.elapsed().as_secs_f64(),
            match protocol {
                FleetProtocol::Grpc => format!("heartbeat every {heartbeat:?}"),
                FleetProtocol::Legacy =>
                    format!("legacy protocol, cluster-map poll every {heartbeat:?}"),
            }
        ),
        json!({"event": "started", "osds": osds, "hosts": hosts, "first_id": first,
               "last_id": last, "protocol": protocol_name(protocol)}),
    )?;
    let token = CancellationToken::new();
    let running = tokio::spawn(fleet.clone().run(token.clone()));
    for id in &a.kill {
        run.kill(*id)?;
    }

    let mut summary = tokio::time::interval(interval);
    let mut churn = a
        .churn
        .map(|p| tokio::time::interval_at(tokio::time::Instant::now() + p, p));
    let mut commands = stdin_lines();
    let mut stdin_open = true;
    let result = loop {
        let step = tokio::select! {
            _ = &mut stop => break Ok(()),
            _ = summary.tick() => run.summary().await,
            _ = tick(&mut churn) => run.churn().await,
            line = commands.recv(), if stdin_open => match line {
                None => {
                    stdin_open = false;
                    Ok(true)
                }
                Some(l) => run.command(&l).await,
            },
        };
        match step {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    token.cancel();
    let _ = running.await;
    result?;
    run.finish()
}

/// The flag name of a protocol.
fn protocol_name(p: FleetProtocol) -> &'static str {
    FleetProtocol::NAMES
        .iter()
        .find(|(_, q)| *q == p)
        .map_or("grpc", |(n, _)| n)
}

/// A failed start of the fleet as fbclient reports it.
fn fleet_failure(e: SimError) -> Failure {
    Failure::Failed(format!("the fake OSDs could not start: {e}"))
}

fn progress_bar(osds: u32, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    // Drawn on stderr only when it is a terminal.
    let bar = ProgressBar::new(u64::from(osds));
    if let Ok(style) = ProgressStyle::with_template(
        "booting fake OSDs [{bar:40}] {pos}/{len} ({elapsed}, {per_sec})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Lines typed on stdin. A plain thread reads them: a blocking read cannot be cancelled, and
/// it must not hold up the exit. Reading in the background of a terminal fails (instead of
/// stopping the process) since SIGTTIN is ignored; the channel then just closes.
fn stdin_lines() -> mpsc::Receiver<String> {
    // SAFETY: SIG_IGN installs no handler code; only changes how the kernel treats SIGTTIN.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTTIN,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let (tx, rx) = mpsc::channel(16);
    let _ = std::thread::Builder::new()
        .name("fbclient-stdin".to_string())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    rx
}

/// The running fleet and what the commands need.
struct Runner {
    json: bool,
    client: Arc<crate::client::MonitorClient>,
    fleet: Arc<Fleet>,
    started: Instant,
    /// The OSD the last churn round killed.
    victim: Option<u32>,
    rng: u64,
}

impl Runner {
    fn say(&self, text: String, mut v: serde_json::Value) -> Result<(), Failure> {
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.json {
            v["elapsed_secs"] = json!((elapsed * 10.0).round() / 10.0);
            emit_json(&v)
        } else {
            emit(format!("[+{elapsed:.0}s] {text}"))
        }
    }

    fn kill(&self, id: u32) -> Result<(), Failure> {
        if self.fleet.kill(id) {
            self.say(
                format!("killed osd.{id}"),
                json!({"event": "killed", "osd": id}),
            )
        } else {
            self.say(
                format!("osd.{id} is not a live fake OSD of this fleet"),
                json!({"event": "error", "message": format!("osd.{id} is not a live fake OSD")}),
            )
        }
    }

    async fn revive(&self, id: u32) -> Result<(), Failure> {
        let dead = self.fleet.osds().iter().any(|o| o.id == id && !o.alive());
        if !dead {
            return self.say(
                format!("osd.{id} is not a killed fake OSD of this fleet"),
                json!({"event": "error", "message": format!("osd.{id} is not a killed fake OSD")}),
            );
        }
        match self.fleet.revive(id).await {
            Ok(()) => self.say(
                format!("revived osd.{id}"),
                json!({"event": "revived", "osd": id}),
            ),
            Err(e) => self.say(
                format!("revive of osd.{id} failed: {e}"),
                json!({"event": "error", "message": format!("revive of osd.{id} failed: {e}")}),
            ),
        }
    }

    /// Runs one stdin command; false means quit.
    async fn command(&mut self, line: &str) -> Result<bool, Failure> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = || {
            words
                .get(1)
                .and_then(|w| w.trim_start_matches("osd.").parse::<u32>().ok())
        };
        match (words.first().copied(), id()) {
            (None, _) => {}
            (Some("quit" | "exit" | "q"), _) => return Ok(false),
            (Some("status"), _) => self.summary().await.map(|_| ())?,
            (Some("kill"), Some(id)) => self.kill(id)?,
            (Some("revive"), Some(id)) => self.revive(id).await?,
            (Some(other), _) => self.say(
                format!("cannot do '{}' (commands: {COMMANDS})", line.trim()),
                json!({"event": "error", "message": format!("unknown command '{other}'")}),
            )?,
        }
        Ok(true)
    }

    /// One churn round: revive the previous victim, kill a random live OSD.
    async fn churn(&mut self) -> Result<bool, Failure> {
        let mut done = Vec::new();
        let revived = self.victim.take();
        if let Some(prev) = revived {
            match self.fleet.revive(prev).await {
                Ok(()) => done.push(format!("revived osd.{prev}")),
                Err(e) => done.push(format!("revive of osd.{prev} failed: {e}")),
            }
        }
        let live: Vec<u32> = self
            .fleet
            .osds()
            .iter()
            .filter(|o| o.alive() && Some(o.id) != revived)
            .map(|o| o.id)
            .collect();
        // xorshift64: a different victim each round, no dependency for it.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if !live.is_empty() {
            let id = live[(self.rng % live.len() as u64) as usize];
            if self.fleet.kill(id) {
                self.victim = Some(id);
                done.push(format!("killed osd.{id}"));
            }
        }
        self.say(
            format!("churn: {}", done.join(", ")),
            json!({"event": "churn", "done": done, "killed": self.victim, "revived": revived}),
        )?;
        Ok(true)
    }

    /// Prints the one-line summary from GetClusterStatus.
    async fn summary(&self) -> Result<bool, Failure> {
        let status = self
            .client
            .get_cluster_status(api::GetClusterStatusRequest {})
            .await;
        let alive = self.fleet.osds().iter().filter(|o| o.alive()).count();
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                self.say(
                    format!("status unavailable: {e}"),
                    json!({"event": "error", "message": format!("status unavailable: {e}")}),
                )?;
                return Ok(true);
            }
        };
        let count = |bit: api::PgStateBit| -> u64 {
            s.pg_states
                .iter()
                .filter(|p| p.state & bit as u32 != 0)
                .map(|p| p.count)
                .sum()
        };
        let (active, undersize, down, remapped, creating) = (
            count(api::PgStateBit::Active),
            count(api::PgStateBit::Undersize),
            count(api::PgStateBit::Down),
            count(api::PgStateBit::Remapped),
            count(api::PgStateBit::Creating),
        );
        self.say(
            format!(
                "osds {}: {} up, {} in | pgs {}: {active} active, {undersize} undersize, \
                 {down} down, {remapped} remapped, {creating} creating | {} | fleet: {alive}/{} alive",
                s.osds_total,
                s.osds_up,
                s.osds_in,
                s.pgs,
                health_name(s.health),
                self.fleet.osds().len()
            ),
            json!({
                "event": "summary",
                "osds": {"total": s.osds_total, "up": s.osds_up, "in": s.osds_in},
                "pgs": {"total": s.pgs, "active": active, "undersize": undersize, "down": down,
                        "remapped": remapped, "creating": creating},
                "health": health_name(s.health),
                "fleet": {"osds": self.fleet.osds().len(), "alive": alive},
            }),
        )?;
        Ok(true)
    }

    fn finish(&self) -> Result<(), Failure> {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &self.fleet.stats;
        let (beats, beat_errors, leaders, changes, errors) = (
            st.heartbeats.load(Relaxed),
            st.heartbeat_errors.load(Relaxed),
            st.leader_reports.load(Relaxed),
            st.changes_finished.load(Relaxed),
            st.errors.load(Relaxed),
        );
        let (reconnects, reboots) = (st.reconnects.load(Relaxed), st.reboots.load(Relaxed));
        let links = if reconnects + reboots > 0 {
            format!(", {reconnects} reconnects, {reboots} boots again")
        } else {
            String::new()
        };
        self.say(
            format!(
                "stopped: {beats} heartbeats ({beat_errors} failed), {leaders} leader reports, \
                 {changes} membership changes finished, {errors} errors{links}; the fake OSDs \
                 are now silent and will be marked down"
            ),
            json!({
                "event": "stopped", "heartbeats": beats, "heartbeat_errors": beat_errors,
                "leader_reports": leaders, "changes_finished": changes, "errors": errors,
                "reconnects": reconnects, "reboots": reboots,
                "protocol": protocol_name(self.fleet.protocol()),
            }),
        )
    }
}

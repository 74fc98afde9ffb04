//! `fbclient`, the command-line client of the fastblock monitors: parses the command line
//! (Go-style `-op=createpool -poolname=rbd` and `--op createpool --poolname rbd`), finds the
//! monitors, runs one operation over the client library and prints a table or JSON. Failures
//! print exactly one line `fbclient: <reason>` on stderr: exit 1 when the operation failed,
//! 2 when the command line is wrong. docs/fbclient.md is the operator's reference.
//!
//! One file per concern: `args` (flags), `ops` (the op table: each op with its handler),
//! `output` (tables, sizes, names),
//! `json` (the `--json` shapes), `cluster` (leader, status, health, flags, osdtree), `osds`,
//! `pools`, `images`, `maps` (the map reads), `watch` (the map watches), `events` (the event
//! log) and `fake` (the fake
//! OSD fleet).

mod args;
mod backup;
mod cluster;
mod events;
mod fake;
mod images;
mod json;
mod maps;
mod ops;
mod osds;
mod output;
mod pools;
mod watch;
mod webhooks;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub use args::{Args, Parsed};
pub use ops::{OPS, OpSpec};
pub use output::Output;

use crate::client::{ClientError, ClientOptions, MonitorClient};
use crate::config::{Config, Overrides};

/// The monitor asked when no other is named.
pub const DEFAULT_MONITOR: &str = "127.0.0.1:3333";

/// Why fbclient stops without success.
#[derive(Debug)]
pub enum Failure {
    /// The command line is wrong (missing or invalid flag): exit code 2.
    Usage(String),
    /// The operation failed (the monitor refused, could not be reached, ...): exit code 1.
    Failed(String),
    /// stdout was closed by the reader (e.g. `| head`): stop quietly.
    Closed,
}

impl Failure {
    /// Prints the one-line reason and returns the exit code.
    pub fn report(&self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("fbclient: {m}");
                ExitCode::from(2)
            }
            Failure::Failed(m) => {
                eprintln!("fbclient: {}", m.replace('\n', " "));
                ExitCode::FAILURE
            }
            Failure::Closed => ExitCode::SUCCESS,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::Closed
        } else {
            Failure::Failed(format!("cannot write the output: {e}"))
        }
    }
}

/// What one run of fbclient works with.
pub struct Ctx {
    /// The monitors, leader-following.
    pub client: Arc<MonitorClient>,
    /// The command line.
    pub args: Args,
}

impl Ctx {
    /// True with `--json`.
    pub fn json(&self) -> bool {
        self.args.json
    }

    /// Text or JSON, as asked; the closures build only the one that is printed.
    pub fn output(
        &self,
        json: impl FnOnce() -> serde_json::Value,
        text: impl FnOnce() -> String,
    ) -> Output {
        if self.json() {
            Output::Json(json())
        } else {
            Output::Text(text())
        }
    }
}

/// What the command line asks for.
enum Action {
    Op(&'static OpSpec),
    Flags {
        set: Option<String>,
        unset: Option<String>,
    },
}

/// Runs fbclient with these arguments (`argv[0]` first) and returns the exit code.
pub fn main_with(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::parse_argv(argv) {
        Ok(Parsed::Run(a)) => *a,
        Ok(Parsed::Printed) => return ExitCode::SUCCESS,
        Err(f) => return f.report(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Failure::Failed(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = runtime.block_on(run(args));
    // Nothing left to wait for: a stdin reader blocked in read must not delay the exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

/// Runs the operation the arguments ask for.
pub async fn run(args: Args) -> Result<(), Failure> {
    let action = action(&args)?;
    let options = ClientOptions {
        deadline: args.timeout,
        attempt_timeout: args.timeout,
        ..ClientOptions::default()
    };
    let client = Arc::new(MonitorClient::new(&monitors(&args)?, options)?);
    let ctx = Ctx { client, args };
    let output = match action {
        Action::Flags { set, unset } => Some(cluster::flags(&ctx, set, unset).await?),
        Action::Op(spec) => (spec.run)(&ctx).await?,
    };
    if let Some(o) = output {
        o.print()?;
    }
    Ok(())
}

/// Decides what to run, checking the flags before any monitor is asked.
fn action(args: &Args) -> Result<Action, Failure> {
    let flags = args.set.is_some() || args.unset.is_some();
    match &args.op {
        Some(_) if flags => Err(Failure::Usage(
            "give either -op or -set/-unset, not both".to_string(),
        )),
        Some(op) => Ok(Action::Op(args.check(op)?)),
        None if flags => {
            for name in args.set.iter().chain(&args.unset) {
                args::parse_flag(name)?;
            }
            Ok(Action::Flags {
                set: args.set.clone(),
                unset: args.unset.clone(),
            })
        }
        None => Err(Failure::Usage(
            "no operation: give -op=OP or -set/-unset=FLAG (see --help)".to_string(),
        )),
    }
}

/// The monitors to ask: `--mon` (or $FASTBLOCK_MON), else the config file's
/// advertise_address, else [`DEFAULT_MONITOR`].
fn monitors(args: &Args) -> Result<Vec<String>, Failure> {
    if let Some(list) = &args.mon {
        let list = MonitorClient::parse_list(list);
        if list.is_empty() {
            return Err(Failure::Usage("-mon: no monitor address given".to_string()));
        }
        return Ok(list);
    }
    if let Some(path) = &args.conf {
        let c = Config::load(path, &Overrides::default())
            .map_err(|e| Failure::Failed(e.to_string()))?;
        return Ok(vec![c.advertise_address]);
    }
    Ok(vec![DEFAULT_MONITOR.to_string()])
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, or for `duration` when given.
pub(crate) async fn stopped(duration: Option<Duration>) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = timer => {}
    }
}

/// The first item of a watch that retries for ever: it must come within `timeout` (else "no
/// WHO reachable"); None when stopped first.
pub(crate) async fn first_within<T>(
    timeout: Duration,
    who: &str,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    first: impl std::future::Future<Output = Result<T, crate::client::ClientError>>,
) -> Result<Option<T>, Failure> {
    tokio::select! {
        _ = stop.as_mut() => Ok(None),
        r = tokio::time::timeout(timeout, first) => match r {
            Ok(item) => Ok(Some(item?)),
            Err(_) => Err(Failure::Failed(format!("no {who} reachable within {timeout:?}"))),
        },
    }
}

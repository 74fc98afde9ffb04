//! `fbclient`: the command-line client of the fastblock monitors.
//! Go-style flags (`-op=leader`) and ordinary ones (`--op leader`) both work.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fastblock_monitor::client::{ClientOptions, MonitorClient};
use fastblock_monitor::config::{Config, Overrides};
use fastblock_monitor::proto::monitor as api;
use fastblock_monitor::{VERSION, cli};

/// Operations: leader (who leads, and every monitor's role).
#[derive(Parser, Debug)]
#[command(name = "fbclient", version = VERSION)]
struct Args {
    /// The operation to run.
    #[arg(long, value_name = "OP")]
    op: String,
    /// Monitors to talk to, `host:port,host:port`.
    #[arg(long, env = "FASTBLOCK_MON", value_name = "ADDRS")]
    mon: Option<String>,
    /// Read the monitor address from this monitor.toml (its advertise_address).
    #[arg(long, value_name = "FILE")]
    conf: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Give up after this long (e.g. "10s").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse_from(cli::normalize_go_flags(std::env::args_os()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("fbclient: {message}");
    ExitCode::FAILURE
}

fn monitors(args: &Args) -> Result<Vec<String>, String> {
    if let Some(list) = &args.mon {
        return Ok(MonitorClient::parse_list(list));
    }
    if let Some(path) = &args.conf {
        let c = Config::load(path, &Overrides::default()).map_err(|e| e.to_string())?;
        return Ok(vec![c.advertise_address]);
    }
    Ok(vec!["127.0.0.1:3333".to_string()])
}

async fn run(args: Args) -> Result<(), String> {
    let options = ClientOptions {
        deadline: args.timeout,
        attempt_timeout: args.timeout,
        ..ClientOptions::default()
    };
    let client = MonitorClient::new(&monitors(&args)?, options).map_err(|e| e.to_string())?;
    match args.op.as_str() {
        "leader" => leader(&client, args.json).await,
        other => Err(format!("unknown op '{other}' (known: leader)")),
    }
}

async fn leader(client: &MonitorClient, json: bool) -> Result<(), String> {
    let r = client.get_leader().await.map_err(|e| e.to_string())?;
    let role = |m: &api::MonitorInfo| match api::MonitorRole::try_from(m.role) {
        Ok(api::MonitorRole::Leader) => "leader",
        _ => "standby",
    };
    if json {
        let monitors: Vec<_> = r
            .monitors
            .iter()
            .map(|m| serde_json::json!({"name": m.name, "address": m.address, "role": role(m), "version": m.version}))
            .collect();
        let out = serde_json::json!({
            "leader": r.leader.as_ref().map(|l| serde_json::json!({"name": l.name, "address": l.address})),
            "leader_epoch": r.leader_epoch,
            "monitors": monitors,
        });
        println!("{out}");
        return Ok(());
    }
    match &r.leader {
        Some(l) => println!(
            "leader: {} ({}) epoch {}",
            l.name, l.address, r.leader_epoch
        ),
        None => println!("leader: none (election in progress)"),
    }
    println!("{:<16} {:<24} {:<8} VERSION", "NAME", "ADDRESS", "ROLE");
    for m in &r.monitors {
        println!(
            "{:<16} {:<24} {:<8} {}",
            m.name,
            m.address,
            role(m),
            m.version
        );
    }
    Ok(())
}

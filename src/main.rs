//! `fastblock-mon`: the monitor daemon. See README.md for configuration and operation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fastblock_monitor::config::{Config, Overrides};
use fastblock_monitor::{VERSION, cli, daemon, logging, migrate};

/// The fastblock monitor: cluster metadata, placement and failure detection, with an embedded
/// etcd member. Go-style flags (`-conf=FILE`) are accepted too.
#[derive(Parser, Debug)]
#[command(name = "fastblock-mon", version = VERSION)]
struct Args {
    /// The configuration file.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/fastblock/monitor.toml"
    )]
    conf: PathBuf,
    /// Validate the configuration file and exit.
    #[arg(long)]
    check_config: bool,
    /// Override `data_dir` from the file.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Override `log_path` from the file.
    #[arg(long, value_name = "FILE")]
    log_path: Option<PathBuf>,
    /// Run only this monitor's embedded etcd member: no election, no serving. For an import or
    /// a restore on a cluster of several monitors (docs/backup-restore.md).
    #[arg(long)]
    maintenance: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Import a Go fastblock monitor's state from its etcd (docs/migration.md): prints a
    /// report; unless --dry-run, writes the state into this monitor's etcd, every id, member
    /// and version kept. Stop the Go monitors and ours first.
    #[command(name = "import-go")]
    ImportGo {
        /// The Go monitor's etcd client endpoints, comma-separated (left read-only).
        #[arg(
            long = "from-etcd",
            value_name = "ENDPOINTS",
            value_delimiter = ',',
            required = true
        )]
        from_etcd: Vec<String>,
        /// Read, check and report only.
        #[arg(long)]
        dry_run: bool,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        /// Delete the cluster state our etcd holds first.
        #[arg(long)]
        force: bool,
        /// Import although the report lists blocking anomalies (each with its fallback).
        #[arg(long)]
        accept_anomalies: bool,
    },
    /// Write a backup file (`fbclient -op=backup`) into an empty etcd, every epoch raised.
    /// Stop the monitors first (or run them with --maintenance); start them again after.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Delete the cluster state the target holds first.
        #[arg(long)]
        force: bool,
        /// How far every epoch is raised above the backup's.
        #[arg(long, value_name = "N", default_value_t = fastblock_monitor::migrate::restore::DEFAULT_EPOCH_JUMP)]
        epoch_jump: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse_from(cli::normalize_go_flags(std::env::args_os()));
    let overrides = Overrides {
        data_dir: args.data_dir,
        log_path: args.log_path,
    };
    let config = match Config::load(&args.conf, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fastblock-mon: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("{}: configuration OK", args.conf.display());
        return ExitCode::SUCCESS;
    }
    if let Some(command) = args.command {
        return run_command(config, command);
    }
    let log_file = match logging::init(config.log_level, config.log_path.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "fastblock-mon: cannot open log_path {}: {e}",
                config
                    .log_path
                    .as_deref()
                    .unwrap_or_else(|| "".as_ref())
                    .display()
            );
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let run = async {
        if args.maintenance {
            daemon::run_maintenance(config).await
        } else {
            daemon::run(config, log_file).await
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fastblock-mon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A one-shot command: runs, prints what it did, exits 0 on success and 1 with one line on
/// stderr otherwise. Only errors are logged (to stderr).
fn run_command(config: Config, command: Sub) -> ExitCode {
    let _ = logging::init(fastblock_monitor::config::LogLevel::Error, None);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        match command {
            Sub::ImportGo {
                from_etcd,
                dry_run,
                json,
                force,
                accept_anomalies,
            } => {
                let options = migrate::run::ImportOptions {
                    from: from_etcd,
                    dry_run,
                    json,
                    force,
                    accept_anomalies,
                };
                migrate::run::import_go(&config, &options).await
            }
            Sub::Restore {
                file,
                force,
                epoch_jump,
            } => {
                let options = migrate::run::RestoreOptions { force, epoch_jump };
                migrate::run::restore(&config, &file, &options).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastblock-mon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded runtime; None (after saying why) when it cannot start.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("fastblock-mon: cannot start the async runtime: {e}");
            None
        }
    }
}

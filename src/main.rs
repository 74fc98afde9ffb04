//! `fastblock-mon`: the monitor daemon. See README.md for configuration and operation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fastblock_monitor::config::{Config, Overrides};
use fastblock_monitor::{VERSION, cli, daemon, logging};

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fastblock-mon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(config, log_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fastblock-mon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

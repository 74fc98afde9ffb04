//! The `fastblock-mon restore` and `fastblock-mon import-go` commands: the target etcd (the
//! configured one; this host's embedded member is started for the duration when nothing runs
//! it), the checks before writing, the write, and what is printed.

use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::backup::read_backup;
use super::restore::{Raised, StateSummary, build_state, decode_entries, raise_epochs};
use super::writer::MaintenanceWriter;
use crate::cluster::{BlobKey, ClusterState};
use crate::config::Config;
use crate::etcd::Etcd;
use crate::etcd::embedded::EmbeddedEtcd;
use crate::metrics::Metrics;

/// The etcd a command writes to, and the embedded member it started (if any).
pub struct Target {
    pub etcd: Etcd,
    embedded: Option<EmbeddedEtcd>,
}

impl Target {
    /// Connects to the configured etcd. With an embedded member configured and nothing
    /// listening on its client URL, starts the member here (a standalone monitor's etcd, or
    /// this host's member while the others run `fastblock-mon --maintenance`).
    pub async fn open(config: &Config) -> anyhow::Result<Target> {
        let own = config.etcd.own_member_url();
        let mut embedded = None;
        if let (Some(cfg), Some(url)) = (&config.etcd.embedded, &own)
            && !listening(url).await
        {
            eprintln!(
                "starting this host's embedded etcd member ({}, data in {})",
                cfg.name,
                cfg.data_dir.display()
            );
            embedded = Some(
                EmbeddedEtcd::start(cfg.clone(), Metrics::new(), CancellationToken::new())
                    .await
                    .context("starting the embedded etcd member")?,
            );
        }
        let etcd = Etcd::connect(&config.etcd.endpoints, own.as_deref())
            .await
            .context("cannot create the etcd client")?;
        Ok(Target { etcd, embedded })
    }

    /// Stops the member this command started.
    pub async fn close(self) {
        if let Some(e) = self.embedded {
            e.stop().await;
        }
    }
}

/// Whether something accepts TCP at an etcd client URL (`http://host:port`).
async fn listening(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect((host, port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Options of `fastblock-mon restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub force: bool,
    pub epoch_jump: u64,
}

/// `fastblock-mon restore FILE`: checks the whole file before touching etcd, then writes.
pub async fn restore(config: &Config, file: &Path, o: &RestoreOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let backup = read_backup(&data).with_context(|| format!("{} is refused", file.display()))?;
    drop(data);
    let keys = config.keys();
    let mut backup = backup;
    let decoded = decode_entries(&backup.entries, &keys)
        .with_context(|| format!("{} is refused", file.display()))?;
    // The raw entries are decoded: only the state is held from here on.
    backup.entries = Vec::new();
    let blobs = decoded.blobs;
    let mut records = decoded.records;
    let raised = raise_epochs(&mut records, o.epoch_jump);
    let (state, garbage) =
        build_state(records).with_context(|| format!("{} is refused", file.display()))?;
    println!(
        "backup {}: read at etcd revision {} by {} (fastblock-mon {}), sha256 {}",
        file.display(),
        backup.header.revision,
        crate::text::shown(&backup.header.monitor),
        crate::text::shown(&backup.header.monitor_version),
        backup.digest_hex()
    );
    print_raised(&raised, o.epoch_jump);
    if !garbage.is_empty() {
        println!(
            "{} records belonging to no pool (left by an interrupted change) are not restored",
            garbage.len()
        );
    }
    let target = Target::open(config).await?;
    let result = write(config, &target, "restore", &state, &blobs, o.force).await;
    target.close().await;
    result?;
    println!(
        "restored: {} in {:.1}s",
        StateSummary::of(&state),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_raised(r: &Raised, jump: u64) {
    println!(
        "epochs raised by {jump}: osdmap {} -> {}, and the epochs of {} pools (clients that saw later epochs resynchronise)",
        r.osdmap_from, r.osdmap_to, r.pools
    );
}

/// Takes the lead, checks the target is empty (or wipes it with `force`), writes the state.
pub async fn write(
    config: &Config,
    target: &Target,
    operation: &str,
    state: &ClusterState,
    blobs: &[(BlobKey, Vec<u8>)],
    force: bool,
) -> anyhow::Result<()> {
    let writer = MaintenanceWriter::take_over(
        target.etcd.clone(),
        config.keys(),
        config.term.limits,
        config.election.lease_ttl,
        operation,
    )
    .await?;
    let result = async {
        let contents = writer.contents().await?;
        if contents.keys > 0 || contents.interrupted {
            if !force {
                bail!(
                    "the target etcd already holds cluster state under {} ({} keys{}); refusing to overwrite it without --force",
                    config.etcd.prefix,
                    contents.keys,
                    if contents.interrupted {
                        ", and an interrupted import or restore"
                    } else {
                        ""
                    }
                );
            }
            println!(
                "--force: deleting the {} keys under {} first",
                contents.keys, config.etcd.prefix
            );
            writer.wipe().await?;
        }
        let bar = progress_bar();
        let stats = writer
            .write_state(state, blobs, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await?;
        bar.finish_and_clear();
        println!(
            "wrote {} records in {} transactions ({:.1} MiB)",
            stats.records,
            stats.transactions,
            stats.bytes as f64 / (1 << 20) as f64
        );
        Ok(())
    }
    .await;
    writer.finish().await;
    result
}

/// A progress bar on a terminal; hidden otherwise (scripts and logs get the summary lines).
fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "writing {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The key prefixes the Go monitor writes (it uses no common prefix).
const GO_PREFIXES: &[&str] = &["/osd/", "/config/", "/cluster/"];
/// Keys per page read from the Go monitor's etcd (a pool value can be 1.5 MiB).
const GO_PAGE: i64 = 64;

/// Options of `fastblock-mon import-go`.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The Go monitor's etcd client endpoints.
    pub from: Vec<String>,
    pub dry_run: bool,
    pub json: bool,
    pub force: bool,
    pub accept_anomalies: bool,
}

/// `fastblock-mon import-go`: reads the Go monitor's etcd at one revision, converts and
/// reports; unless `dry_run`, writes the state into our etcd like a restore (no epoch raised:
/// every version is kept as the Go monitor stored it, so no OSD sees one go back).
pub async fn import_go(config: &Config, o: &ImportOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let source = read_go_source(&o.from).await?;
    let read_in = started.elapsed();
    let converted =
        super::go::convert(&source).context("the Go monitor's state cannot be imported")?;
    drop(source);
    let report = &converted.report;
    if o.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if o.dry_run {
        eprintln!(
            "dry run: nothing written (read in {:.1}s, converted in {:.1}s)",
            read_in.as_secs_f64(),
            (started.elapsed() - read_in).as_secs_f64()
        );
        return Ok(());
    }
    if report.has_blocking() && !o.accept_anomalies {
        bail!(
            "{} blocking anomalies (listed above): correct the source, or pass --accept-anomalies to import with the fallback each one names",
            report.blocking().count()
        );
    }
    let (state, garbage) = ClusterState::from_records(converted.records)
        .map_err(|e| anyhow::anyhow!("the converted state is not valid (a converter bug): {e}"))?;
    if !garbage.is_empty() {
        bail!(
            "the converted state has {} records that belong to nothing (a converter bug)",
            garbage.len()
        );
    }
    let target = Target::open(config).await?;
    let result = write(
        config,
        &target,
        "import-go",
        &state,
        &converted.blobs,
        o.force,
    )
    .await;
    target.close().await;
    result?;
    eprintln!(
        "imported: {} in {:.1}s; start the monitors now",
        StateSummary::of(&state),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every key the Go monitor writes, read at one revision of its etcd.
async fn read_go_source(endpoints: &[String]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use etcd_client::{ConnectOptions, GetOptions};
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    let client = etcd_client::Client::connect(endpoints, Some(options))
        .await
        .with_context(|| {
            format!(
                "cannot reach the Go monitor's etcd at {}",
                endpoints.join(",")
            )
        })?;
    let mut kv = client.kv_client().max_decoding_message_size(256 << 20);
    let mut revision = 0;
    let mut out = Vec::new();
    for prefix in GO_PREFIXES {
        let end = crate::etcd::keys::prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(GO_PAGE);
            if revision != 0 {
                opts = opts.with_revision(revision);
            }
            let mut resp = kv
                .get(from.clone(), Some(opts))
                .await
                .with_context(|| format!("reading {prefix} from the Go monitor's etcd"))?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let last = kvs.last().map(|kv| kv.key().to_vec());
            for kv in kvs {
                let (k, v) = kv.into_key_value();
                out.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
            match (more, last) {
                (true, Some(mut next)) => {
                    next.push(0);
                    from = next;
                }
                _ => break,
            }
        }
    }
    eprintln!(
        "read {} keys from the Go monitor's etcd at revision {revision}",
        out.len()
    );
    Ok(out)
}

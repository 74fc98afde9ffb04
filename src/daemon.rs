//! Wires one monitor process together and runs it until SIGTERM/SIGINT.
//!
//! Start: bind the gRPC and HTTP ports and the raw protocol's port when enabled (fail fast if
//! taken), start serving (standby answers; raw connections are forwarded to the leader), start
//! the embedded etcd member and wait for it, then campaign. Stop, in this order: resign
//! leadership, stop serving, stop the embedded etcd member.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cluster::{EventBody, EventType, command};
use crate::config::Config;
use crate::etcd::embedded::{EmbeddedEtcd, EmbeddedEtcdError};
use crate::etcd::{Etcd, Store};
use crate::event_log::EventLog;
use crate::leadership::{ElectionSettings, Leadership};
use crate::listener::{self, ConnLimits, Listener};
use crate::logging::LogFile;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::proto::monitor::monitor_server::MonitorServer;
use crate::proto::store::MonitorRecord;
use crate::service::limits::{LARGEST, RequestLimits};
use crate::service::{MonitorService, WithWatchRoute};
use crate::{VERSION, http, legacy, observer, term, timing};

/// A leader that stops records `monitor.stepped_down` before it resigns (best effort, bounded:
/// a leader that cannot commit any more just resigns; a crash records nothing, and the next
/// leader's `monitor.leader_elected` tells the story).
async fn record_step_down(node: &Node) {
    let Some(serving) = node.serving() else {
        return;
    };
    let event = EventBody::monitor(
        EventType::MonitorSteppedDown,
        &node.me.name,
        serde_json::json!({
            "monitor": node.me.name,
            "leader_epoch": serving.term.epoch.0,
            "reason": "stopping",
        }),
    );
    let recorded = tokio::time::timeout(
        timing::STEP_DOWN_EVENT_TIMEOUT,
        serving.propose(command::RecordEvents(vec![event])),
    )
    .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::warn!("could not record the step-down event; resigning anyway");
    }
}

/// Runs the monitor until it is told to stop. Errors are start-up failures.
pub async fn run(config: Config, log_file: Option<Arc<LogFile>>) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let grpc_limits = connection_limits(config.listener);

    let grpc_listener = TcpListener::bind(config.grpc_bind())
        .await
        .with_context(|| format!("cannot listen for gRPC on {} (port)", config.grpc_bind()))?;
    let http_listener = TcpListener::bind(config.http_bind())
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (prometheus_port)",
                config.http_bind()
            )
        })?;
    let raw_listener = match config.raw_bind() {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen for the raw protocol on {addr} (raw_monitor_port)")
        })?),
        None => None,
    };

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), log_file);
    spawn_memory_trim(shutdown.clone());

    let keys = config.keys();
    // With several endpoints listed, this monitor's own member is tried first.
    let own_member = config.etcd.own_member_url();
    let client = Etcd::connect(&config.etcd.endpoints, own_member.as_deref())
        .await
        .context("cannot create the etcd client")?;
    let me = MonitorRecord {
        name: config.hostname.clone(),
        grpc_address: config.advertise_address.clone(),
        http_address: config.advertise_http_address(),
        raw_address: config.advertise_raw_address(),
        version: VERSION.to_string(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };

    let background = CancellationToken::new();
    let view = observer::spawn(client.clone(), keys.clone(), background.clone());
    let store = Store::new(client.clone(), keys.clone(), metrics.clone());
    let events = EventLog::new(store.events());
    events.spawn(background.clone());
    let node = Arc::new(Node::new(
        me.clone(),
        metrics.clone(),
        store.clone(),
        config.etcd.expected_monitors(),
        config.watch,
        events,
        view,
    ));
    let (health, health_service) = tonic_health::server::health_reporter();

    let grpc_stop = CancellationToken::new();
    // The shared port: gRPC, and the framed protocol of the existing fastblock components.
    let incoming = legacy::framed::split(
        Listener::new(grpc_listener, grpc_limits, "grpc", metrics.clone()),
        legacy::framed::FramedFront::new(node.clone(), config.legacy),
        grpc_stop.clone(),
    );
    let grpc = tokio::spawn(serve_grpc(
        incoming,
        listener::http2_keepalive_every(config.listener.idle_timeout),
        node.clone(),
        health_service,
        grpc_stop.clone(),
    ));
    let http_stop = CancellationToken::new();
    let http_limits = ConnLimits {
        max_connections: HTTP_MAX_CONNECTIONS,
        ..config.listener
    };
    let http = tokio::spawn(http::serve(
        Listener::new(http_listener, http_limits, "http", metrics.clone()),
        node.clone(),
        http_stop.clone(),
    ));
    let raw_stop = CancellationToken::new();
    let raw = raw_listener.map(|tcp| {
        tokio::spawn(legacy::raw::serve(
            Listener::new(
                tcp,
                grpc_limits,
                legacy::raw::server::PROTOCOL,
                metrics.clone(),
            ),
            node.clone(),
            raw_stop.clone(),
        ))
    });
    tracing::info!(
        name = %config.hostname,
        grpc = %config.grpc_bind(),
        http = %config.http_bind(),
        raw = %config.raw_bind().map_or_else(|| "disabled".to_string(), |a| a.to_string()),
        advertise = %config.advertise_address,
        legacy_framed = config.legacy.framed,
        "listening"
    );

    let embedded = match &config.etcd.embedded {
        Some(cfg) => {
            match EmbeddedEtcd::start(cfg.clone(), metrics.clone(), shutdown.clone()).await {
                Ok(e) => Some(e),
                Err(e) => {
                    grpc_stop.cancel();
                    http_stop.cancel();
                    raw_stop.cancel();
                    background.cancel();
                    // A stop asked for while etcd was starting is a clean stop, not a failure.
                    if matches!(e, EmbeddedEtcdError::Cancelled) {
                        tracing::info!("stopped during start-up");
                        return Ok(());
                    }
                    return Err(anyhow::Error::new(e).context("embedded etcd"));
                }
            }
        }
        None => {
            tracing::info!(endpoints = ?config.etcd.endpoints, "using an external etcd cluster");
            metrics.external_etcd();
            None
        }
    };

    let leadership = Leadership::spawn(
        client.clone(),
        ElectionSettings {
            keys: keys.clone(),
            lease_ttl: config.election.lease_ttl,
            me,
        },
        metrics.clone(),
    );
    let terms_stop = CancellationToken::new();
    let terms = tokio::spawn(term::run_terms(
        node.clone(),
        store,
        config.term,
        leadership.role(),
        health,
        terms_stop.clone(),
    ));
    notify_systemd(sd_notify::NotifyState::Ready);
    tracing::info!("monitor started; campaigning for leadership");

    shutdown.cancelled().await;
    record_step_down(&node).await;
    tracing::info!("stopping: resigning leadership");
    notify_systemd(sd_notify::NotifyState::Stopping);
    if tokio::time::timeout(
        timing::RESIGN_AND_STOP_TIMEOUT,
        leadership.resign_and_stop(),
    )
    .await
    .is_err()
    {
        tracing::warn!(
            "resigning took longer than {:?}; continuing the stop",
            timing::RESIGN_AND_STOP_TIMEOUT
        );
    }
    terms_stop.cancel();
    let _ = terms.await;

    tracing::info!("stopping: closing the gRPC, HTTP and raw protocol servers");
    grpc_stop.cancel();
    http_stop.cancel();
    raw_stop.cancel();
    background.cancel();
    match tokio::time::timeout(timing::SHUTDOWN_DRAIN, grpc).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
        Err(_) => tracing::warn!("in-flight gRPC calls did not finish in time"),
        _ => {}
    }
    let _ = tokio::time::timeout(timing::SHUTDOWN_DRAIN, http).await;
    if let Some(raw) = raw {
        let _ = tokio::time::timeout(timing::SHUTDOWN_DRAIN, raw).await;
    }

    if let Some(e) = embedded {
        tracing::info!("stopping: embedded etcd");
        e.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `--maintenance`: runs this monitor's embedded etcd member alone (no election, no serving)
/// until SIGTERM/SIGINT, so that an import or a restore run on another host has the etcd
/// cluster's quorum while no monitor serves.
pub async fn run_maintenance(config: Config) -> anyhow::Result<()> {
    let Some(cfg) = config.etcd.embedded.clone() else {
        anyhow::bail!(
            "--maintenance runs this monitor's embedded etcd member, and embedded_etcd = false: with an external etcd there is nothing to run"
        );
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), None);
    let member = match EmbeddedEtcd::start(cfg, Metrics::new(), shutdown.clone()).await {
        Ok(m) => m,
        Err(EmbeddedEtcdError::Cancelled) => return Ok(()),
        Err(e) => return Err(anyhow::Error::new(e).context("embedded etcd")),
    };
    tracing::info!(
        "maintenance: only the embedded etcd member runs (no election, no serving); stop with SIGTERM"
    );
    notify_systemd(sd_notify::NotifyState::Ready);
    shutdown.cancelled().await;
    member.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Connections the HTTP port accepts at once (scrapes and health checks).
const HTTP_MAX_CONNECTIONS: usize = 128;
/// Descriptors kept free for everything but client connections: etcd clients, the log, the
/// embedded etcd child's pipes, the HTTP port.
const RESERVED_DESCRIPTORS: u64 = 256 + HTTP_MAX_CONNECTIONS as u64;

/// Raises the open-file limit as far as allowed and derives the gRPC connection cap from it.
fn connection_limits(configured: ConnLimits) -> ConnLimits {
    let mut max = configured.max_connections;
    match listener::raise_descriptor_limit() {
        Ok((soft, hard)) => {
            let fits = soft.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
            if fits < max {
                tracing::warn!(
                    max_connections = max,
                    open_file_limit = soft,
                    hard_limit = hard,
                    "the open-file limit allows only {fits} client connections; raise LimitNOFILE (ulimit -n) to serve max_connections"
                );
                max = fits;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
    }
    ConnLimits {
        max_connections: max,
        ..configured
    }
}

async fn serve_grpc(
    incoming: impl futures::Stream<Item = std::io::Result<legacy::framed::SniffedConn>> + Send,
    keepalive_every: Duration,
    node: Arc<Node>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    // The listener sets TCP_NODELAY on accepted connections: with Nagle's algorithm a reply
    // written in two pieces waits for the peer's delayed ACK (~40 ms).
    // Each call's request size limit is enforced by RequestLimits, before tonic buffers the
    // message; the service's own limit is only a backstop.
    let service = Arc::new(MonitorService::new(node));
    let monitor = MonitorServer::from_arc(service.clone())
        .max_decoding_message_size(LARGEST)
        .max_encoding_message_size(usize::MAX);
    // WatchClusterMap is answered by its own route (shared buffers, the watch budget).
    let monitor = WithWatchRoute::new(monitor, service);
    tonic::transport::Server::builder()
        // Full maps of large clusters are tens of MiB: do not crawl through 64 KiB windows.
        .initial_stream_window_size(Some(8 << 20))
        .initial_connection_window_size(Some(32 << 20))
        // Pings find dead peers; live clients answer them, so they never look idle.
        .http2_keepalive_interval(Some(keepalive_every))
        .http2_keepalive_timeout(Some(timing::HTTP2_KEEPALIVE_TIMEOUT))
        .add_service(RequestLimits::new(health))
        .add_service(RequestLimits::new(reflection))
        .add_service(RequestLimits::new(monitor))
        .serve_with_incoming_shutdown(incoming, stop.cancelled())
        .await
        .context("gRPC server")
}

/// Hands memory freed after a burst (full maps for many watchers, a boot storm) back to the OS.
/// glibc's allocator keeps freed pages of its arenas resident until told otherwise: after 1,000
/// watchers at 100 epochs closed, the monitor stayed at its peak (docs/benchmarks.md).
fn spawn_memory_trim(stop: CancellationToken) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(timing::MEMORY_TRIM_EVERY) => {}
            }
            // SAFETY: malloc_trim only releases free memory; it may run in any thread.
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    drop(stop);
}

/// SIGTERM/SIGINT start a graceful stop (a second one exits at once); SIGHUP reopens the log.
fn spawn_signal_handler(shutdown: CancellationToken, log_file: Option<Arc<LogFile>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = handlers else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = hup.recv() => {
                    if let Some(f) = &log_file {
                        match f.reopen() {
                            Ok(()) => tracing::info!(path = %f.path().display(), "log file reopened"),
                            Err(e) => tracing::error!(error = %e, "cannot reopen the log file"),
                        }
                    }
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                tracing::warn!("second stop signal: exiting now");
                std::process::exit(130);
            }
            shutdown.cancel();
        }
    });
}

fn notify_systemd(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[state])
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

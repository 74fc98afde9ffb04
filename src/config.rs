//! `monitor.toml`: the raw file format, defaults, validation, and the resolved [`Config`],
//! whose sections are the settings structs of the parts they configure.
//!
//! Every error is one line naming the file, the line and the key, e.g.
//! `monitor.toml:7: port: 70000 is out of range 1..=65535`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::cluster::OutGuards;
use crate::cluster::failure::FailurePolicy;
use crate::commit::TxnLimits;
use crate::etcd::KeyLayout;
use crate::event_log::Retention;
use crate::legacy::LegacySettings;
use crate::legacy::frame::MaxFrameLen;
use crate::listener::ConnLimits;
use crate::node::WatchSettings;
use crate::term::TermSettings;
use crate::text::{SHOWN_MAX, one_line, shown, shown_number};
use crate::timing;

/// Default gRPC port.
pub const DEFAULT_PORT: u16 = 3333;
/// Default HTTP port (/metrics, /healthz, /readyz).
pub const DEFAULT_PROMETHEUS_PORT: u16 = 3332;
/// The raw protocol's port (kfastblock's default).
pub const DEFAULT_RAW_MONITOR_PORT: u16 = 3334;
/// etcd refuses leases shorter than this with its default election timeout.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Longest election lease: crash failover takes up to the TTL, and a cluster without a leader
/// for more than a minute marks nothing down and serves no map changes.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(60);
/// The smallest `etcd_quota_backend_bytes` accepted: the records and their history need room.
pub const MIN_QUOTA_BACKEND_BYTES: i64 = 64 * 1024 * 1024;
/// etcd's suggested maximum backend size; etcd warns at start-up above it.
pub const MAX_QUOTA_BACKEND_BYTES: i64 = 8 * 1024 * 1024 * 1024;
/// URL lists echoed in errors are cut to this length.
const URLS_SHOWN_MAX: usize = 200;
/// humantime's messages (which quote the unit written) are cut to this length.
const DURATION_ERROR_MAX: usize = 120;
/// toml's own messages are cut to this length.
const TOML_MESSAGE_MAX: usize = 160;
/// etcd's own default `--max-txn-ops`; an external cluster may not allow more.
pub const ETCD_DEFAULT_MAX_TXN_OPS: u32 = 128;
/// etcd's own default `--max-request-bytes` (1.5 MiB).
pub const ETCD_DEFAULT_MAX_REQUEST_BYTES: u64 = 1536 * 1024;

/// A duration key: its default and the range that makes sense for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationKey {
    pub name: &'static str,
    pub default: &'static str,
    pub min: Duration,
    pub max: Duration,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Crash failover takes up to the TTL; etcd grants leases in whole seconds from 2 s.
pub const ELECTION_LEASE_TTL: DurationKey = DurationKey {
    name: "election_lease_ttl",
    default: "3s",
    min: MIN_LEASE_TTL,
    max: MAX_LEASE_TTL,
};
/// Long enough for the other members of a new cluster to be started by hand.
pub const ETCD_START_TIMEOUT: DurationKey = DurationKey {
    name: "etcd_start_timeout",
    default: "60s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(HOUR),
};
/// Shorter compacts revisions a map watch or a paged load still reads; longer keeps history
/// that etcd's backend quota has no room for.
pub const ETCD_AUTO_COMPACTION_RETENTION: DurationKey = DurationKey {
    name: "etcd_auto_compaction_retention",
    default: "10m",
    min: Duration::from_secs(MINUTE),
    max: Duration::from_secs(7 * DAY),
};
/// The failure check runs every second; beyond an hour a dead OSD's PGs stay unserved for too
/// long (the `nodown` flag stops mark-down altogether).
pub const OSD_DOWN_AFTER: DurationKey = DurationKey {
    name: "osd_down_after",
    default: "10s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(HOUR),
};
/// Up to a week of maintenance (the `noout` flag stops automatic outs altogether).
pub const OSD_OUT_AFTER: DurationKey = DurationKey {
    name: "osd_out_after",
    default: "30s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(7 * DAY),
};
/// Flapping is a pattern over minutes to hours; the failure check runs every second.
pub const OSD_FLAP_WINDOW: DurationKey = DurationKey {
    name: "osd_flap_window",
    default: "10m",
    min: Duration::from_secs(10),
    max: Duration::from_secs(DAY),
};
/// More often floods thousands of watchers with progress; less often lets clients and proxies
/// take a quiet stream for a dead one.
pub const WATCH_PROGRESS_EVERY: DurationKey = DurationKey {
    name: "watch_progress_every",
    default: "5s",
    min: Duration::from_millis(100),
    max: Duration::from_secs(5 * MINUTE),
};
/// Live gRPC clients answer the server's keep-alive pings (every 20 s), so anything above 30 s
/// closes only silent peers; beyond an hour descriptors of dead peers pile up.
pub const CONNECTION_IDLE_TIMEOUT: DurationKey = DurationKey {
    name: "connection_idle_timeout",
    default: "120s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(HOUR),
};
/// Long enough for a watcher down over a long weekend to resume; the count bound
/// (`events_max_count`) usually cuts first on a busy cluster.
pub const EVENTS_MAX_AGE: DurationKey = DurationKey {
    name: "events_max_age",
    default: "7d",
    min: Duration::from_secs(HOUR),
    max: Duration::from_secs(365 * DAY),
};
/// Ceph's `mon_pg_stuck_threshold`: a PG not active this long is reported stuck.
pub const PG_STUCK_INACTIVE_AFTER: DurationKey = DurationKey {
    name: "pg_stuck_inactive_after",
    default: "60s",
    min: Duration::from_secs(5),
    max: Duration::from_secs(DAY),
};
/// One webhook attempt's bound (the Standard Webhooks convention is 15–30 s; a receiver that
/// needs longer should answer at once and work afterwards).
pub const WEBHOOK_TIMEOUT: DurationKey = DurationKey {
    name: "webhook_timeout",
    default: "10s",
    min: Duration::from_secs(1),
    max: Duration::from_secs(120),
};
/// An event at the head of an endpoint's queue older than this, after a failed attempt, goes to
/// the dead letters so one dead receiver does not hold its endpoint forever.
pub const WEBHOOK_MAX_EVENT_AGE: DurationKey = DurationKey {
    name: "webhook_max_event_age",
    default: "1h",
    min: Duration::from_secs(5),
    max: Duration::from_secs(30 * DAY),
};
/// Every duration key.
pub const DURATION_KEYS: [DurationKey; 12] = [
    ELECTION_LEASE_TTL,
    ETCD_START_TIMEOUT,
    ETCD_AUTO_COMPACTION_RETENTION,
    OSD_DOWN_AFTER,
    OSD_OUT_AFTER,
    OSD_FLAP_WINDOW,
    WATCH_PROGRESS_EVERY,
    CONNECTION_IDLE_TIMEOUT,
    EVENTS_MAX_AGE,
    PG_STUCK_INACTIVE_AFTER,
    WEBHOOK_TIMEOUT,
    WEBHOOK_MAX_EVENT_AGE,
];

/// A configuration error: one line, naming where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file the error is in (`<command line>` for flag overrides).
    pub file: String,
    /// 1-based line number, when the error is tied to a line.
    pub line: Option<usize>,
    /// The key at fault, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut out = self.file.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
        }
        out.push_str(": ");
        if let Some(key) = &self.key {
            out.push_str(key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// The log verbosity of `log_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The name as written in monitor.toml and understood by `tracing` filters.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// monitor.toml as written. Only syntax and types are checked here; [`RawConfig::resolve`]
/// applies defaults and validates meaning.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    // Keys of the original monitor.
    etcd_server: Option<Vec<String>>,
    etcd_name: Option<String>,
    etcd_initial_cluster: Option<String>,
    etcd_advertise_client_urls: Option<Vec<String>>,
    etcd_advertise_peer_urls: Option<Vec<String>>,
    etcd_listen_peer_urls: Option<Vec<String>>,
    etcd_listen_client_urls: Option<Vec<String>>,
    election_master_key: Option<String>,
    data_dir: Option<String>,
    hostname: Option<String>,
    port: Option<i64>,
    prometheus_port: Option<i64>,
    log_path: Option<String>,
    log_level: Option<LogLevel>,
    // Ours.
    address: Option<String>,
    advertise_address: Option<String>,
    embedded_etcd: Option<bool>,
    etcd_binary: Option<String>,
    etcd_prefix: Option<String>,
    etcd_initial_cluster_token: Option<String>,
    etcd_start_timeout: Option<String>,
    etcd_quota_backend_bytes: Option<i64>,
    etcd_auto_compaction_retention: Option<String>,
    etcd_txn_max_ops: Option<i64>,
    etcd_txn_max_bytes: Option<i64>,
    etcd_move_raft_leader: Option<bool>,
    election_lease_ttl: Option<String>,
    osd_down_after: Option<String>,
    osd_out_after: Option<String>,
    rebalance_max_fraction: Option<f64>,
    events_max_count: Option<i64>,
    events_max_age: Option<String>,
    pg_stuck_inactive_after: Option<String>,
    webhook_timeout: Option<String>,
    webhook_max_event_age: Option<String>,
    webhook_allow_http: Option<bool>,
    osd_min_in_ratio: Option<f64>,
    osd_min_up_ratio: Option<f64>,
    auto_out_subtree_limit: Option<String>,
    osd_flap_count: Option<i64>,
    osd_flap_window: Option<String>,
    watch_history_epochs: Option<i64>,
    watch_progress_every: Option<String>,
    watch_buffer_budget: Option<i64>,
    max_connections: Option<i64>,
    connection_idle_timeout: Option<String>,
    legacy: Option<bool>,
    legacy_max_frame: Option<i64>,
    raw_monitor_port: Option<i64>,
}

/// The resolved configuration of one monitor. The file's keys are flat (the original
/// monitor's names); here they are grouped into the settings each part of the monitor takes
/// whole.
#[derive(Debug, Clone)]
pub struct Config {
    /// This monitor's name: election value, monitor list entry, default etcd member name.
    pub hostname: String,
    /// gRPC bind address.
    pub address: IpAddr,
    /// gRPC port.
    pub port: u16,
    /// What clients redirected to this monitor are told (`host:port`).
    pub advertise_address: String,
    /// HTTP port for /metrics, /healthz, /readyz (bound on `address`).
    pub prometheus_port: u16,
    /// Log file, in addition to stderr. None: stderr only.
    pub log_path: Option<PathBuf>,
    pub log_level: LogLevel,
    /// Directory for the monitor's own files and the embedded etcd member (`<data_dir>/etcd`).
    pub data_dir: PathBuf,
    /// The etcd cluster: endpoints, key prefix, the embedded member.
    pub etcd: EtcdConfig,
    /// The leader election.
    pub election: ElectionConfig,
    /// What every leadership term runs with: transaction limits, failure detection and
    /// auto-out policy, rebalance rounds, raft leader placement.
    pub term: TermSettings,
    /// How map watches behave.
    pub watch: WatchSettings,
    /// Limits of the gRPC port's listener.
    pub listener: ConnLimits,
    /// The legacy front ends: the framed protocol on `port`, the raw protocol.
    pub legacy: LegacySettings,
}

/// The etcd cluster the monitor keeps its state in.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// etcd client endpoints the monitor talks to.
    pub endpoints: Vec<String>,
    /// Every key of this cluster lives under this prefix (no trailing slash).
    pub prefix: String,
    /// The embedded etcd member; None when `embedded_etcd = false`.
    pub embedded: Option<EmbeddedEtcdConfig>,
}

impl EtcdConfig {
    /// The client URL of this monitor's own embedded member, if it runs one.
    pub fn own_member_url(&self) -> Option<String> {
        self.embedded
            .as_ref()
            .and_then(|e| e.advertise_client_urls.first())
            .map(url_text)
    }

    /// Monitors the cluster is configured with (the embedded members), 0 when unknown.
    pub fn expected_monitors(&self) -> usize {
        self.embedded.as_ref().map_or(0, |e| e.cluster_size)
    }
}

/// The leader election.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionConfig {
    /// Name of the election under the etcd prefix.
    pub master_key: String,
    /// Lease TTL of the leader election.
    pub lease_ttl: Duration,
}

/// How to run the embedded etcd member.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedEtcdConfig {
    /// The `etcd` executable (looked up on PATH when it has no slash).
    pub binary: PathBuf,
    pub name: String,
    /// The member's data directory, `<data_dir>/etcd`.
    pub data_dir: PathBuf,
    /// `name=url,...` exactly as etcd takes it.
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub advertise_client_urls: Vec<Url>,
    pub advertise_peer_urls: Vec<Url>,
    pub listen_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    /// Bound on the wait for the member to become healthy (quorum included).
    pub start_timeout: Duration,
    pub quota_backend_bytes: u64,
    /// Periodic auto-compaction retention.
    pub auto_compaction_retention: Duration,
    /// `--max-txn-ops` given to etcd: at least what the monitor sends.
    pub max_txn_ops: u32,
    /// `--max-request-bytes` given to etcd: what the monitor sends plus headroom.
    pub max_request_bytes: u64,
    /// Number of members in `initial_cluster`.
    pub cluster_size: usize,
}

/// Overrides from the command line; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub log_path: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&file, &text, overrides)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(file: &str, text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let source = Source { file, text };
        raw.resolve(&source, overrides)
    }

    /// The etcd key layout of this cluster.
    pub fn keys(&self) -> KeyLayout {
        KeyLayout::new(&self.etcd.prefix, &self.election.master_key)
    }

    /// The gRPC socket address to bind.
    pub fn grpc_bind(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.address, self.port)
    }

    /// The HTTP socket address to bind.
    pub fn http_bind(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.address, self.prometheus_port)
    }

    /// The raw protocol's socket address to bind, when it is enabled.
    pub fn raw_bind(&self) -> Option<std::net::SocketAddr> {
        self.legacy
            .raw_port
            .map(|p| std::net::SocketAddr::new(self.address, p))
    }

    /// The raw protocol's address other monitors reach this one on ("" when disabled).
    pub fn advertise_raw_address(&self) -> String {
        let Some(port) = self.legacy.raw_port else {
            return String::new();
        };
        let host = match self.advertise_address.rsplit_once(':') {
            Some((host, _)) => host.to_string(),
            None => self.hostname.clone(),
        };
        format!("{host}:{port}")
    }

    /// The HTTP address other monitors and operators reach this monitor's /metrics on.
    pub fn advertise_http_address(&self) -> String {
        let host = match self.advertise_address.rsplit_once(':') {
            Some((host, _)) => host.to_string(),
            None => self.hostname.clone(),
        };
        format!("{host}:{}", self.prometheus_port)
    }
}

/// The text being validated, to point errors at lines.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    /// An error about `key`, pointing at the line where the key is written (if it is).
    fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: line_of_key(self.text, key),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

impl RawConfig {
    fn resolve(self, src: &Source<'_>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let hostname = match self.hostname {
            Some(h) => {
                check_name(&h).map_err(|m| src.error("hostname", m))?;
                h
            }
            None => system_hostname().map_err(|m| src.error("hostname", m))?,
        };
        let port = port_key(src, "port", self.port, DEFAULT_PORT)?;
        let prometheus_port = port_key(
            src,
            "prometheus_port",
            self.prometheus_port,
            DEFAULT_PROMETHEUS_PORT,
        )?;
        if prometheus_port == port {
            return Err(src.error("prometheus_port", format!("must differ from port ({port})")));
        }
        let address: IpAddr = match &self.address {
            Some(a) => a
                .parse()
                .map_err(|_| src.error("address", format!("{} is not an IP address", shown(a))))?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        let advertise_address = match self.advertise_address {
            Some(a) => {
                check_host_port(&a).map_err(|m| src.error("advertise_address", m))?;
                a
            }
            None if !address.is_unspecified() => {
                std::net::SocketAddr::new(address, port).to_string()
            }
            None => format!("{hostname}:{port}"),
        };
        let election_master_key = self
            .election_master_key
            .unwrap_or_else(|| "fastblock_master".to_string());
        check_name(&election_master_key).map_err(|m| src.error("election_master_key", m))?;
        if crate::etcd::keys::RESERVED_NAMES.contains(&election_master_key.as_str()) {
            return Err(src.error(
                "election_master_key",
                format!("'{election_master_key}' is reserved for the monitor's own keys"),
            ));
        }
        let etcd_prefix = normalize_prefix(self.etcd_prefix.as_deref().unwrap_or("/fastblock"))
            .map_err(|m| src.error("etcd_prefix", m))?;
        // The CloudEvents source of this cluster's webhooks.
        let webhook_source = format!("urn:fastblock:{}", etcd_prefix.trim_start_matches('/'));
        let lease_text = self.election_lease_ttl.as_deref();
        let election_lease_ttl = duration(src, ELECTION_LEASE_TTL, lease_text)?;
        if election_lease_ttl.subsec_nanos() != 0 {
            return Err(src.error(
                ELECTION_LEASE_TTL.name,
                format!(
                    "{} must be a whole number of seconds (etcd grants leases in seconds)",
                    shown(lease_text.unwrap_or_default())
                ),
            ));
        }
        let txn_max_ops = integer(
            src,
            "etcd_txn_max_ops",
            self.etcd_txn_max_ops,
            i64::from(ETCD_DEFAULT_MAX_TXN_OPS),
            16..=100_000,
        )? as u32;
        let txn_max_bytes = integer(
            src,
            "etcd_txn_max_bytes",
            self.etcd_txn_max_bytes,
            1024 * 1024,
            64 * 1024..=64 * 1024 * 1024,
        )? as u64;
        let log_path = overrides
            .log_path
            .clone()
            .or_else(|| self.log_path.map(PathBuf::from));
        if let Some(p) = &log_path
            && p.as_os_str().is_empty()
        {
            return Err(src.error("log_path", "must not be empty"));
        }
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| self.data_dir.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/fastblock/{hostname}")));
        if data_dir.as_os_str().is_empty() {
            return Err(src.error("data_dir", "must not be empty"));
        }

        let embedded = self.embedded_etcd.unwrap_or(true);
        let etcd_keys_given = [
            ("etcd_name", self.etcd_name.is_some()),
            ("etcd_initial_cluster", self.etcd_initial_cluster.is_some()),
            (
                "etcd_advertise_client_urls",
                self.etcd_advertise_client_urls.is_some(),
            ),
            (
                "etcd_advertise_peer_urls",
                self.etcd_advertise_peer_urls.is_some(),
            ),
            (
                "etcd_listen_peer_urls",
                self.etcd_listen_peer_urls.is_some(),
            ),
            (
                "etcd_listen_client_urls",
                self.etcd_listen_client_urls.is_some(),
            ),
        ];
        let embedded_etcd = if embedded {
            let name = self.etcd_name.unwrap_or_else(|| hostname.clone());
            check_name(&name).map_err(|m| src.error("etcd_name", m))?;
            let listen_client_urls = urls(
                src,
                "etcd_listen_client_urls",
                self.etcd_listen_client_urls,
                "http://127.0.0.1:2379",
            )?;
            let listen_peer_urls = urls(
                src,
                "etcd_listen_peer_urls",
                self.etcd_listen_peer_urls,
                "http://127.0.0.1:2380",
            )?;
            let advertise_client_urls = match self.etcd_advertise_client_urls {
                Some(v) => urls(src, "etcd_advertise_client_urls", Some(v), "")?,
                None => advertisable(src, "etcd_advertise_client_urls", &listen_client_urls)?,
            };
            let advertise_peer_urls = match self.etcd_advertise_peer_urls {
                Some(v) => urls(src, "etcd_advertise_peer_urls", Some(v), "")?,
                None => advertisable(src, "etcd_advertise_peer_urls", &listen_peer_urls)?,
            };
            let initial_cluster = match self.etcd_initial_cluster {
                Some(c) => c,
                None => advertise_peer_urls
                    .iter()
                    .map(|u| format!("{name}={}", url_text(u)))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            let members = parse_initial_cluster(&initial_cluster)
                .map_err(|m| src.error("etcd_initial_cluster", m))?;
            let mine: Vec<&Url> = members
                .iter()
                .filter(|(n, _)| n == &name)
                .map(|(_, u)| u)
                .collect();
            if mine.is_empty() {
                return Err(src.error(
                    "etcd_initial_cluster",
                    format!("member '{name}' (etcd_name) is not listed"),
                ));
            }
            let mut mine_sorted: Vec<String> = mine.iter().map(|u| url_text(u)).collect();
            let mut adv_sorted: Vec<String> = advertise_peer_urls.iter().map(url_text).collect();
            mine_sorted.sort();
            adv_sorted.sort();
            if mine_sorted != adv_sorted {
                return Err(src.error(
                    "etcd_initial_cluster",
                    format!(
                        "member '{name}' is listed with {} but etcd_advertise_peer_urls is {}",
                        one_line(&mine_sorted.join(","), URLS_SHOWN_MAX),
                        one_line(&adv_sorted.join(","), URLS_SHOWN_MAX)
                    ),
                ));
            }
            let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
            names.dedup();
            names.sort();
            names.dedup();
            let binary = self.etcd_binary.unwrap_or_else(|| "etcd".to_string());
            if binary.is_empty() {
                return Err(src.error("etcd_binary", "must not be empty"));
            }
            Some(EmbeddedEtcdConfig {
                binary: PathBuf::from(binary),
                name,
                data_dir: data_dir.join("etcd"),
                initial_cluster,
                initial_cluster_token: self
                    .etcd_initial_cluster_token
                    .unwrap_or_else(|| "fastblock".to_string()),
                advertise_client_urls,
                advertise_peer_urls,
                listen_client_urls,
                listen_peer_urls,
                start_timeout: duration(
                    src,
                    ETCD_START_TIMEOUT,
                    self.etcd_start_timeout.as_deref(),
                )?,
                quota_backend_bytes: integer(
                    src,
                    "etcd_quota_backend_bytes",
                    self.etcd_quota_backend_bytes,
                    MAX_QUOTA_BACKEND_BYTES,
                    MIN_QUOTA_BACKEND_BYTES..=MAX_QUOTA_BACKEND_BYTES,
                )? as u64,
                auto_compaction_retention: duration(
                    src,
                    ETCD_AUTO_COMPACTION_RETENTION,
                    self.etcd_auto_compaction_retention.as_deref(),
                )?,
                max_txn_ops: txn_max_ops.max(ETCD_DEFAULT_MAX_TXN_OPS),
                // Room for the transaction's framing on top of the payload budget.
                max_request_bytes: (txn_max_bytes + 512 * 1024).max(ETCD_DEFAULT_MAX_REQUEST_BYTES),
                cluster_size: names.len(),
            })
        } else {
            let etcd_keys_given = etcd_keys_given.into_iter().chain([(
                "etcd_move_raft_leader",
                self.etcd_move_raft_leader.is_some(),
            )]);
            if let Some((key, _)) = etcd_keys_given.into_iter().find(|(_, given)| *given) {
                return Err(src.error(
                    key,
                    "configures the embedded etcd member, but embedded_etcd = false",
                ));
            }
            None
        };

        let etcd_endpoints = match self.etcd_server {
            Some(list) => {
                if list.is_empty() {
                    return Err(src.error("etcd_server", "must list at least one endpoint"));
                }
                let mut out = Vec::with_capacity(list.len());
                for e in &list {
                    out.push(endpoint(e).map_err(|m| src.error("etcd_server", m))?);
                }
                out
            }
            None => match &embedded_etcd {
                Some(e) => e.advertise_client_urls.iter().map(url_text).collect(),
                None => {
                    return Err(src.error("etcd_server", "is required when embedded_etcd = false"));
                }
            },
        };

        let osd_down_after = duration(src, OSD_DOWN_AFTER, self.osd_down_after.as_deref())?;
        let events = Retention {
            max_count: integer(
                src,
                "events_max_count",
                self.events_max_count,
                100_000,
                1_000..=100_000_000,
            )? as u64,
            max_age: duration(src, EVENTS_MAX_AGE, self.events_max_age.as_deref())?,
        };
        let osd_out_after = duration(src, OSD_OUT_AFTER, self.osd_out_after.as_deref())?;
        let rebalance_max_fraction = match self.rebalance_max_fraction {
            None => 0.05,
            Some(f) if f > 0.0 && f <= 1.0 => f,
            Some(f) => {
                return Err(src.error(
                    "rebalance_max_fraction",
                    format!(
                        "{} is not in (0, 1] (0.05 moves at most 5% of the PGs per round)",
                        shown_number(f)
                    ),
                ));
            }
        };
        let osd_min_in_ratio = match self.osd_min_in_ratio {
            None => 0.75,
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                return Err(src.error(
                    "osd_min_in_ratio",
                    format!("{} is not in [0, 1]", shown_number(r)),
                ));
            }
        };
        let osd_min_up_ratio = match self.osd_min_up_ratio {
            // Ceph's default mon_osd_min_up_ratio.
            None => 0.3,
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                return Err(src.error("osd_min_up_ratio", format!("{r} is not in [0, 1]")));
            }
        };
        let auto_out_subtree_limit = match self.auto_out_subtree_limit.as_deref() {
            None | Some("rack") => Some(crate::cluster::SubtreeLimit::Rack),
            Some("host") => Some(crate::cluster::SubtreeLimit::Host),
            Some("none") => None,
            Some(other) => {
                return Err(src.error(
                    "auto_out_subtree_limit",
                    format!("{} is not one of rack, host, none", shown(other)),
                ));
            }
        };
        let osd_flap_count =
            integer(src, "osd_flap_count", self.osd_flap_count, 5, 1..=1000)? as usize;
        let osd_flap_window = duration(src, OSD_FLAP_WINDOW, self.osd_flap_window.as_deref())?;
        // Deltas further back than this are not worth computing: a full map is cheaper.
        let watch_history_epochs = integer(
            src,
            "watch_history_epochs",
            self.watch_history_epochs,
            1000,
            1..=1_000_000,
        )? as u64;
        let watch_progress_every = duration(
            src,
            WATCH_PROGRESS_EVERY,
            self.watch_progress_every.as_deref(),
        )?;
        let watch_buffer_budget = match self.watch_buffer_budget {
            None => 256 << 20,
            Some(n) if (1 << 20..=64 << 30).contains(&n) => n as u64,
            Some(n) => {
                return Err(src.error(
                    "watch_buffer_budget",
                    format!("{n} is out of range 1048576..=68719476736 (bytes)"),
                ));
            }
        };
        let max_connections = match self.max_connections {
            None => 16_384,
            Some(n) if (16..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(src.error(
                    "max_connections",
                    format!("{n} is out of range 16..=1000000"),
                ));
            }
        };
        let connection_idle_timeout = duration(
            src,
            CONNECTION_IDLE_TIMEOUT,
            self.connection_idle_timeout.as_deref(),
        )?;
        let legacy_max_frame = integer(
            src,
            "legacy_max_frame",
            self.legacy_max_frame,
            i64::from(MaxFrameLen::DEFAULT.get()),
            64 << 10..=64 << 20,
        )? as u32;
        let raw_monitor_port = integer(
            src,
            "raw_monitor_port",
            self.raw_monitor_port,
            i64::from(DEFAULT_RAW_MONITOR_PORT),
            0..=65535,
        )? as u16;
        if raw_monitor_port != 0
            && (raw_monitor_port == port || raw_monitor_port == prometheus_port)
        {
            return Err(src.error(
                "raw_monitor_port",
                format!("must differ from port ({port}) and prometheus_port ({prometheus_port})"),
            ));
        }
        let etcd = EtcdConfig {
            endpoints: etcd_endpoints,
            prefix: etcd_prefix,
            embedded: embedded_etcd,
        };
        // Raft leadership can only be kept off our member when there is another to take it.
        let raft_leader_url = etcd
            .own_member_url()
            .filter(|_| self.etcd_move_raft_leader.unwrap_or(true) && etcd.expected_monitors() > 1);
        Ok(Config {
            hostname,
            address,
            port,
            advertise_address,
            prometheus_port,
            log_path,
            log_level: self.log_level.unwrap_or(LogLevel::Info),
            data_dir,
            etcd,
            election: ElectionConfig {
                master_key: election_master_key,
                lease_ttl: election_lease_ttl,
            },
            term: TermSettings {
                limits: TxnLimits {
                    max_ops: txn_max_ops as usize,
                    max_bytes: txn_max_bytes as usize,
                },
                failure: FailurePolicy {
                    down_after: osd_down_after,
                    out_after: osd_out_after,
                    guards: OutGuards {
                        min_in_ratio: osd_min_in_ratio,
                        subtree_limit: auto_out_subtree_limit,
                    },
                    flap_count: osd_flap_count,
                    flap_window: osd_flap_window,
                    min_up_ratio: osd_min_up_ratio,
                },
                raft_leader_url,
                rebalance_fraction: rebalance_max_fraction,
                events,
                pg_stuck_inactive_after: duration(
                    src,
                    PG_STUCK_INACTIVE_AFTER,
                    self.pg_stuck_inactive_after.as_deref(),
                )?,
                webhooks: crate::webhook::deliver::Settings {
                    timeout: duration(src, WEBHOOK_TIMEOUT, self.webhook_timeout.as_deref())?,
                    max_event_age: duration(
                        src,
                        WEBHOOK_MAX_EVENT_AGE,
                        self.webhook_max_event_age.as_deref(),
                    )?,
                    allow_http: self.webhook_allow_http.unwrap_or(false),
                    source: webhook_source,
                },
            },
            watch: WatchSettings {
                history_epochs: watch_history_epochs,
                progress_every: watch_progress_every,
                buffer_budget: watch_buffer_budget as usize,
            },
            listener: ConnLimits {
                max_connections,
                idle_timeout: connection_idle_timeout,
                silent_grace: timing::SILENT_GRACE,
            },
            legacy: LegacySettings {
                framed: self.legacy.unwrap_or(true),
                max_frame: MaxFrameLen::new(legacy_max_frame),
                raw_port: (raw_monitor_port != 0).then_some(raw_monitor_port),
            },
        })
    }
}

fn port_key(src: &Source<'_>, key: &str, v: Option<i64>, default: u16) -> Result<u16, ConfigError> {
    Ok(integer(src, key, v, i64::from(default), 1..=65535)? as u16)
}

/// An integer key: `default` when absent, else within `range`.
fn integer(
    src: &Source<'_>,
    key: &str,
    v: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n),
        Some(n) => Err(src.error(
            key,
            format!("{n} is out of range {}..={}", range.start(), range.end()),
        )),
    }
}

/// A duration key: its default when absent, else a duration within the key's range.
fn duration(src: &Source<'_>, key: DurationKey, v: Option<&str>) -> Result<Duration, ConfigError> {
    let text = v.unwrap_or(key.default);
    let d = humantime::parse_duration(text).map_err(|e| {
        src.error(
            key.name,
            format!(
                "{} is not a duration like \"10s\" or \"500ms\" ({})",
                shown(text),
                one_line(&e.to_string(), DURATION_ERROR_MAX)
            ),
        )
    })?;
    if d < key.min || d > key.max {
        return Err(src.error(
            key.name,
            format!(
                "{} is out of range {}..={}",
                shown(text),
                humantime::format_duration(key.min),
                humantime::format_duration(key.max)
            ),
        ));
    }
    Ok(d)
}

/// Parses a list of etcd URLs (or the single default when absent).
fn urls(
    src: &Source<'_>,
    key: &str,
    v: Option<Vec<String>>,
    default: &str,
) -> Result<Vec<Url>, ConfigError> {
    let list = v.unwrap_or_else(|| vec![default.to_string()]);
    if list.is_empty() {
        return Err(src.error(key, "must list at least one URL"));
    }
    list.iter()
        .map(|s| parse_etcd_url(s).map_err(|m| src.error(key, m)))
        .collect()
}

/// Listen URLs reused as advertise URLs must name a concrete host.
fn advertisable(src: &Source<'_>, key: &str, listen: &[Url]) -> Result<Vec<Url>, ConfigError> {
    for u in listen {
        if let Some(url::Host::Ipv4(ip)) = u.host()
            && ip.is_unspecified()
        {
            return Err(src.error(
                key,
                format!(
                    "must be set when listening on {} (other members cannot reach 0.0.0.0)",
                    url_text(u)
                ),
            ));
        }
    }
    Ok(listen.to_vec())
}

/// An etcd URL: http(s)://host:port with nothing after the port.
pub fn parse_etcd_url(s: &str) -> Result<Url, String> {
    if !s.contains("://") {
        return Err(format!(
            "{} must be a URL with http:// or https://, like http://127.0.0.1:2379",
            shown(s)
        ));
    }
    let u = Url::parse(s).map_err(|e| format!("{} is not a URL ({e})", shown(s)))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("{} must use http:// or https://", shown(s)));
    }
    if u.host().is_none() {
        return Err(format!("{} has no host", shown(s)));
    }
    if u.port().is_none() {
        return Err(format!(
            "{} must give a port, like http://127.0.0.1:2379",
            shown(s)
        ));
    }
    if u.path() != "/" && !u.path().is_empty() || u.query().is_some() {
        return Err(format!("{} must not have a path or query", shown(s)));
    }
    Ok(u)
}

/// A URL as etcd expects it on its command line: no trailing slash.
pub fn url_text(u: &Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

/// An `etcd_server` entry: `host:port` or an http(s) URL. Returns the URL form.
fn endpoint(s: &str) -> Result<String, String> {
    if s.contains("://") {
        return parse_etcd_url(s).map(|u| url_text(&u));
    }
    check_host_port(s)?;
    Ok(format!("http://{s}"))
}

/// `host:port` with a non-empty host and a port in 1..=65535.
fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{} must be host:port", shown(s)))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{} must be host:port", shown(s)));
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!("{} has a port out of range 1..=65535", shown(s))),
    }
}

/// `name=url,name=url`.
fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Url)>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("{} is not name=url", shown(part)))?;
        check_name(name)?;
        out.push((name.to_string(), parse_etcd_url(url)?));
    }
    if out.is_empty() {
        return Err("must list at least one member".to_string());
    }
    Ok(out)
}

/// Names end up in etcd keys and command lines: keep them plain.
fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if s.len() > 63 {
        return Err(format!("{} is longer than 63 bytes", shown(s)));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{} may only contain letters, digits, '-', '_' and '.'",
            shown(s)
        ));
    }
    Ok(())
}

fn normalize_prefix(p: &str) -> Result<String, String> {
    if !p.starts_with('/') {
        return Err(format!("{} must start with '/'", shown(p)));
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("must not be the root '/'".to_string());
    }
    if trimmed.contains("//") || trimmed.contains(char::is_whitespace) {
        return Err(format!("{} must not contain '//' or spaces", shown(p)));
    }
    Ok(trimmed.to_string())
}

fn system_hostname() -> Result<String, String> {
    let h = nix::unistd::gethostname()
        .map_err(|e| format!("not set and the system hostname is unavailable ({e})"))?;
    let h = h.to_string_lossy().to_string();
    let short = h.split('.').next().unwrap_or_default().to_string();
    check_name(&short).map_err(|m| format!("not set and the system hostname {m}"))?;
    Ok(short)
}

/// Turns a TOML error into one line with the key and line number.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span();
    let line = span.as_ref().map(|s| line_number(text, s.start));
    let mut key = span.as_ref().and_then(|s| key_at(text, s.start));
    let raw = e.message().trim();
    let message = if let Some(rest) = raw.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let mut m = format!("unknown key {}", shown(name));
        if let Some(s) = closest_key(name) {
            m.push_str(&format!(" (did you mean '{s}'?)"));
        }
        return ConfigError {
            file: file.to_string(),
            line,
            key: None,
            message: m,
        };
    } else if raw == "duplicate key" {
        // The span covers the key of the second assignment (or table header).
        let name = span
            .and_then(|s| text.get(s))
            .map(|k| k.trim().trim_matches(|c| c == '"' || c == '\''))
            .unwrap_or_default();
        key = Some(one_line(name, SHOWN_MAX));
        match line_of_key(text, name).filter(|first| Some(*first) != line) {
            Some(first) => format!("duplicate key (first set on line {first})"),
            None => "duplicate key".to_string(),
        }
    } else if raw.starts_with("invalid type") || raw.starts_with("unknown variant") {
        raw.replace("i64", "an integer")
            .replace("unknown variant", "unknown value")
    } else {
        format!("syntax error: {raw}")
    };
    ConfigError {
        file: file.to_string(),
        line,
        key,
        message: one_line(message.lines().next().unwrap_or_default(), TOML_MESSAGE_MAX),
    }
}

const KNOWN_KEYS: &[&str] = &[
    "etcd_server",
    "etcd_name",
    "etcd_initial_cluster",
    "etcd_advertise_client_urls",
    "etcd_advertise_peer_urls",
    "etcd_listen_peer_urls",
    "etcd_listen_client_urls",
    "election_master_key",
    "data_dir",
    "hostname",
    "port",
    "prometheus_port",
    "log_path",
    "log_level",
    "address",
    "advertise_address",
    "embedded_etcd",
    "etcd_binary",
    "etcd_prefix",
    "etcd_initial_cluster_token",
    "etcd_start_timeout",
    "etcd_quota_backend_bytes",
    "etcd_auto_compaction_retention",
    "etcd_txn_max_ops",
    "etcd_txn_max_bytes",
    "etcd_move_raft_leader",
    "election_lease_ttl",
    "osd_down_after",
    "osd_out_after",
    "rebalance_max_fraction",
    "events_max_count",
    "events_max_age",
    "pg_stuck_inactive_after",
    "webhook_timeout",
    "webhook_max_event_age",
    "webhook_allow_http",
    "osd_min_in_ratio",
    "osd_min_up_ratio",
    "auto_out_subtree_limit",
    "osd_flap_count",
    "osd_flap_window",
    "watch_history_epochs",
    "watch_progress_every",
    "watch_buffer_budget",
    "max_connections",
    "connection_idle_timeout",
    "legacy",
    "legacy_max_frame",
    "raw_monitor_port",
];

fn closest_key(name: &str) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn line_number(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// The `key = ...` assignment that covers `offset`: the one on its line, else the nearest one
/// above (arrays may span lines).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_end = text
        .as_bytes()
        .iter()
        .skip(offset)
        .position(|b| *b == b'\n')
        .map_or(text.len(), |n| offset + n);
    let upto = text.get(..line_end).unwrap_or(text);
    for line in upto.lines().rev() {
        if let Some((k, _)) = line.split_once('=') {
            let k = k.trim();
            if !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Some(k.to_string());
            }
        }
    }
    None
}

/// The line where `key = ...` is written, if it is.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse("monitor.toml", text, &Overrides::default())
    }

    fn err(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    const BASE: &str = "hostname = \"monitor1\"\ndata_dir = \"/tmp/x\"\n";

    #[test]
    fn standalone_defaults() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.port, 3333);
        assert_eq!(c.prometheus_port, 3332);
        assert_eq!(c.advertise_address, "monitor1:3333");
        assert_eq!(c.etcd.prefix, "/fastblock");
        assert_eq!(c.election.master_key, "fastblock_master");
        assert_eq!(c.election.lease_ttl, Duration::from_secs(3));
        assert_eq!(c.term.limits.max_ops, 128);
        assert_eq!(c.etcd.endpoints, vec!["http://127.0.0.1:2379"]);
        let e = c.etcd.embedded.unwrap();
        assert_eq!(e.name, "monitor1");
        assert_eq!(e.initial_cluster, "monitor1=http://127.0.0.1:2380");
        assert_eq!(e.data_dir, PathBuf::from("/tmp/x/etcd"));
        assert_eq!(e.cluster_size, 1);
        assert!(e.max_request_bytes >= ETCD_DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn example_files_parse() {
        for f in [
            "config/monitor.toml",
            "config/cluster/monitor1.toml",
            "config/cluster/monitor2.toml",
            "config/cluster/monitor3.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let c =
                Config::load(&path, &Overrides::default()).unwrap_or_else(|e| panic!("{f}: {e}"));
            if f.contains("cluster") {
                assert_eq!(c.etcd.embedded.unwrap().cluster_size, 3, "{f}");
            }
        }
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(&format!("{BASE}prot = 4\n"));
        assert_eq!(
            e,
            "monitor.toml:3: unknown key 'prot' (did you mean 'port'?)"
        );
        let e = err("zzzzzzzzzzzz = 1\n");
        assert_eq!(e, "monitor.toml:1: unknown key 'zzzzzzzzzzzz'");
    }

    #[test]
    fn bad_types_name_key_and_line() {
        let e = err(&format!("{BASE}port = \"abc\"\n"));
        assert!(e.starts_with("monitor.toml:3: port: invalid type"), "{e}");
        let e = err(&format!("{BASE}etcd_server = \"127.0.0.1:2379\"\n"));
        assert!(
            e.starts_with("monitor.toml:3: etcd_server: invalid type"),
            "{e}"
        );
        let e = err(&format!("{BASE}embedded_etcd = 1\n"));
        assert!(
            e.starts_with("monitor.toml:3: embedded_etcd: invalid type"),
            "{e}"
        );
        let e = err(&format!("{BASE}log_level = \"loud\"\n"));
        assert!(
            e.starts_with("monitor.toml:3: log_level: unknown value"),
            "{e}"
        );
        let e = err(&format!(
            "{BASE}etcd_listen_peer_urls = [\n  \"http://a:1\",\n  7,\n]\n"
        ));
        assert!(
            e.starts_with("monitor.toml:5: etcd_listen_peer_urls: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = err(&format!("{BASE}port = \n"));
        assert!(e.starts_with("monitor.toml:3: port: syntax error"), "{e}");
    }

    #[test]
    fn ports_out_of_range() {
        assert_eq!(
            err(&format!("{BASE}port = 70000\n")),
            "monitor.toml:3: port: 70000 is out of range 1..=65535"
        );
        assert_eq!(
            err(&format!("{BASE}prometheus_port = 0\n")),
            "monitor.toml:3: prometheus_port: 0 is out of range 1..=65535"
        );
        assert_eq!(
            err(&format!("{BASE}port = -1\n")),
            "monitor.toml:3: port: -1 is out of range 1..=65535"
        );
        assert_eq!(
            err(&format!("{BASE}port = 4000\nprometheus_port = 4000\n")),
            "monitor.toml:4: prometheus_port: must differ from port (4000)"
        );
    }

    #[test]
    fn bad_urls() {
        assert_eq!(
            err(&format!(
                "{BASE}etcd_listen_client_urls = [\"127.0.0.1:2379\"]\n"
            )),
            "monitor.toml:3: etcd_listen_client_urls: '127.0.0.1:2379' must be a URL with http:// or https://, like http://127.0.0.1:2379"
        );
        let e = err(&format!("{BASE}etcd_advertise_peer_urls = [\"http://\"]\n"));
        assert!(
            e.starts_with("monitor.toml:3: etcd_advertise_peer_urls: 'http://' is not a URL"),
            "{e}"
        );
        assert_eq!(
            err(&format!(
                "{BASE}etcd_listen_peer_urls = [\"http://10.0.0.1\"]\n"
            )),
            "monitor.toml:3: etcd_listen_peer_urls: 'http://10.0.0.1' must give a port, like http://127.0.0.1:2379"
        );
        assert_eq!(
            err(&format!("{BASE}etcd_server = [\"localhost\"]\n")),
            "monitor.toml:3: etcd_server: 'localhost' must be host:port"
        );
        assert_eq!(
            err(&format!("{BASE}etcd_server = [\"h:99999\"]\n")),
            "monitor.toml:3: etcd_server: 'h:99999' has a port out of range 1..=65535"
        );
        assert_eq!(
            err(&format!("{BASE}address = \"localhost\"\n")),
            "monitor.toml:3: address: 'localhost' is not an IP address"
        );
    }

    #[test]
    fn member_missing_from_initial_cluster() {
        let text = format!(
            "{BASE}etcd_name = \"monitor9\"\netcd_initial_cluster = \"monitor1=http://127.0.0.1:2380,monitor2=http://127.0.0.2:2380\"\n"
        );
        assert_eq!(
            err(&text),
            "monitor.toml:4: etcd_initial_cluster: member 'monitor9' (etcd_name) is not listed"
        );
    }

    #[test]
    fn initial_cluster_must_match_advertised_peer_url() {
        let text = format!(
            "{BASE}etcd_initial_cluster = \"monitor1=http://127.0.0.1:2390\"\netcd_advertise_peer_urls = [\"http://127.0.0.1:2380\"]\n"
        );
        assert_eq!(
            err(&text),
            "monitor.toml:3: etcd_initial_cluster: member 'monitor1' is listed with http://127.0.0.1:2390 but etcd_advertise_peer_urls is http://127.0.0.1:2380"
        );
        let text = format!("{BASE}etcd_initial_cluster = \"monitor1\"\n");
        assert_eq!(
            err(&text),
            "monitor.toml:3: etcd_initial_cluster: 'monitor1' is not name=url"
        );
    }

    #[test]
    fn unspecified_listen_needs_advertise() {
        let e = err(&format!(
            "{BASE}etcd_listen_client_urls = [\"http://0.0.0.0:2379\"]\n"
        ));
        assert_eq!(
            e,
            "monitor.toml: etcd_advertise_client_urls: must be set when listening on http://0.0.0.0:2379 (other members cannot reach 0.0.0.0)"
        );
    }

    #[test]
    fn durations_and_ttl() {
        assert_eq!(
            err(&format!("{BASE}election_lease_ttl = \"1s\"\n")),
            "monitor.toml:3: election_lease_ttl: '1s' is out of range 2s..=1m"
        );
        assert_eq!(
            err(&format!("{BASE}election_lease_ttl = \"2500ms\"\n")),
            "monitor.toml:3: election_lease_ttl: '2500ms' must be a whole number of seconds (etcd grants leases in seconds)"
        );
        let e = err(&format!("{BASE}etcd_start_timeout = \"soon\"\n"));
        assert!(
            e.starts_with("monitor.toml:3: etcd_start_timeout: 'soon' is not a duration"),
            "{e}"
        );
        let c = parse(&format!("{BASE}election_lease_ttl = \"5s\"\n")).unwrap();
        assert_eq!(c.election.lease_ttl, Duration::from_secs(5));
    }

    /// The resolved value of a duration key.
    fn duration_of(c: &Config, key: &str) -> Duration {
        let etcd = c.etcd.embedded.as_ref().expect("embedded");
        match key {
            "election_lease_ttl" => c.election.lease_ttl,
            "etcd_start_timeout" => etcd.start_timeout,
            "etcd_auto_compaction_retention" => etcd.auto_compaction_retention,
            "osd_down_after" => c.term.failure.down_after,
            "osd_out_after" => c.term.failure.out_after,
            "osd_flap_window" => c.term.failure.flap_window,
            "watch_progress_every" => c.watch.progress_every,
            "connection_idle_timeout" => c.listener.idle_timeout,
            "events_max_age" => c.term.events.max_age,
            "pg_stuck_inactive_after" => c.term.pg_stuck_inactive_after,
            "webhook_timeout" => c.term.webhooks.timeout,
            "webhook_max_event_age" => c.term.webhooks.max_event_age,
            other => panic!("no duration key {other}"),
        }
    }

    /// `d` written in milliseconds, the unit every bound is a whole multiple of.
    fn ms(d: Duration) -> String {
        format!("{}ms", d.as_millis())
    }

    #[test]
    fn every_duration_key_is_bounded() {
        let step = |key: &DurationKey| {
            if key.name == "election_lease_ttl" {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(1)
            }
        };
        for key in DURATION_KEYS {
            let line = |v: &str| format!("{BASE}{} = \"{v}\"\n", key.name);
            let default = parse(BASE).unwrap();
            assert_eq!(
                duration_of(&default, key.name),
                humantime::parse_duration(key.default).unwrap(),
                "{}",
                key.name
            );
            assert!(key.min <= humantime::parse_duration(key.default).unwrap());
            assert!(humantime::parse_duration(key.default).unwrap() <= key.max);
            for at_bound in [key.min, key.max] {
                let c = parse(&line(&ms(at_bound))).unwrap_or_else(|e| panic!("{}: {e}", key.name));
                assert_eq!(duration_of(&c, key.name), at_bound, "{}", key.name);
            }
            let range = format!(
                "{}..={}",
                humantime::format_duration(key.min),
                humantime::format_duration(key.max)
            );
            for past in [key.min - step(&key), key.max + step(&key)] {
                assert_eq!(
                    err(&line(&ms(past))),
                    format!(
                        "monitor.toml:3: {}: '{}' is out of range {range}",
                        key.name,
                        ms(past)
                    )
                );
            }
            for absurd in ["100000000000s", "0s", "1ns", "584942417355y", "1 fortnight"] {
                let e = err(&line(absurd));
                assert!(
                    e.starts_with(&format!("monitor.toml:3: {}: '{absurd}' is ", key.name)),
                    "{e}"
                );
                assert!(
                    e.ends_with(&format!("is out of range {range}"))
                        || e.contains("is not a duration"),
                    "{e}"
                );
            }
        }
        // The value from the issue: validated before, then etcd refused the lease for ever.
        assert_eq!(
            err(&format!("{BASE}election_lease_ttl = \"100000000000s\"\n")),
            "monitor.toml:3: election_lease_ttl: '100000000000s' is out of range 2s..=1m"
        );
    }

    #[test]
    fn every_integer_key_is_bounded() {
        // (key, lowest, highest)
        let keys: [(&str, i64, i64); 7] = [
            ("port", 1, 65535),
            ("prometheus_port", 1, 65535),
            ("etcd_txn_max_ops", 16, 100_000),
            ("etcd_txn_max_bytes", 65536, 67_108_864),
            ("etcd_quota_backend_bytes", 67_108_864, 8_589_934_592),
            ("osd_flap_count", 1, 1000),
            ("watch_history_epochs", 1, 1_000_000),
        ];
        for (key, lo, hi) in keys {
            // The two ports must differ: move the other one out of the way.
            let other = if key == "port" {
                "prometheus_port = 4000\n"
            } else {
                "port = 4001\n"
            };
            let text = |n: i64| format!("{BASE}{other}{key} = {n}\n");
            for ok in [lo, hi] {
                parse(&text(ok)).unwrap_or_else(|e| panic!("{key} = {ok}: {e}"));
            }
            for bad in [lo - 1, hi + 1, i64::MIN, i64::MAX, 0, -1] {
                if (lo..=hi).contains(&bad) {
                    continue;
                }
                assert_eq!(
                    err(&text(bad)),
                    format!("monitor.toml:4: {key}: {bad} is out of range {lo}..={hi}")
                );
            }
        }
        let c = parse(&format!(
            "{BASE}etcd_quota_backend_bytes = 67108864\nwatch_history_epochs = 1000000\n"
        ))
        .unwrap();
        assert_eq!(c.etcd.embedded.unwrap().quota_backend_bytes, 67_108_864);
        assert_eq!(c.watch.history_epochs, 1_000_000);
        // Too large for the file format's integers at all: a type error on the right line.
        let e = err(&format!("{BASE}port = 99999999999999999999\n"));
        assert!(e.starts_with("monitor.toml:3: port: "), "{e}");
    }

    #[test]
    fn ratios_refuse_nan_and_infinity() {
        for v in ["nan", "inf", "-inf", "-0.5"] {
            let e = err(&format!("{BASE}osd_min_in_ratio = {v}\n"));
            assert!(e.starts_with("monitor.toml:3: osd_min_in_ratio: "), "{e}");
            assert!(e.ends_with(" is not in [0, 1]"), "{e}");
            let e = err(&format!("{BASE}rebalance_max_fraction = {v}\n"));
            assert!(e.contains(" is not in (0, 1]"), "{e}");
        }
        // Written out, 1e308 is 309 digits.
        assert_eq!(
            err(&format!("{BASE}osd_min_in_ratio = 1e308\n")),
            "monitor.toml:3: osd_min_in_ratio: 1e308 is not in [0, 1]"
        );
    }

    #[test]
    fn a_duplicate_key_names_the_key_and_its_second_line() {
        assert_eq!(
            err(&format!("{BASE}port = 4000\n\n# again\nport = 4001\n")),
            "monitor.toml:6: port: duplicate key (first set on line 3)"
        );
        assert_eq!(
            err("hostname = \"a\"\ndata_dir = \"/x\"\nhostname = \"b\"\n"),
            "monitor.toml:3: hostname: duplicate key (first set on line 1)"
        );
        // A multi-line array set twice.
        assert_eq!(
            err(&format!(
                "{BASE}etcd_server = [\n  \"a:1\",\n  \"b:2\",\n]\nlog_level = \"info\"\netcd_server = []\n"
            )),
            "monitor.toml:8: etcd_server: duplicate key (first set on line 3)"
        );
        // As a table header.
        assert_eq!(
            err(&format!("{BASE}port = 4000\n[port]\n")),
            "monitor.toml:4: port: duplicate key (first set on line 3)"
        );
    }

    #[test]
    fn echoed_values_are_one_short_line() {
        let long = "h".repeat(10_000);
        assert_eq!(
            err(&format!("hostname = \"{long}\"\n")),
            format!(
                "monitor.toml:1: hostname: '{}'…(10000 bytes) is longer than 63 bytes",
                "h".repeat(64)
            )
        );
        assert_eq!(
            err(&format!("{BASE}address = \"a\\nb\\u0007\"\n")),
            "monitor.toml:3: address: 'a\\nb\\u{7}' is not an IP address"
        );
        let e = err(&format!("{BASE}port = \"{long}\"\n"));
        assert!(e.starts_with("monitor.toml:3: port: invalid type"), "{e}");
        assert!(e.len() < 250, "{e}");
        let e = err(&format!("{BASE}osd_down_after = \"1{long}\"\n"));
        assert!(
            e.starts_with("monitor.toml:3: osd_down_after: '1hhhh"),
            "{e}"
        );
        assert!(e.len() < 350, "{e}");
        let e = err(&format!("{BASE}{long} = 1\n"));
        assert!(e.starts_with("monitor.toml:3: unknown key 'hhhh"), "{e}");
        assert!(e.len() < 150, "{e}");
    }

    #[test]
    fn etcd_binary_must_not_be_empty() {
        assert_eq!(
            err(&format!("{BASE}etcd_binary = \"\"\n")),
            "monitor.toml:3: etcd_binary: must not be empty"
        );
    }

    #[test]
    fn names_and_prefix() {
        assert_eq!(
            err("hostname = \"a b\"\n"),
            "monitor.toml:1: hostname: 'a b' may only contain letters, digits, '-', '_' and '.'"
        );
        assert_eq!(
            err(&format!("{BASE}etcd_prefix = \"fastblock\"\n")),
            "monitor.toml:3: etcd_prefix: 'fastblock' must start with '/'"
        );
        assert_eq!(
            parse(&format!("{BASE}etcd_prefix = \"/fb/\"\n"))
                .unwrap()
                .etcd
                .prefix,
            "/fb"
        );
        assert_eq!(
            err(&format!("{BASE}election_master_key = \"\"\n")),
            "monitor.toml:3: election_master_key: must not be empty"
        );
        assert_eq!(
            err(&format!("{BASE}election_master_key = \"cluster\"\n")),
            "monitor.toml:3: election_master_key: 'cluster' is reserved for the monitor's own keys"
        );
    }

    #[test]
    fn external_mode() {
        assert_eq!(
            err(&format!("{BASE}embedded_etcd = false\n")),
            "monitor.toml: etcd_server: is required when embedded_etcd = false"
        );
        assert_eq!(
            err(&format!(
                "{BASE}embedded_etcd = false\netcd_server = [\"127.0.0.1:2379\"]\netcd_name = \"x\"\n"
            )),
            "monitor.toml:5: etcd_name: configures the embedded etcd member, but embedded_etcd = false"
        );
        let c = parse(&format!(
            "{BASE}embedded_etcd = false\netcd_server = [\"127.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n"
        ))
        .unwrap();
        assert!(c.etcd.embedded.is_none());
        assert_eq!(
            c.etcd.endpoints,
            vec!["http://127.0.0.1:2379", "https://10.0.0.2:2379"]
        );
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            data_dir: Some(PathBuf::from("/elsewhere")),
            log_path: Some(PathBuf::from("/tmp/m.log")),
        };
        let c = Config::parse("monitor.toml", BASE, &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/elsewhere"));
        assert_eq!(c.log_path, Some(PathBuf::from("/tmp/m.log")));
        assert_eq!(
            c.etcd.embedded.unwrap().data_dir,
            PathBuf::from("/elsewhere/etcd")
        );
    }

    #[test]
    fn raft_leadership_is_kept_off_our_member_only_when_another_can_take_it() {
        assert_eq!(
            parse(BASE).unwrap().term.raft_leader_url,
            None,
            "a single member"
        );
        let three = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cluster/monitor1.toml"),
        )
        .unwrap();
        assert_eq!(
            parse(&three).unwrap().term.raft_leader_url.as_deref(),
            Some("http://127.0.0.1:2379")
        );
        let off = format!("{three}etcd_move_raft_leader = false\n");
        assert_eq!(parse(&off).unwrap().term.raft_leader_url, None);
    }

    #[test]
    fn advertise_defaults_to_bound_ip() {
        let c = parse(&format!("{BASE}address = \"127.0.0.5\"\nport = 4000\n")).unwrap();
        assert_eq!(c.advertise_address, "127.0.0.5:4000");
        assert_eq!(c.advertise_http_address(), "127.0.0.5:3332");
    }

    #[test]
    fn failure_policy_keys() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.term.failure.guards.min_in_ratio, 0.75);
        assert_eq!(
            c.term.failure.guards.subtree_limit,
            Some(crate::cluster::SubtreeLimit::Rack)
        );
        assert_eq!(
            (c.term.failure.flap_count, c.term.failure.flap_window),
            (5, Duration::from_secs(600))
        );
        let c = parse(&format!("{BASE}auto_out_subtree_limit = \"none\"\n")).unwrap();
        assert_eq!(c.term.failure.guards.subtree_limit, None);
        assert_eq!(
            err(&format!("{BASE}auto_out_subtree_limit = \"datacenter\"\n")),
            "monitor.toml:3: auto_out_subtree_limit: 'datacenter' is not one of rack, host, none"
        );
        assert_eq!(
            err(&format!("{BASE}osd_min_in_ratio = 1.5\n")),
            "monitor.toml:3: osd_min_in_ratio: 1.5 is not in [0, 1]"
        );
        assert_eq!(c.term.failure.min_up_ratio, 0.3);
        let c = parse(&format!("{BASE}osd_min_up_ratio = 0\n")).unwrap();
        assert_eq!(c.term.failure.min_up_ratio, 0.0);
        assert_eq!(
            err(&format!("{BASE}osd_min_up_ratio = -0.1\n")),
            "monitor.toml:3: osd_min_up_ratio: -0.1 is not in [0, 1]"
        );
        assert_eq!(
            err(&format!("{BASE}osd_flap_count = 0\n")),
            "monitor.toml:3: osd_flap_count: 0 is out of range 1..=1000"
        );
    }

    #[test]
    fn connection_and_watch_limits() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.listener.max_connections, 16_384);
        assert_eq!(c.listener.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.watch.buffer_budget, 256 << 20);
        let c = parse(&format!(
            "{BASE}max_connections = 100\nconnection_idle_timeout = \"5s\"\nwatch_buffer_budget = 1048576\n"
        ))
        .unwrap();
        assert_eq!(
            (
                c.listener.max_connections,
                c.listener.idle_timeout,
                c.watch.buffer_budget
            ),
            (100, Duration::from_secs(5), 1 << 20)
        );
        assert_eq!(
            err(&format!("{BASE}max_connections = 15\n")),
            "monitor.toml:3: max_connections: 15 is out of range 16..=1000000"
        );
        assert_eq!(
            err(&format!("{BASE}watch_buffer_budget = 1000\n")),
            "monitor.toml:3: watch_buffer_budget: 1000 is out of range 1048576..=68719476736 (bytes)"
        );
    }

    #[test]
    fn rebalance_fraction_is_bounded() {
        assert_eq!(parse(BASE).unwrap().term.rebalance_fraction, 0.05);
        assert_eq!(
            parse(&format!("{BASE}rebalance_max_fraction = 0.2\n"))
                .unwrap()
                .term
                .rebalance_fraction,
            0.2
        );
        assert_eq!(
            err(&format!("{BASE}rebalance_max_fraction = 0.0\n")),
            "monitor.toml:3: rebalance_max_fraction: 0 is not in (0, 1] (0.05 moves at most 5% of the PGs per round)"
        );
        let e = err(&format!("{BASE}rebalance_max_fraction = 2\n"));
        assert!(
            e.starts_with("monitor.toml:3: rebalance_max_fraction: 2 is not in (0, 1]"),
            "{e}"
        );
        let e = err(&format!("{BASE}rebalance_max_fraction = \"5%\"\n"));
        assert!(
            e.starts_with("monitor.toml:3: rebalance_max_fraction: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn known_keys_match_the_struct() {
        // Every key in KNOWN_KEYS must be accepted by the parser (the suggestion list must not
        // drift from the struct).
        for k in KNOWN_KEYS {
            let text = format!("{k} = 1\n");
            let e = parse(&text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!e.contains("unknown key"), "{k}: {e}");
        }
    }

    /// Fuzzing monitor.toml: the example files with lines deleted, duplicated, swapped, set to
    /// wrong types, absurd or huge values, unknown keys added, and raw byte edits. Parsing and
    /// validation never panic; every error is one line without control characters, of bounded
    /// length, pointing at a line of the file; whatever validates has every duration in its
    /// key's range.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use crate::fuzzing;

        /// The longest error line (a key name and cut echoes of the value).
        const ERROR_MAX: usize = 400;

        fn examples() -> Vec<String> {
            [
                "config/monitor.toml",
                "config/cluster/monitor1.toml",
                "config/cluster/monitor2.toml",
                "config/cluster/monitor3.toml",
            ]
            .iter()
            .map(|f| {
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(f))
                    .expect("example config")
            })
            .collect()
        }

        #[derive(Debug, Clone)]
        enum Edit {
            Delete(usize),
            Duplicate(usize),
            Swap(usize, usize),
            SetValue(usize, String),
            Add(usize, String, String),
            Bytes(fuzzing::Mutation),
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    r#""""#,
                    "0",
                    "-1",
                    "99999999999999999999",
                    "9223372036854775807",
                    "-9223372036854775808",
                    "nan",
                    "-inf",
                    "1e308",
                    "0.0",
                    "true",
                    "[]",
                    r#"[1, "a"]"#,
                    "{ a = 1 }",
                    "[[1]]",
                    r#""100000000000s""#,
                    r#""1ns""#,
                    r#""584942417355y""#,
                    r#""-1s""#,
                    r#""1 h""#,
                    "1979-05-27T07:32:00Z",
                    r#""a\nb""#,
                    r#""\u0000""#,
                    "'''\nx\n'''",
                    r#""http://[::1]:0""#,
                    r#"["http://0.0.0.0:1"]"#,
                    r#""m1=http://a:1,m1=http://b:2""#,
                ])
                .prop_map(String::from),
                "[a-z0-9:/._= -]{0,40}".prop_map(|v| format!("\"{v}\"")),
                any::<i64>().prop_map(|n| n.to_string()),
                (1usize..20_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
                (1usize..2_000).prop_map(|n| format!("[{}]", "\"h:1\",".repeat(n))),
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => prop::sample::select(KNOWN_KEYS).prop_map(String::from),
                1 => "[a-z_]{1,12}",
            ]
        }

        fn edit() -> impl Strategy<Value = Edit> {
            prop_oneof![
                2 => any::<usize>().prop_map(Edit::Delete),
                2 => any::<usize>().prop_map(Edit::Duplicate),
                1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
                4 => (any::<usize>(), value()).prop_map(|(i, v)| Edit::SetValue(i, v)),
                2 => (any::<usize>(), key(), value()).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
                2 => fuzzing::mutation().prop_map(Edit::Bytes),
            ]
        }

        fn apply(text: &str, edits: &[Edit]) -> String {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            for e in edits {
                let n = lines.len().max(1);
                match e {
                    Edit::Delete(i) if !lines.is_empty() => {
                        lines.remove(i % n);
                    }
                    Edit::Duplicate(i) if !lines.is_empty() => {
                        let l = lines[i % n].clone();
                        lines.insert(i % n, l);
                    }
                    Edit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
                    Edit::SetValue(i, v) if !lines.is_empty() => {
                        let line = &mut lines[i % n];
                        if let Some((k, _)) = line.split_once('=') {
                            *line = format!("{k}= {v}");
                        }
                    }
                    Edit::Add(i, k, v) => lines.insert(i % (lines.len() + 1), format!("{k} = {v}")),
                    Edit::Bytes(m) => {
                        let mut bytes = lines.join("\n").into_bytes();
                        m.apply(&mut bytes);
                        lines = String::from_utf8_lossy(&bytes)
                            .lines()
                            .map(str::to_string)
                            .collect();
                    }
                    _ => {}
                }
            }
            lines.join("\n") + "\n"
        }

        fn text() -> impl Strategy<Value = String> {
            (
                prop::sample::select(examples()),
                prop::collection::vec(edit(), 1..6),
            )
                .prop_map(|(example, edits)| apply(&example, &edits))
        }

        proptest! {
            #![proptest_config(fuzzing::config(2048))]

            #[test]
            fn any_edit_of_the_examples_is_a_config_or_one_bounded_line(text in text()) {
                match Config::parse("monitor.toml", &text, &Overrides::default()) {
                    Ok(c) => {
                        let etcd = c.etcd.embedded.as_ref();
                        let resolved = [
                            (ELECTION_LEASE_TTL, Some(c.election.lease_ttl)),
                            (ETCD_START_TIMEOUT, etcd.map(|e| e.start_timeout)),
                            (
                                ETCD_AUTO_COMPACTION_RETENTION,
                                etcd.map(|e| e.auto_compaction_retention),
                            ),
                            (OSD_DOWN_AFTER, Some(c.term.failure.down_after)),
                            (OSD_OUT_AFTER, Some(c.term.failure.out_after)),
                            (OSD_FLAP_WINDOW, Some(c.term.failure.flap_window)),
                            (WATCH_PROGRESS_EVERY, Some(c.watch.progress_every)),
                            (CONNECTION_IDLE_TIMEOUT, Some(c.listener.idle_timeout)),
                        ];
                        for (key, value) in resolved {
                            if let Some(d) = value {
                                prop_assert!(key.min <= d && d <= key.max, "{}: {:?}", key.name, d);
                            }
                        }
                    }
                    Err(e) => {
                        let line = e.to_string();
                        prop_assert!(!line.chars().any(char::is_control), "{:?}", line);
                        prop_assert!(line.len() <= ERROR_MAX, "{} bytes: {}", line.len(), line);
                        prop_assert!(!e.message.is_empty(), "{:?}", e);
                        if let Some(n) = e.line {
                            prop_assert!(n >= 1 && n <= text.lines().count() + 1, "{:?}", e);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn legacy_keys() {
        let c = parse(BASE).unwrap();
        assert!(c.legacy.framed);
        assert_eq!(c.legacy.max_frame, MaxFrameLen::DEFAULT);
        assert_eq!(c.legacy.raw_port, Some(DEFAULT_RAW_MONITOR_PORT));
        let c = parse(&format!(
            "{BASE}legacy = false\nlegacy_max_frame = 65536\nraw_monitor_port = 0\n"
        ))
        .unwrap();
        assert!(!c.legacy.framed);
        assert_eq!(c.legacy.max_frame.get(), 65536);
        assert_eq!(c.legacy.raw_port, None);
        assert_eq!(c.raw_bind(), None);
        assert_eq!(c.advertise_raw_address(), "");
        assert_eq!(
            err(&format!("{BASE}legacy_max_frame = 1000\n")),
            "monitor.toml:3: legacy_max_frame: 1000 is out of range 65536..=67108864"
        );
        assert_eq!(
            err(&format!("{BASE}raw_monitor_port = 70000\n")),
            "monitor.toml:3: raw_monitor_port: 70000 is out of range 0..=65535"
        );
        assert_eq!(
            err(&format!("{BASE}port = 4000\nraw_monitor_port = 4000\n")),
            "monitor.toml:4: raw_monitor_port: must differ from port (4000) and prometheus_port (3332)"
        );
    }
}

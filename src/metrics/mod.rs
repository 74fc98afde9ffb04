//! Prometheus metrics of the monitor. One [`Metrics`] value (cheap to clone) is shared by every
//! component; names follow Prometheus conventions (`fastblock_` prefix, `_total` counters,
//! `_seconds` histograms, base units). The cluster's state (OSDs, PGs, epochs, I/O) is read at
//! scrape time by [`render_cluster`], only on the leader. README.md ("Metrics") lists
//! every series with its meaning.

mod cluster;

pub use cluster::render as render_cluster;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Why a leadership term ended or began; the `reason` label of leadership changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadershipChange {
    /// This monitor won the election.
    Elected,
    /// This monitor resigned (graceful stop).
    Resigned,
    /// No successful keep-alive within the lease TTL.
    LeaseDeadline,
    /// etcd reported the lease gone.
    LeaseExpired,
    /// The election key vanished or changed.
    KeyLost,
    /// A write was rejected by the leader fence.
    Fenced,
    /// A task of the term panicked or failed; the term ended rather than serve without it.
    TaskFailed,
}

impl LeadershipChange {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadershipChange::Elected => "elected",
            LeadershipChange::Resigned => "resigned",
            LeadershipChange::LeaseDeadline => "lease_deadline",
            LeadershipChange::LeaseExpired => "lease_expired",
            LeadershipChange::KeyLost => "key_lost",
            LeadershipChange::Fenced => "fenced",
            LeadershipChange::TaskFailed => "task_failed",
        }
    }
}

/// A task a leadership term runs beside its commit pipeline (the `task` label of
/// `fastblock_term_task_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermTask {
    /// The commit pipeline itself.
    Pipeline,
    /// The heartbeat actor (owns the failure detector).
    Heartbeats,
    /// The failure check (down/out decisions every second).
    FailureCheck,
    /// The reconciler (PG health, remaps, rebalance, deferred releases).
    Reconcile,
    /// The mover of etcd's raft leadership.
    RaftLeader,
    /// The election's event and the event log's retention.
    Events,
    /// Health checks raised, updated and cleared; mutes that end.
    Health,
    /// Webhook delivery.
    Webhooks,
}

impl TermTask {
    /// Every task, for pre-created series.
    pub const ALL: [TermTask; 8] = [
        TermTask::Pipeline,
        TermTask::Heartbeats,
        TermTask::FailureCheck,
        TermTask::Reconcile,
        TermTask::RaftLeader,
        TermTask::Events,
        TermTask::Health,
        TermTask::Webhooks,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TermTask::Pipeline => "pipeline",
            TermTask::Heartbeats => "heartbeats",
            TermTask::FailureCheck => "failure_check",
            TermTask::Reconcile => "reconcile",
            TermTask::RaftLeader => "raft_leader",
            TermTask::Events => "events",
            TermTask::Health => "health",
            TermTask::Webhooks => "webhooks",
        }
    }
}

/// Handles on every metric.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// 1 while this monitor is the serving leader.
    pub leader: IntGauge,
    /// Leader epoch of the current term (0 when not leader).
    pub leader_epoch: IntGauge,
    /// Leadership terms started and ended, by reason.
    pub leadership_changes: IntCounterVec,
    /// Latency of commit transactions.
    pub etcd_txn_seconds: Histogram,
    /// Failed commit transactions, by reason (fenced, error).
    pub etcd_txn_failures: IntCounterVec,
    /// Commands per commit batch.
    pub commit_batch_commands: Histogram,
    /// Events written to the event log (with the changes they describe).
    pub events_written: IntCounter,
    /// Events deleted by the log's retention.
    pub events_compacted: IntCounter,
    /// Open WatchEvents streams on this monitor.
    pub event_watch_streams: IntGauge,
    /// Webhook delivery attempts, by endpoint id and outcome.
    pub webhook_deliveries: IntCounterVec,
    /// Commit → received latency of delivered webhooks.
    pub webhook_delivery_seconds: Histogram,
    /// Events after each endpoint's cursor (not yet delivered or skipped).
    pub webhook_queue_depth: IntGaugeVec,
    /// Age of the event each endpoint is trying (0 when caught up).
    pub webhook_oldest_undelivered: GaugeVec,
    /// Events given up on (dead letters), by endpoint id.
    pub webhook_dead_letters: IntCounterVec,
    /// 1 while the embedded etcd child runs.
    pub etcd_up: IntGauge,
    /// Restarts of the embedded etcd child after it died.
    pub etcd_restarts: IntCounter,
    /// gRPC calls answered, by method and status code.
    pub grpc_requests: IntCounterVec,
    /// gRPC call latency (until the reply; for streams, until the stream opened), by method.
    pub grpc_seconds: HistogramVec,
    /// Legacy protocol requests answered, by protocol (framed, raw), kind and result.
    pub legacy_requests: IntCounterVec,
    /// Legacy protocol request latency until the reply, by protocol and kind.
    pub legacy_seconds: HistogramVec,
    /// Map watch streams open.
    pub watch_streams: IntGauge,
    /// Map updates sent to watchers.
    pub watch_updates: IntCounter,
    /// Bytes of distinct map updates held for watch streams that have not taken them yet.
    pub watch_held_bytes: IntGauge,
    /// Watch streams whose connection was closed because the watch buffer budget ran out.
    pub watch_streams_cut: IntCounter,
    /// Connections open, by protocol (grpc, http).
    pub connections_open: IntGaugeVec,
    /// Connections refused at the connection limit, by protocol.
    pub connections_refused: IntCounterVec,
    /// Silent connections closed to admit a new one at the connection limit, by protocol.
    pub connections_replaced: IntCounterVec,
    /// Connections closed after the idle timeout, by protocol.
    pub connections_idle_closed: IntCounterVec,
    /// Failed accepts, by protocol and kind (out_of_descriptors, other).
    pub accept_errors: IntCounterVec,
    /// Term tasks that panicked or failed (each ended its term), by task.
    pub term_task_failures: IntCounterVec,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let leader = IntGauge::new(
            "fastblock_leader",
            "1 while this monitor is the serving leader, else 0",
        )
        .expect("valid metric");
        let leader_epoch = IntGauge::new(
            "fastblock_leader_epoch",
            "Leader epoch (etcd create revision of the election key) of this monitor's term; 0 when not leader",
        )
        .expect("valid metric");
        let leadership_changes = IntCounterVec::new(
            Opts::new(
                "fastblock_leadership_changes_total",
                "Leadership terms of this monitor started (reason=elected) and ended (other reasons)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let etcd_txn_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "fastblock_etcd_txn_duration_seconds",
                "Latency of the leader's fenced commit transactions",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        let etcd_txn_failures = IntCounterVec::new(
            Opts::new(
                "fastblock_etcd_txn_failures_total",
                "Commit transactions that failed: reason=fenced (leader fence rejected the write) or error (etcd error or timeout)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let commit_batch_commands = Histogram::with_opts(
            HistogramOpts::new(
                "fastblock_commit_batch_commands",
                "Commands committed together in one transaction (group commit)",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        let events_written = IntCounter::new(
            "fastblock_events_written_total",
            "Events written to the event log, in the transactions of the changes they describe (leader)",
        )
        .expect("valid metric");
        let events_compacted = IntCounter::new(
            "fastblock_events_compacted_total",
            "Events deleted from the event log by its retention (events_max_count, events_max_age; leader)",
        )
        .expect("valid metric");
        let event_watch_streams = IntGauge::new(
            "fastblock_event_watch_streams",
            "Open WatchEvents streams on this monitor (leader or standby)",
        )
        .expect("valid metric");
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "fastblock_webhook_deliveries_total",
                "Webhook delivery attempts by endpoint id and outcome (delivered, failed, retry_after, gone; leader)",
            ),
            &["endpoint", "outcome"],
        )
        .expect("valid metric");
        let webhook_delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "fastblock_webhook_delivery_seconds",
                "From an event's commit to its webhook's successful delivery (leader)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )
        .expect("valid metric");
        let webhook_queue_depth = IntGaugeVec::new(
            Opts::new(
                "fastblock_webhook_queue_depth",
                "Events after an endpoint's cursor, not yet delivered (leader)",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let webhook_oldest_undelivered = GaugeVec::new(
            Opts::new(
                "fastblock_webhook_oldest_undelivered_seconds",
                "Age of the event an endpoint is being tried with; 0 when caught up (leader)",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let webhook_dead_letters = IntCounterVec::new(
            Opts::new(
                "fastblock_webhook_dead_letters_total",
                "Events given up on after webhook_max_event_age, by endpoint id (leader)",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        let etcd_up = IntGauge::new(
            "fastblock_embedded_etcd_up",
            "1 while the embedded etcd member runs and answers its health check (absent in external mode)",
        )
        .expect("valid metric");
        let etcd_restarts = IntCounter::new(
            "fastblock_embedded_etcd_restarts_total",
            "Times the embedded etcd child died and was restarted",
        )
        .expect("valid metric");
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "fastblock_grpc_requests_total",
                "gRPC calls answered by this monitor, by method and status code",
            ),
            &["method", "code"],
        )
        .expect("valid metric");
        let grpc_seconds = HistogramVec::new(
            HistogramOpts::new(
                "fastblock_grpc_request_duration_seconds",
                "gRPC call latency until the reply (for streams: until the stream opened), by method and status code",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "code"],
        )
        .expect("valid metric");
        let watch_streams = IntGauge::new(
            "fastblock_watch_streams",
            "WatchClusterMap streams currently open on this monitor",
        )
        .expect("valid metric");
        let watch_updates = IntCounter::new(
            "fastblock_watch_updates_sent_total",
            "Map updates (full snapshots, deltas, progress notices) sent to watch streams",
        )
        .expect("valid metric");
        let watch_held_bytes = IntGauge::new(
            "fastblock_watch_held_bytes",
            "Bytes of distinct map updates held for watch streams that have not taken them yet (bounded by watch_buffer_budget)",
        )
        .expect("valid metric");
        let watch_streams_cut = IntCounter::new(
            "fastblock_watch_streams_cut_total",
            "Watch streams whose connection was closed because the watch buffer budget ran out (the slowest first)",
        )
        .expect("valid metric");
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "fastblock_connections_open",
                "Connections open, by protocol",
            ),
            &["protocol"],
        )
        .expect("valid metric");
        let connections_refused = counter_vec(
            "fastblock_connections_refused_total",
            "Connections closed on accept because max_connections were open, by protocol",
            &["protocol"],
        );
        let connections_replaced = counter_vec(
            "fastblock_connections_replaced_total",
            "Connections that never sent anything, closed to admit a new one at max_connections, by protocol",
            &["protocol"],
        );
        let connections_idle_closed = counter_vec(
            "fastblock_connections_idle_closed_total",
            "Connections closed after connection_idle_timeout without reading anything, by protocol",
            &["protocol"],
        );
        let accept_errors = counter_vec(
            "fastblock_accept_errors_total",
            "Failed accepts, by protocol and kind (out_of_descriptors: the accept loop backs off)",
            &["protocol", "kind"],
        );
        let term_task_failures = counter_vec(
            "fastblock_term_task_failures_total",
            "Tasks of a leadership term that panicked or failed, ending the term, by task",
            &["task"],
        );
        let legacy_requests = counter_vec(
            "fastblock_legacy_requests_total",
            "Requests of the legacy protocols answered by this monitor, by protocol (framed: C++ OSDs and the Go CLI on port; raw: kfastblock), request kind and result (ok, refused: answered with an error code, failed: the monitor could not do it, e.g. it stopped leading)",
            &["protocol", "kind", "result"],
        );
        let legacy_seconds = HistogramVec::new(
            HistogramOpts::new(
                "fastblock_legacy_request_duration_seconds",
                "Legacy protocol request latency until the reply, by protocol and request kind",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["protocol", "kind"],
        )
        .expect("valid metric");
        for c in [
            Box::new(leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(legacy_requests.clone()),
            Box::new(legacy_seconds.clone()),
            Box::new(leader_epoch.clone()),
            Box::new(leadership_changes.clone()),
            Box::new(etcd_txn_seconds.clone()),
            Box::new(etcd_txn_failures.clone()),
            Box::new(commit_batch_commands.clone()),
            Box::new(events_written.clone()),
            Box::new(events_compacted.clone()),
            Box::new(event_watch_streams.clone()),
            Box::new(webhook_deliveries.clone()),
            Box::new(webhook_delivery_seconds.clone()),
            Box::new(webhook_queue_depth.clone()),
            Box::new(webhook_oldest_undelivered.clone()),
            Box::new(webhook_dead_letters.clone()),
            Box::new(etcd_up.clone()),
            Box::new(etcd_restarts.clone()),
            Box::new(grpc_requests.clone()),
            Box::new(grpc_seconds.clone()),
            Box::new(watch_streams.clone()),
            Box::new(watch_updates.clone()),
            Box::new(watch_held_bytes.clone()),
            Box::new(watch_streams_cut.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_replaced.clone()),
            Box::new(connections_idle_closed.clone()),
            Box::new(accept_errors.clone()),
            Box::new(term_task_failures.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        // Pre-create label values so dashboards see zeros instead of missing series.
        for r in [
            LeadershipChange::Elected,
            LeadershipChange::Resigned,
            LeadershipChange::LeaseDeadline,
            LeadershipChange::LeaseExpired,
            LeadershipChange::KeyLost,
            LeadershipChange::Fenced,
            LeadershipChange::TaskFailed,
        ] {
            leadership_changes.with_label_values(&[r.as_str()]);
        }
        for r in ["fenced", "error"] {
            etcd_txn_failures.with_label_values(&[r]);
        }
        for p in ["grpc", "http", "framed", "raw"] {
            connections_open.with_label_values(&[p]);
            connections_refused.with_label_values(&[p]);
            connections_replaced.with_label_values(&[p]);
            connections_idle_closed.with_label_values(&[p]);
            for k in ["out_of_descriptors", "other"] {
                accept_errors.with_label_values(&[p, k]);
            }
        }
        for p in ["framed", "raw"] {
            legacy_requests.with_label_values(&[p, "invalid", "refused"]);
        }
        for t in TermTask::ALL {
            term_task_failures.with_label_values(&[t.as_str()]);
        }
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            registry.register(Box::new(pc)).expect("process collector");
        }
        Metrics {
            registry,
            leader,
            leader_epoch,
            leadership_changes,
            etcd_txn_seconds,
            etcd_txn_failures,
            commit_batch_commands,
            events_written,
            events_compacted,
            event_watch_streams,
            webhook_deliveries,
            webhook_delivery_seconds,
            webhook_queue_depth,
            webhook_oldest_undelivered,
            webhook_dead_letters,
            etcd_up,
            etcd_restarts,
            grpc_requests,
            grpc_seconds,
            legacy_requests,
            legacy_seconds,
            watch_streams,
            watch_updates,
            watch_held_bytes,
            watch_streams_cut,
            connections_open,
            connections_refused,
            connections_replaced,
            connections_idle_closed,
            accept_errors,
            term_task_failures,
        }
    }

    /// Drops the embedded-etcd series: in external mode there is no child process to report
    /// on, and a constant 0 would read as a dead member.
    pub fn external_etcd(&self) {
        for c in [
            Box::new(self.etcd_up.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.etcd_restarts.clone()),
        ] {
            // Only fails when not registered, which is the state asked for.
            let _ = self.registry.unregister(c);
        }
    }

    /// Counts one answered gRPC call.
    pub fn grpc_call(&self, method: &str, code: tonic::Code, seconds: f64) {
        let code = match code {
            tonic::Code::Ok => "OK".to_string(),
            other => format!("{other:?}"),
        };
        self.grpc_requests.with_label_values(&[method, &code]).inc();
        self.grpc_seconds
            .with_label_values(&[method, &code])
            .observe(seconds);
    }

    /// Counts one answered legacy request: `protocol` is `framed` or `raw`, `result` one of
    /// `ok`, `refused`, `failed`.
    pub fn legacy_request(&self, protocol: &str, kind: &str, result: &str, seconds: f64) {
        self.legacy_requests
            .with_label_values(&[protocol, kind, result])
            .inc();
        self.legacy_seconds
            .with_label_values(&[protocol, kind])
            .observe(seconds);
    }

    /// Counts a leadership change.
    pub fn leadership_change(&self, reason: LeadershipChange) {
        self.leadership_changes
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let m = Metrics::new();
        m.leader.set(1);
        m.leadership_change(LeadershipChange::Fenced);
        let text = m.render();
        assert!(text.contains("fastblock_leader 1"), "{text}");
        assert!(
            text.contains("fastblock_leadership_changes_total{reason=\"fenced\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fastblock_etcd_txn_failures_total{reason=\"error\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn grpc_calls_are_counted_by_method_and_code() {
        let m = Metrics::new();
        m.grpc_call("boot", tonic::Code::Ok, 0.001);
        m.grpc_call("boot", tonic::Code::Ok, 0.002);
        m.grpc_call("create_pool", tonic::Code::InvalidArgument, 0.001);
        let text = m.render();
        assert!(
            text.contains("fastblock_grpc_requests_total{code=\"OK\",method=\"boot\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "fastblock_grpc_requests_total{code=\"InvalidArgument\",method=\"create_pool\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fastblock_grpc_request_duration_seconds_count{code=\"OK\",method=\"boot\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn external_etcd_drops_the_embedded_member_series() {
        let m = Metrics::new();
        assert!(m.render().contains("fastblock_embedded_etcd_up 0"));
        m.external_etcd();
        m.external_etcd();
        let text = m.render();
        assert!(!text.contains("fastblock_embedded_etcd"), "{text}");
        assert!(text.contains("fastblock_leader 0"), "{text}");
    }
}

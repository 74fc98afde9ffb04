//! What the gRPC and HTTP handlers of one monitor process share: who this monitor is, what it
//! knows about the others, and — only while it is the serving leader — the cluster state.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use crate::etcd::Store;
use crate::event_log::EventLog;
use crate::metrics::Metrics;
use crate::observer::MonitorView;
use crate::proto::store::MonitorRecord;
use crate::term::TermContext;

/// How map watches behave (held here, where every handler reads it; the service depends on
/// the node, never the other way round).
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// A subscriber more than this many epochs behind gets a full map instead of a delta.
    pub history_epochs: u64,
    /// A progress message is sent after this long without updates.
    pub progress_every: Duration,
    /// Bytes of updates that streams may hold before the slowest are cut.
    pub buffer_budget: usize,
}

/// Shared context of one monitor process.
pub struct Node {
    /// This monitor's registration.
    pub me: MonitorRecord,
    pub metrics: Metrics,
    /// Reads of values kept outside the cluster state (OSD config texts).
    pub store: Store,
    /// Monitors the cluster is configured with (embedded members), 0 when unknown.
    pub expected_monitors: usize,
    /// How map watches behave.
    pub watch: WatchSettings,
    /// The event log as this monitor follows it (every monitor serves it).
    pub events: Arc<EventLog>,
    view: watch::Receiver<MonitorView>,
    serving: ArcSwapOption<TermContext>,
}

impl Node {
    pub fn new(
        me: MonitorRecord,
        metrics: Metrics,
        store: Store,
        expected_monitors: usize,
        watch: WatchSettings,
        events: Arc<EventLog>,
        view: watch::Receiver<MonitorView>,
    ) -> Node {
        Node {
            me,
            metrics,
            store,
            expected_monitors,
            watch,
            events,
            view,
            serving: ArcSwapOption::empty(),
        }
    }

    /// The serving term, while this monitor leads with a valid lease.
    pub fn serving(&self) -> Option<Arc<TermContext>> {
        self.serving.load_full().filter(|s| s.term.is_valid())
    }

    /// Starts (Some) or stops (None) serving as leader.
    pub fn set_serving(&self, serving: Option<Arc<TermContext>>) {
        self.serving.store(serving);
    }

    /// The latest view of the monitors.
    pub fn view(&self) -> MonitorView {
        self.view.borrow().clone()
    }

    /// What the monitors know of themselves, for the MON_* health checks.
    pub fn monitor_facts(&self) -> crate::health::MonitorFacts {
        let window = crate::timing::LEADER_FLAP_WINDOW.as_millis() as u64;
        let since = crate::timing::unix_ms_now().saturating_sub(window);
        crate::health::MonitorFacts {
            registered: self.view.borrow().monitors.len(),
            expected: self.expected_monitors,
            recent_elections: self.events.count_recent(
                crate::cluster::EventType::MonitorLeaderElected.name(),
                since,
            ),
        }
    }

    /// A receiver of the view of the monitors, for tasks that follow it.
    pub fn view_receiver(&self) -> watch::Receiver<MonitorView> {
        self.view.clone()
    }

    /// The leader's advertised address, or "" when unknown (for NOT_LEADER hints).
    pub fn leader_hint(&self) -> String {
        self.view
            .borrow()
            .leader
            .as_ref()
            .map(|l| l.record.grpc_address.clone())
            .unwrap_or_default()
    }
}

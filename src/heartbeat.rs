//! The heartbeat actor of a leadership term: the one owner of the failure detector.
//!
//! Heartbeats, boots and the failure check reach the detector as messages on one channel, in
//! the order they were sent, so no caller ever waits on a lock another caller holds: a flood
//! of heartbeats queues behind itself, not in front of a commit. Queries (the failure check's
//! decisions) carry a oneshot for their answer. What the detector knows that others read
//! (the last check's findings and when each OSD was last heard from) is published as an
//! immutable [`Findings`] value that health, status and metrics load without locking.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cluster::failure::{
    Decisions, DetectorFindings, FailureDetector, FailurePolicy, LastHeard,
};
use crate::cluster::{ClusterState, OsdId, OutRefusal};
use crate::timing;

/// Messages that may wait for the actor before senders are slowed down (a second of
/// heartbeats from 10,000 OSDs fits).
const QUEUE_DEPTH: usize = 16_384;

/// Messages handled per wake-up of the actor at most, so a flood cannot keep it from seeing
/// `stop` or its refresh timer.
const DRAIN_PER_WAKEUP: usize = 1024;

/// What the detector knows that health, status and metrics read.
#[derive(Debug, Clone)]
pub struct Findings {
    /// What the last failure check found.
    pub check: Arc<DetectorFindings>,
    /// When each OSD was last heard from (refreshed at most every
    /// [`timing::HEARTBEAT_AGES_REFRESH`]).
    pub heard: Arc<LastHeard>,
}

/// The heartbeat actor stopped: its term is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the heartbeat actor of this term has stopped")]
pub struct ActorGone;

enum Message {
    /// A heartbeat or a boot of an OSD, at the instant it was received.
    Heard(OsdId, Instant),
    /// The failure check's question: what to mark down and out now. `stalled` is time the
    /// monitor could not run, forgiven to every OSD first.
    Check {
        state: Arc<ClusterState>,
        policy: FailurePolicy,
        stalled: Option<Duration>,
        now: Instant,
        reply: oneshot::Sender<Decisions>,
    },
    /// These OSDs were marked down by the detector's decision (for flap detection).
    MarkedDown(Vec<OsdId>, Instant),
    /// The end of a check: what it could not do, to publish with the flapping OSDs.
    CheckDone {
        out_refused: Vec<(OsdId, OutRefusal)>,
        down_refused: Vec<OsdId>,
        policy: FailurePolicy,
        now: Instant,
        reply: oneshot::Sender<()>,
    },
}

/// The handle the term's callers use. Cheap to clone.
#[derive(Clone)]
pub struct Heartbeats {
    queue: mpsc::Sender<Message>,
    published: Arc<ArcSwap<Findings>>,
}

impl Heartbeats {
    /// Records that `id` was heard from now (a heartbeat or a boot).
    pub async fn heard(&self, id: OsdId) -> Result<(), ActorGone> {
        self.send(Message::Heard(id, Instant::now())).await
    }

    /// The detector's decisions on `state`, after forgiving `stalled` to every OSD.
    pub async fn check(
        &self,
        state: Arc<ClusterState>,
        policy: FailurePolicy,
        stalled: Option<Duration>,
        now: Instant,
    ) -> Result<Decisions, ActorGone> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::Check {
            state,
            policy,
            stalled,
            now,
            reply,
        })
        .await?;
        answer.await.map_err(|_| ActorGone)
    }

    /// Notes that the check marked `ids` down at `now`.
    pub async fn marked_down(&self, ids: Vec<OsdId>, now: Instant) -> Result<(), ActorGone> {
        self.send(Message::MarkedDown(ids, now)).await
    }

    /// Publishes the outcome of a check; returns once [`Heartbeats::findings`] shows it.
    pub async fn check_done(
        &self,
        out_refused: Vec<(OsdId, OutRefusal)>,
        down_refused: Vec<OsdId>,
        policy: FailurePolicy,
        now: Instant,
    ) -> Result<(), ActorGone> {
        let (reply, answer) = oneshot::channel();
        self.send(Message::CheckDone {
            out_refused,
            down_refused,
            policy,
            now,
            reply,
        })
        .await?;
        answer.await.map_err(|_| ActorGone)
    }

    /// The latest published findings. Never waits.
    pub fn findings(&self) -> Arc<Findings> {
        self.published.load_full()
    }

    async fn send(&self, m: Message) -> Result<(), ActorGone> {
        self.queue.send(m).await.map_err(|_| ActorGone)
    }
}

/// The actor, to be run by the term ([`HeartbeatActor::run`]).
pub struct HeartbeatActor {
    queue: mpsc::Receiver<Message>,
    published: Arc<ArcSwap<Findings>>,
    detector: FailureDetector,
}

/// Creates the actor of a term starting at `now` and its handle.
pub fn start(now: Instant) -> (Heartbeats, HeartbeatActor) {
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let detector = FailureDetector::new(now);
    let published = Arc::new(ArcSwap::from_pointee(Findings {
        check: Arc::default(),
        heard: Arc::new(detector.last_heard()),
    }));
    (
        Heartbeats {
            queue: tx,
            published: published.clone(),
        },
        HeartbeatActor {
            queue: rx,
            published,
            detector,
        },
    )
}

impl HeartbeatActor {
    /// Serves messages until `stop` (or until every handle is gone).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut refresh = tokio::time::interval(timing::HEARTBEAT_AGES_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard_since_publish = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                m = self.queue.recv() => match m {
                    Some(m) => {
                        heard_since_publish |= self.handle(m);
                        // Whatever queued meanwhile is handled in the same wake-up.
                        for _ in 0..DRAIN_PER_WAKEUP {
                            let Ok(m) = self.queue.try_recv() else { break };
                            heard_since_publish |= self.handle(m);
                        }
                    }
                    None => return,
                },
                _ = refresh.tick(), if heard_since_publish => {
                    self.publish_heard();
                    heard_since_publish = false;
                }
            }
        }
    }

    /// Handles one message; true when it was a heartbeat.
    fn handle(&mut self, m: Message) -> bool {
        match m {
            Message::Heard(id, at) => {
                self.detector.heard_from(id, at);
                return true;
            }
            Message::Check {
                state,
                policy,
                stalled,
                now,
                reply,
            } => {
                if let Some(lost) = stalled {
                    self.detector.forgive(lost, now);
                }
                let _ = reply.send(self.detector.check(&state, now, policy));
            }
            Message::MarkedDown(ids, at) => {
                for id in ids {
                    self.detector.marked_down(id, at);
                }
            }
            Message::CheckDone {
                out_refused,
                down_refused,
                policy,
                now,
                reply,
            } => {
                let flapping = self.detector.flapping(now, &policy);
                self.published.store(Arc::new(Findings {
                    check: Arc::new(DetectorFindings {
                        out_refused,
                        down_refused,
                        flapping,
                        late: self.detector.late(),
                    }),
                    heard: Arc::new(self.detector.last_heard()),
                }));
                let _ = reply.send(());
            }
        }
        false
    }

    fn publish_heard(&self) {
        let check = self.published.load().check.clone();
        self.published.store(Arc::new(Findings {
            check,
            heard: Arc::new(self.detector.last_heard()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_cluster as cluster;

    const POLICY: FailurePolicy = FailurePolicy {
        down_after: Duration::from_secs(10),
        out_after: Duration::from_secs(30),
        guards: crate::cluster::OutGuards {
            min_in_ratio: 0.0,
            subtree_limit: None,
        },
        flap_count: 2,
        flap_window: Duration::from_secs(600),
        min_up_ratio: 0.0,
    };

    fn spawn(now: Instant) -> (Heartbeats, CancellationToken) {
        let (handle, actor) = start(now);
        let stop = CancellationToken::new();
        tokio::spawn(actor.run(stop.clone()));
        (handle, stop)
    }

    #[tokio::test]
    async fn heartbeats_sent_before_a_check_count_in_it() {
        let t0 = Instant::now();
        let state = Arc::new(cluster(4, 2));
        let (hb, _stop) = spawn(t0);
        let later = t0 + Duration::from_secs(11);
        for id in [1, 2, 3] {
            hb.send(Message::Heard(OsdId(id), later)).await.unwrap();
        }
        let d = hb.check(state, POLICY, None, later).await.unwrap();
        assert_eq!(d.mark_down, [OsdId(4)], "only the silent OSD goes down");
    }

    #[tokio::test]
    async fn a_stall_is_forgiven_before_the_check_decides() {
        let t0 = Instant::now();
        let state = Arc::new(cluster(2, 1));
        let (hb, _stop) = spawn(t0);
        let later = t0 + Duration::from_secs(11);
        let stalled = Some(Duration::from_secs(5));
        let d = hb.check(state, POLICY, stalled, later).await.unwrap();
        assert!(d.mark_down.is_empty(), "{d:?}");
    }

    #[tokio::test]
    async fn a_finished_check_publishes_refusals_flapping_and_heartbeat_ages() {
        let t0 = Instant::now();
        let (hb, _stop) = spawn(t0);
        assert!(hb.findings().check.out_refused.is_empty());
        hb.send(Message::Heard(OsdId(7), t0 + Duration::from_secs(3)))
            .await
            .unwrap();
        let now = t0 + Duration::from_secs(4);
        hb.marked_down(vec![OsdId(1)], now).await.unwrap();
        hb.marked_down(vec![OsdId(1), OsdId(2)], now).await.unwrap();
        hb.check_done(
            vec![(OsdId(5), OutRefusal::MinInRatio)],
            vec![OsdId(6)],
            POLICY,
            now,
        )
        .await
        .unwrap();
        let f = hb.findings();
        assert_eq!(f.check.out_refused, [(OsdId(5), OutRefusal::MinInRatio)]);
        assert_eq!(f.check.down_refused, [OsdId(6)]);
        assert_eq!(f.check.flapping, [(OsdId(1), 2)], "flap_count is 2");
        assert_eq!(f.heard.last_seen(OsdId(7)), t0 + Duration::from_secs(3));
        assert_eq!(
            f.heard.last_seen(OsdId(8)),
            t0,
            "never heard: the term start"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_ages_are_republished_without_a_check() {
        let t0 = Instant::now();
        let (hb, _stop) = spawn(t0);
        let at = t0 + Duration::from_secs(1);
        hb.send(Message::Heard(OsdId(3), at)).await.unwrap();
        for _ in 0..20 {
            if hb.findings().heard.last_seen(OsdId(3)) == at {
                return;
            }
            tokio::time::sleep(timing::HEARTBEAT_AGES_REFRESH).await;
        }
        panic!("the heartbeat of OSD 3 was never published");
    }

    #[tokio::test]
    async fn a_stopped_actor_answers_every_call_with_an_error() {
        let (hb, stop) = spawn(Instant::now());
        stop.cancel();
        let state = Arc::new(cluster(1, 1));
        let mut result = Ok(());
        for _ in 0..100 {
            result = hb.heard(OsdId(0)).await;
            if result.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(result, Err(ActorGone));
        let d = hb.check(state, POLICY, None, Instant::now()).await;
        assert_eq!(d, Err(ActorGone));
    }
}

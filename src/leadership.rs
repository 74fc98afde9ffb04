//! Leader election through etcd's election API, published as a [`Role`] value.
//!
//! A *session* is one etcd lease: it carries this monitor's registration and its election
//! candidacy. The lease is kept alive every TTL/3; the local deadline is the *start* of the last
//! successful keep-alive plus the TTL, which is never later than etcd's own expiry of the lease.
//! After winning, the monitor leads only once a keep-alive started after the win has succeeded.
//! A term ends at the first of: the deadline passing, etcd reporting the lease gone, the
//! election key vanishing, a write rejected by the fence, or a graceful stop (which resigns so
//! a standby takes over in milliseconds). After a lost term a fresh session campaigns again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::{EventType, PutOptions, ResignOptions, WatchOptions};
use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::LeaderEpoch;
use crate::etcd::endpoints::within;
use crate::etcd::{Etcd, EtcdFailure, Fence, KeyLayout};
use crate::metrics::{LeadershipChange, Metrics};
use crate::proto::store::MonitorRecord;
use crate::timing;

/// What this monitor is, as far as the election goes.
#[derive(Clone, Debug)]
pub enum Role {
    /// Not leading: campaigning, or cut off from etcd.
    Standby,
    /// Leading, with a valid lease.
    Leader(LeaderTerm),
}

/// The local lease deadline, readable without locks from any task.
#[derive(Clone, Debug)]
pub struct LeaseClock {
    base: Instant,
    /// Nanoseconds after `base`; 0 means expired.
    deadline: Arc<AtomicU64>,
}

impl LeaseClock {
    fn new() -> LeaseClock {
        LeaseClock {
            base: Instant::now(),
            deadline: Arc::new(AtomicU64::new(0)),
        }
    }

    fn set(&self, deadline: Instant) {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos() as u64;
        self.deadline.store(nanos.max(1), Ordering::SeqCst);
    }

    fn expire(&self) {
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// The current deadline, None once expired.
    pub fn deadline(&self) -> Option<Instant> {
        match self.deadline.load(Ordering::SeqCst) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n)),
        }
    }

    /// True while the lease is certainly still alive in etcd.
    pub fn is_valid(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() < d)
    }
}

/// One leadership term. Everything started for the term watches [`LeaderTerm::ended`].
#[derive(Clone, Debug)]
pub struct LeaderTerm {
    /// The leader epoch: create revision of our election key.
    pub epoch: LeaderEpoch,
    /// The compare every write of this term carries.
    pub fence: Fence,
    lease: LeaseClock,
    ended: CancellationToken,
    end: mpsc::UnboundedSender<LeadershipChange>,
}

impl LeaderTerm {
    /// True while the term has not ended and the lease deadline has not passed.
    pub fn is_valid(&self) -> bool {
        !self.ended.is_cancelled() && self.lease.is_valid()
    }

    /// Cancelled when the term ends, for whatever reason.
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    /// Reports that a write was rejected by the fence: the term ends at once.
    pub fn report_fenced(&self) {
        let _ = self.end.send(LeadershipChange::Fenced);
    }

    /// Reports that a task the term cannot serve without failed: the term ends at once (this
    /// monitor steps down and campaigns again, so a healthy monitor takes over).
    pub fn report_task_failed(&self) {
        let _ = self.end.send(LeadershipChange::TaskFailed);
    }

    /// A term that is not backed by an election, valid for an hour, and the receiver of its
    /// end requests: for unit tests of what runs inside a term.
    #[cfg(test)]
    pub fn detached(epoch: u64) -> (LeaderTerm, mpsc::UnboundedReceiver<LeadershipChange>) {
        let (end, ends) = mpsc::unbounded_channel();
        let lease = LeaseClock::new();
        lease.set(Instant::now() + Duration::from_secs(3600));
        let epoch = LeaderEpoch(epoch);
        let term = LeaderTerm {
            epoch,
            fence: Fence {
                election_key: b"test/election".to_vec(),
                epoch,
            },
            lease,
            ended: CancellationToken::new(),
            end,
        };
        (term, ends)
    }
}

/// What the election needs to know about this monitor.
#[derive(Clone, Debug)]
pub struct ElectionSettings {
    pub keys: KeyLayout,
    pub lease_ttl: Duration,
    pub me: MonitorRecord,
}

/// Why an election session failed; the election starts a new one after a pause.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("lease grant: {0}")]
    LeaseGrant(EtcdFailure),
    #[error("register monitor: {0}")]
    Register(EtcdFailure),
    #[error("campaign: {0}")]
    Campaign(EtcdFailure),
    #[error("campaign answer without a leader key")]
    NoLeaderKey,
    #[error("keep-alive task ended")]
    KeepAliveEnded,
}

/// Handle on the running election task.
pub struct Leadership {
    role: watch::Receiver<Role>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning.
    pub fn spawn(client: Etcd, settings: ElectionSettings, metrics: Metrics) -> Leadership {
        let (role_tx, role) = watch::channel(Role::Standby);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client, settings, role_tx, metrics, stop.clone()));
        Leadership { role, stop, task }
    }

    /// The current role, and its changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Graceful stop: ends the term, resigns so a standby takes over at once, and revokes the
    /// lease (which removes this monitor's registration).
    pub async fn resign_and_stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "election task failed");
        }
    }
}

async fn run(
    client: Etcd,
    settings: ElectionSettings,
    role_tx: watch::Sender<Role>,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let mut backoff = timing::ETCD_RETRY_MIN;
    while !stop.is_cancelled() {
        match session(&client, &settings, &role_tx, &metrics, &stop).await {
            Ok(()) => backoff = timing::ETCD_RETRY_MIN,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "election session failed");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(timing::ETCD_RETRY_MAX);
            }
        }
    }
}

/// One lease: register, campaign, lead until the term ends. Ok when it ended normally.
async fn session(
    client: &Etcd,
    s: &ElectionSettings,
    role_tx: &watch::Sender<Role>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<(), SessionError> {
    let ttl_secs = s.lease_ttl.as_secs() as i64;
    let clock = LeaseClock::new();
    let granted_at = Instant::now();
    let lease = client
        .request(timing::ETCD_REQUEST_TIMEOUT, |mut c| async move {
            c.lease_grant(ttl_secs, None).await
        })
        .await
        .map_err(SessionError::LeaseGrant)?;
    let lease_id = lease.id();
    let granted_ttl = Duration::from_secs(lease.ttl().max(1) as u64).min(s.lease_ttl);
    clock.set(granted_at + granted_ttl);
    let keepalive = KeepAlive::spawn(client.clone(), lease_id, s.lease_ttl, clock.clone());
    let result = lead_in_session(
        client, s, role_tx, metrics, stop, lease_id, &clock, &keepalive,
    )
    .await;
    keepalive.stop();
    // Revoking removes our candidacy and registration at once instead of after a TTL.
    let mut revoke = client.client();
    if let Err(e) = within(timing::LEASE_REVOKE_TIMEOUT, revoke.lease_revoke(lease_id)).await {
        tracing::debug!(error = %e, "lease revoke failed");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn lead_in_session(
    client: &Etcd,
    s: &ElectionSettings,
    role_tx: &watch::Sender<Role>,
    metrics: &Metrics,
    stop: &CancellationToken,
    lease_id: i64,
    clock: &LeaseClock,
    keepalive: &KeepAlive,
) -> Result<(), SessionError> {
    let value = s.me.encode_to_vec();
    let key = s.keys.monitor(&s.me.name);
    client
        .request(timing::ETCD_REQUEST_TIMEOUT, |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move {
                c.put(key, value, Some(PutOptions::new().with_lease(lease_id)))
                    .await
            }
        })
        .await
        .map_err(SessionError::Register)?;

    tracing::info!(
        lease = format!("{lease_id:x}"),
        "campaigning for leadership"
    );
    // Campaigning with the same lease is idempotent (the candidacy key is the lease's), so a
    // campaign whose endpoint turns unhealthy is started again on a healthy one at once instead
    // of waiting, maybe past the moment it wins, for its connection to time out.
    // A transient failure (an etcd leader change, a lost connection) is retried with the same
    // lease too: ending the session would revoke the lease and drop this monitor's
    // registration, and every other monitor would see it down for a moment.
    let mut retry = timing::ETCD_RETRY_MIN;
    let won = loop {
        let (endpoint, campaigner) = client.pick();
        let mut election = campaigner.election_client();
        let failure = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = keepalive.lost.cancelled() => {
                tracing::warn!("lease lost while campaigning; starting a new session");
                return Ok(());
            }
            _ = client.until_unhealthy(endpoint) => {
                tracing::info!("campaigning again through a healthy etcd endpoint");
                continue;
            }
            r = election.campaign(s.keys.election_name(), value.clone(), lease_id) => match r {
                Ok(won) => break won,
                Err(e) => EtcdFailure::from_client(&e),
            }
        };
        client.failed(endpoint, &failure);
        if !failure.endpoint_at_fault() {
            return Err(SessionError::Campaign(failure));
        }
        tracing::warn!(error = %failure, retry_in_ms = retry.as_millis() as u64, "campaign failed; campaigning again with the same lease");
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = keepalive.lost.cancelled() => {
                tracing::warn!("lease lost while campaigning; starting a new session");
                return Ok(());
            }
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(timing::ETCD_RETRY_MAX);
    };
    let won_at = Instant::now();
    let leader_key = won.leader().cloned().ok_or(SessionError::NoLeaderKey)?;
    let epoch = LeaderEpoch(leader_key.rev() as u64);

    // Lead only once a keep-alive that started after the win has succeeded.
    keepalive.kick.notify_one();
    let mut success = keepalive.success.clone();
    tokio::select! {
        _ = stop.cancelled() => {
            resign(client, &leader_key).await;
            return Ok(());
        }
        _ = keepalive.lost.cancelled() => return Ok(()),
        ok = async { success.wait_for(|t| t.is_some_and(|t| t >= won_at)).await.is_ok() } => {
            if !ok {
                return Err(SessionError::KeepAliveEnded);
            }
        }
    }

    let (end_tx, mut end_rx) = mpsc::unbounded_channel();
    let term = LeaderTerm {
        epoch,
        fence: Fence {
            election_key: leader_key.key().to_vec(),
            epoch,
        },
        lease: clock.clone(),
        ended: CancellationToken::new(),
        end: end_tx,
    };
    tracing::info!(%epoch, key = %String::from_utf8_lossy(leader_key.key()), "elected leader");
    metrics.leadership_change(LeadershipChange::Elected);
    role_tx.send_replace(Role::Leader(term.clone()));

    let reason = watch_term(client, &term, stop, keepalive, &mut end_rx).await;
    // The term ends before anything else: readers and the pipeline stop acting as leader.
    term.ended.cancel();
    role_tx.send_replace(Role::Standby);
    metrics.leadership_change(reason);
    if reason == LeadershipChange::Resigned {
        tracing::info!(%epoch, "resigning leadership");
        resign(client, &leader_key).await;
    } else {
        clock.expire();
        tracing::warn!(%epoch, reason = reason.as_str(), "stepped down");
    }
    Ok(())
}

/// Runs until the term must end, and says why.
async fn watch_term(
    client: &Etcd,
    term: &LeaderTerm,
    stop: &CancellationToken,
    keepalive: &KeepAlive,
    end: &mut mpsc::UnboundedReceiver<LeadershipChange>,
) -> LeadershipChange {
    let key = term.fence.election_key.clone();
    let mut next_rev = term.epoch.0 as i64;
    let mut stream = None;
    let mut endpoint = 0;
    loop {
        if stream.is_none() {
            let opts = WatchOptions::new().with_start_revision(next_rev);
            let (i, mut watcher) = client.pick();
            endpoint = i;
            match within(
                timing::ETCD_REQUEST_TIMEOUT,
                watcher.watch(key.clone(), Some(opts)),
            )
            .await
            {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    client.failed(i, &e);
                    tracing::debug!(error = %e, "cannot watch the election key yet")
                }
            }
        }
        let retry = tokio::time::sleep(timing::LEADER_TRACKER_RETRY);
        tokio::select! {
            _ = stop.cancelled() => return LeadershipChange::Resigned,
            _ = keepalive.lost.cancelled() => return keepalive.reason(),
            Some(reason) = end.recv() => return reason,
            _ = retry, if stream.is_none() => {}
            msg = async { stream.as_mut().expect("guarded").message().await }, if stream.is_some() => {
                match msg {
                    Ok(Some(resp)) => {
                        if let Some(h) = resp.header() {
                            next_rev = next_rev.max(h.revision() + 1);
                        }
                        if resp.events().iter().any(|e| e.event_type() == EventType::Delete) {
                            return LeadershipChange::KeyLost;
                        }
                        if resp.canceled() {
                            stream = None;
                        }
                    }
                    Ok(None) => stream = None,
                    Err(e) => {
                        client.failed(endpoint, &EtcdFailure::from_client(&e));
                        stream = None;
                    }
                }
            }
        }
    }
}

async fn resign(client: &Etcd, leader_key: &etcd_client::LeaderKey) {
    let opts = ResignOptions::new().with_leader(leader_key.clone());
    match tokio::time::timeout(
        timing::ELECTION_RESIGN_TIMEOUT,
        client.client().election_client().resign(Some(opts)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "resign failed; the lease revoke will end the candidacy")
        }
        Err(_) => tracing::warn!("resign timed out; the lease revoke will end the candidacy"),
    }
}

/// The keep-alive task of one lease.
struct KeepAlive {
    /// Cancelled when the lease is (or may be) gone.
    lost: CancellationToken,
    lost_reason: Arc<parking_lot::Mutex<LeadershipChange>>,
    /// Asks for a keep-alive now.
    kick: Arc<Notify>,
    /// Start instant of the last successful keep-alive.
    success: watch::Receiver<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    fn spawn(client: Etcd, lease_id: i64, ttl: Duration, clock: LeaseClock) -> KeepAlive {
        let lost = CancellationToken::new();
        let lost_reason = Arc::new(parking_lot::Mutex::new(LeadershipChange::LeaseDeadline));
        let kick = Arc::new(Notify::new());
        let (success_tx, success) = watch::channel(None);
        let task = tokio::spawn(keepalive_loop(
            client,
            lease_id,
            ttl,
            clock,
            lost.clone(),
            lost_reason.clone(),
            kick.clone(),
            success_tx,
        ));
        KeepAlive {
            lost,
            lost_reason,
            kick,
            success,
            task,
        }
    }

    fn reason(&self) -> LeadershipChange {
        *self.lost_reason.lock()
    }

    fn stop(&self) {
        self.task.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn keepalive_loop(
    client: Etcd,
    lease_id: i64,
    ttl: Duration,
    clock: LeaseClock,
    lost: CancellationToken,
    lost_reason: Arc<parking_lot::Mutex<LeadershipChange>>,
    kick: Arc<Notify>,
    success: watch::Sender<Option<Instant>>,
) {
    let period = ttl / timing::KEEPALIVES_PER_TTL;
    let mut next = Instant::now() + period;
    let mut stream = None;
    let mut endpoint = 0;
    let give_up = |reason: LeadershipChange| {
        *lost_reason.lock() = reason;
        clock.expire();
        lost.cancel();
    };
    loop {
        let Some(deadline) = clock.deadline() else {
            return give_up(LeadershipChange::LeaseDeadline);
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = kick.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("no successful lease keep-alive within the TTL");
                return give_up(LeadershipChange::LeaseDeadline);
            }
        }
        let started = Instant::now();
        if started >= deadline {
            return give_up(LeadershipChange::LeaseDeadline);
        }
        next = started + period;
        if stream.is_some() && !client.is_healthy(endpoint) {
            // Its endpoint was found unhealthy: a keep-alive sent there would only time out.
            stream = None;
        }
        if stream.is_none() {
            let (i, c) = client.pick();
            endpoint = i;
            let mut lc = c.lease_client();
            match within(period, lc.keep_alive(lease_id)).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    client.failed(i, &e);
                    tracing::warn!(error = %e, "cannot open the lease keep-alive stream");
                    // Try again soon (on another endpoint if this one is at fault), not a
                    // whole period later.
                    next = Instant::now() + timing::ETCD_RETRY_MIN;
                    continue;
                }
            }
        }
        let (keeper, responses) = stream.as_mut().expect("just opened");
        let answer = tokio::time::timeout(period, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                let granted = Duration::from_secs(resp.ttl() as u64).min(ttl);
                clock.set(started + granted);
                success.send_replace(Some(started));
            }
            Ok(Ok(Some(_))) => {
                tracing::warn!(
                    lease = format!("{lease_id:x}"),
                    "etcd reports the lease expired"
                );
                return give_up(LeadershipChange::LeaseExpired);
            }
            other => {
                let failure = match other {
                    Ok(Err(e)) => EtcdFailure::from_client(&e),
                    Ok(Ok(None)) => EtcdFailure::from_client(
                        &etcd_client::Error::LeaseKeepAliveError("stream closed".to_string()),
                    ),
                    _ => EtcdFailure::from_client(&etcd_client::Error::GRpcStatus(
                        tonic::Status::deadline_exceeded("keep-alive timed out"),
                    )),
                };
                client.failed(endpoint, &failure);
                tracing::warn!(error = %failure, "lease keep-alive failed");
                // The next attempt goes out soon, on a fresh stream (on another endpoint if
                // this one is at fault), not a whole period later.
                next = Instant::now() + timing::ETCD_RETRY_MIN;
                // A late answer on the old stream could be mistaken for a newer request's:
                // always start over on a fresh stream.
                stream = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lease_clock_expires_at_deadline() {
        let c = LeaseClock::new();
        assert!(!c.is_valid(), "a fresh clock is expired");
        c.set(Instant::now() + Duration::from_secs(3));
        assert!(c.is_valid());
        tokio::time::advance(Duration::from_millis(2999)).await;
        assert!(c.is_valid());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!c.is_valid());
        c.set(Instant::now() + Duration::from_secs(1));
        c.expire();
        assert!(c.deadline().is_none());
    }
}

//! Every timing constant that is not a config key, with the budget that relates them.
//!
//! Leadership budget (lease TTL `T`, default 3 s, from `election_lease_ttl`):
//! - keep-alive every `T/3`; each keep-alive may take at most `T/3` before it counts as failed,
//!   so two consecutive failures still leave `T/3` before the local deadline;
//! - the local deadline is `start of the last successful keep-alive + T`, which is never later
//!   than etcd's own expiry of the lease, so a monitor cut off from etcd stops acting as leader
//!   before another monitor can win;
//! - crash failover is therefore at most `T` (lease expiry) + one etcd revoke tick (500 ms)
//!   + the new leader's state load;
//! - etcd endpoints are probed every [`ETCD_PROBE_EVERY`] with [`ETCD_PROBE_TIMEOUT`], so a
//!   frozen member is avoided within 1.5 s, inside one default TTL; a connection to a dead
//!   member is found by HTTP/2 pings within [`ETCD_KEEPALIVE_EVERY`] + [`ETCD_KEEPALIVE_TIMEOUT`];
//! - while the leader's own member leads etcd's raft group, a crash of its host costs an etcd
//!   election on top of `T`: the raft leader mover looks every [`RAFT_LEADER_CHECK_EVERY`]
//!   (well inside `T`), each of its requests bounded by [`RAFT_LEADER_STATUS_TIMEOUT`] (at
//!   most half the period, so a member that does not answer delays a check by little).
//!
//! Failure detection budget (`osd_down_after` `D`, default 10 s, at least 1 s): the detector
//! looks every [`FAILURE_CHECK_EVERY`], so a silent OSD is marked down between `D` and
//! `D + FAILURE_CHECK_EVERY` after its last heartbeat. A check that wakes up more than
//! [`FAILURE_CHECK_STALL`] (two periods) late means the monitor itself did not run; that time
//! is forgiven to every OSD rather than counted as silence.
//!
//! Term tasks: the reconciler passes after each commit burst (coalesced over
//! [`RECONCILE_DEBOUNCE`]) and at least every [`RECONCILE_PASS_EVERY`]; a commit that failed is
//! sent again after [`COMMIT_RETRY_MIN`] doubling to [`COMMIT_RETRY_MAX`], far below `T`, so a
//! settling etcd delays writes by milliseconds, and a fenced or expired term ends the retries.
//!
//! Stop budget: a stopping leader first spends at most [`STEP_DOWN_EVENT_TIMEOUT`] recording
//! its step-down; then [`RESIGN_AND_STOP_TIMEOUT`] bounds the whole resignation, which is one resign
//! ([`ELECTION_RESIGN_TIMEOUT`]) and one lease revoke ([`LEASE_REVOKE_TIMEOUT`]); in-flight
//! RPCs then get [`SHUTDOWN_DRAIN`].
//!
//! The budgets that can be written as inequalities are checked when the crate compiles (the
//! `const` block at the end).

use std::time::Duration;

/// Keep-alives per lease TTL.
pub const KEEPALIVES_PER_TTL: u32 = 3;

/// Timeout of one etcd request that is not a long-lived stream (reads, txns, grants).
pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the leader applies the event log's retention (`events_max_count`,
/// `events_max_age`): the log may exceed its bounds by what is written in between.
pub const EVENT_RETENTION_EVERY: Duration = Duration::from_secs(30);

/// How often the leader compares the failing health checks with the stored health (raise,
/// update, clear, end mutes): a check is announced at most this long after it starts.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// The window the leader judges etcd over for health: ETCD_SLOW when the median of its
/// transactions in the window (at least [`ETCD_SLOW_MIN_SAMPLES`]) is above [`ETCD_SLOW`],
/// ETCD_UNREACHABLE when an attempt failed in it.
pub const ETCD_HEALTH_WINDOW: Duration = Duration::from_secs(30);
/// A median transaction time this long is slow (etcd on a healthy disk commits in
/// milliseconds; a commit of this long delays every change and every heartbeat answer).
pub const ETCD_SLOW: Duration = Duration::from_millis(500);
pub const ETCD_SLOW_MIN_SAMPLES: usize = 5;

/// MON_LEADER_FLAPPING: this many elections within [`LEADER_FLAP_WINDOW`] (read from the
/// event log, so every term sees its predecessors').
pub const LEADER_FLAP_COUNT: usize = 3;
pub const LEADER_FLAP_WINDOW: Duration = Duration::from_secs(600);

/// Pause between attempts when etcd cannot be reached.
pub const ETCD_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between attempts when etcd cannot be reached.
pub const ETCD_RETRY_MAX: Duration = Duration::from_secs(2);

/// First pause before a commit transaction is sent again after a failure. Short: a failed
/// attempt costs little, and right after a failover (etcd dropping proposals while its raft
/// leadership settles) every pause delays the first writes clients wait for.
pub const COMMIT_RETRY_MIN: Duration = Duration::from_millis(20);
/// Longest pause between attempts of one commit transaction.
pub const COMMIT_RETRY_MAX: Duration = Duration::from_millis(250);

/// First restart delay of a crashed embedded etcd; doubles per crash up to the max.
pub const ETCD_RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest restart delay of a crashed embedded etcd.
pub const ETCD_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An embedded etcd that stayed up this long resets the back-off.
pub const ETCD_STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a stopping etcd gets after SIGTERM before SIGKILL.
pub const ETCD_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long `etcd --version` may take before the binary is declared unusable.
pub const ETCD_VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of health probes while waiting for the embedded member.
pub const ETCD_HEALTH_POLL: Duration = Duration::from_millis(200);

/// How often every configured etcd endpoint is probed (when `etcd_server` lists several).
pub const ETCD_PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long a probe may take before its endpoint counts as unhealthy. A frozen member is thus
/// avoided within `ETCD_PROBE_EVERY + ETCD_PROBE_TIMEOUT`, well inside one lease TTL.
pub const ETCD_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a new etcd client connection may take to establish.
pub const ETCD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The etcd clients ping a quiet connection this often (HTTP/2 keep-alive) ...
pub const ETCD_KEEPALIVE_EVERY: Duration = Duration::from_secs(2);
/// ... and drop it when a ping is not answered within this: a dead or frozen member is found
/// within seconds instead of TCP's minutes.
pub const ETCD_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// While waiting for the embedded member to start: how long connecting to it may take ...
pub const ETCD_START_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// ... how long each request of one health probe (read, status, member list) may take ...
pub const ETCD_START_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// ... and how often the wait is logged (the other members may have to be started by hand).
pub const ETCD_START_REPORT_EVERY: Duration = Duration::from_secs(5);
/// How often a leftover member on our data dir is checked while it stops after SIGTERM ...
pub const ETCD_LEFTOVER_EXIT_POLL: Duration = Duration::from_millis(50);
/// ... and after SIGKILL.
pub const ETCD_LEFTOVER_KILL_POLL: Duration = Duration::from_millis(20);

/// How often the leader looks where etcd's raft leadership is. Often: until it has moved, a
/// crash of this host costs an etcd election on top of the lease TTL, and a check is one
/// status call to our own member.
pub const RAFT_LEADER_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Longest a status, member list or move request of the raft leader mover may take.
pub const RAFT_LEADER_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Interval at which the leader tracker re-reads the election when its watch is broken.
pub const LEADER_TRACKER_RETRY: Duration = Duration::from_millis(500);

/// Longest a resign of the election may take before the lease revoke is left to end it.
pub const ELECTION_RESIGN_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest the revoke of a session's lease may take (it otherwise expires after its TTL).
pub const LEASE_REVOKE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a graceful stop waits for the election to resign and stop before going on.
pub const RESIGN_AND_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a stopping leader tries to record `monitor.stepped_down` before it resigns (one
/// commit; it adds at most this to a stop).
pub const STEP_DOWN_EVENT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the failure detector looks.
pub const FAILURE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// A failure check that wakes up this much later than it was due means the monitor could not
/// run (frozen, starved of CPU, swapped out): heartbeats could not be processed either, so
/// that time is forgiven to every OSD before the check looks for silent ones.
pub const FAILURE_CHECK_STALL: Duration = Duration::from_secs(2);

/// The reconciler makes a full pass at least this often, whatever changed.
pub const RECONCILE_PASS_EVERY: Duration = Duration::from_secs(5);
/// Bursts of commits (a boot storm) are coalesced into one reconciler pass.
pub const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(50);

/// How long client I/O rates are averaged over.
pub const IO_RATE_WINDOW: Duration = Duration::from_secs(10);

/// First pause of a listener's accepts after the process ran out of descriptors ...
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ... doubling up to this while descriptors stay exhausted.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A listener logs running out of descriptors at most this often.
pub const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(1);
/// How long a connection that has sent nothing is safe from being replaced at the cap: a
/// client that just connected may not have spoken yet (a working one speaks within a round
/// trip).
pub const SILENT_GRACE: Duration = Duration::from_secs(1);

/// How long a graceful stop waits for in-flight RPCs after resigning.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// The gRPC server pings a quiet connection's peer this often (HTTP/2 keep-alive), or every
/// half `connection_idle_timeout` when that is shorter (`listener::http2_keepalive_every`) ...
pub const HTTP2_KEEPALIVE_EVERY: Duration = Duration::from_secs(20);
/// ... and closes the connection when a ping is not answered within this. Live clients answer
/// pings before their connection could count as idle; dead peers are gone within 30 s.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often freed heap memory is handed back to the OS (glibc `malloc_trim`; a few ms for a
/// heap of hundreds of MiB, off the async workers).
pub const MEMORY_TRIM_EVERY: Duration = Duration::from_secs(10);

/// A new legacy connection waits this long for a leader to serve or forward it to (an
/// election takes the lease TTL plus the state load); then it is closed and the client
/// reconnects.
pub const LEGACY_LEADER_WAIT: Duration = Duration::from_secs(30);
/// ... looking for one this often.
pub const LEGACY_ROUTE_POLL: Duration = Duration::from_millis(50);
/// A standby forwarding a legacy connection gives up connecting to the leader after this.
pub const LEGACY_FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Milliseconds of `d`, for the budget checks below.
const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// The budgets of the module comment, checked when the crate compiles: a change of one constant
// that breaks a budget does not build.
const _: () = {
    let shortest_ttl = ms(crate::config::MIN_LEASE_TTL);
    // A frozen etcd member is avoided within the shortest lease TTL.
    assert!(ms(ETCD_PROBE_EVERY) + ms(ETCD_PROBE_TIMEOUT) < shortest_ttl);
    // The raft leader mover looks well inside the TTL; each request takes at most half a period.
    assert!(ms(RAFT_LEADER_CHECK_EVERY) < shortest_ttl);
    assert!(2 * ms(RAFT_LEADER_STATUS_TIMEOUT) <= ms(RAFT_LEADER_CHECK_EVERY));
    // A stall is a wake-up at least two failure check periods late.
    assert!(ms(FAILURE_CHECK_STALL) >= 2 * ms(FAILURE_CHECK_EVERY));
    // A commit retry pauses far less than a TTL.
    assert!(ms(COMMIT_RETRY_MIN) <= ms(COMMIT_RETRY_MAX));
    assert!(4 * ms(COMMIT_RETRY_MAX) < shortest_ttl);
    // One resign and one lease revoke fit the resignation of a graceful stop.
    assert!(ms(ELECTION_RESIGN_TIMEOUT) + ms(LEASE_REVOKE_TIMEOUT) < ms(RESIGN_AND_STOP_TIMEOUT));
};

/// How often the heartbeat actor republishes when each OSD was last heard from (read by the
/// heartbeat-age metrics), when heartbeats arrived since. Well under the OSDs' heartbeat
/// period (3 s), so a published age overstates the real one by at most this.
pub const HEARTBEAT_AGES_REFRESH: Duration = Duration::from_millis(250);

/// The wall clock in Unix milliseconds: what events are stamped with and health and mutes are
/// timed by (the core reads no clock; callers pass this in).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

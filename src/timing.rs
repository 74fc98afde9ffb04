//! Every timing constant that is not a config key, with the budget that relates them.
//!
//! Leadership budget (lease TTL `T`, default 3 s, from `election_lease_ttl`):
//! - keep-alive every `T/3`; each keep-alive may take at most `T/3` before it counts as failed,
//!   so two consecutive failures still leave `T/3` before the local deadline;
//! - the local deadline is `start of the last successful keep-alive + T`, which is never later
//!   than etcd's own expiry of the lease, so a monitor cut off from etcd stops acting as leader
//!   before another monitor can win;
//! - crash failover is therefore at most `T` (lease expiry) + one etcd revoke tick (500 ms)
//!   + the new leader's state load.

use std::time::Duration;

/// Keep-alives per lease TTL.
pub const KEEPALIVES_PER_TTL: u32 = 3;

/// Timeout of one etcd request that is not a long-lived stream (reads, txns, grants).
pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Interval at which the leader tracker re-reads the election when its watch is broken.
pub const LEADER_TRACKER_RETRY: Duration = Duration::from_millis(500);

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

/// How often the heartbeat actor republishes when each OSD was last heard from (read by the
/// heartbeat-age metrics), when heartbeats arrived since. Well under the OSDs' heartbeat
/// period (3 s), so a published age overstates the real one by at most this.
pub const HEARTBEAT_AGES_REFRESH: Duration = Duration::from_millis(250);

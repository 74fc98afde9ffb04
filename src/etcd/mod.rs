//! Everything that talks to etcd: the embedded member, the key layout, the fenced store.

pub mod embedded;
pub mod keys;
pub mod raft_leader;
pub mod store;

use std::time::Duration;

pub use keys::KeyLayout;
pub use store::{EncodedOp, Fence, Store, StoreError};

/// Connects a client to `endpoints`. The connection is lazy: this succeeds while etcd is still
/// down, and requests fail (and are retried by their callers) until it is up.
pub async fn connect(endpoints: &[String]) -> Result<etcd_client::Client, etcd_client::Error> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        // HTTP/2 pings find a dead or frozen peer within seconds instead of TCP's minutes.
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        // A member cut off from its cluster refuses requests instead of serving stale data or
        // letting a campaign hang.
        .with_require_leader(true);
    etcd_client::Client::connect(endpoints, Some(options)).await
}

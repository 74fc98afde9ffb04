//! Keeps etcd's raft leadership away from the leading monitor's own embedded member.
//!
//! When the leading monitor's host crashes, its lease must expire before a standby can take
//! over. If that host also ran etcd's raft leader, etcd first elects a new raft leader, and a
//! new raft leader refreshes every lease to its full TTL: failover then takes an election
//! timeout plus a whole TTL instead of at most a TTL. Moving raft leadership to another member
//! while we lead keeps the two roles on different hosts.

use tokio_util::sync::CancellationToken;

use super::endpoints::{EtcdFailure, within};
use crate::timing::{RAFT_LEADER_CHECK_EVERY, RAFT_LEADER_STATUS_TIMEOUT};

/// Raft log entries a transfer target may be behind.
const MAX_LAG: u64 = 100;

/// Runs until `stop`: whenever our member (at `own_url`) leads the raft group, hands the
/// leadership to another started voting member. Never returns before `stop` (a term task that
/// returns early ends its term).
pub async fn keep_elsewhere(own_url: String, stop: CancellationToken) {
    let client = loop {
        match etcd_client::Client::connect([own_url.clone()], None).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect to our etcd member to place raft leadership; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RAFT_LEADER_CHECK_EVERY) => {}
        }
    };
    loop {
        if let Err(e) = move_if_ours(&client).await {
            tracing::debug!(error = %e, "raft leadership check failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RAFT_LEADER_CHECK_EVERY) => {}
        }
    }
}

async fn move_if_ours(client: &etcd_client::Client) -> Result<(), EtcdFailure> {
    let mut c = client.clone();
    let status = within(RAFT_LEADER_STATUS_TIMEOUT, c.status()).await?;
    let ours = status.header().map(|h| h.member_id()).unwrap_or(0);
    if ours == 0 || status.leader() != ours {
        return Ok(());
    }
    let members = within(RAFT_LEADER_STATUS_TIMEOUT, c.member_list()).await?;
    let mut candidates: Vec<(u64, String, Vec<String>)> = members
        .members()
        .iter()
        .filter(|m| m.id() != ours && !m.is_learner() && !m.client_urls().is_empty())
        .map(|m| (m.id(), m.name().to_string(), m.client_urls().to_vec()))
        .collect();
    candidates.sort();
    // While a transfer runs the raft leader drops every proposal, until the target takes over
    // or an election timeout passes: hand over only to a member that answers and has the log.
    for (id, name, urls) in candidates {
        if !caught_up(&urls, status.raft_index()).await {
            tracing::debug!(member = %name, "not moving raft leadership to a member that is down or behind");
            continue;
        }
        within(
            RAFT_LEADER_STATUS_TIMEOUT,
            c.maintenance_client().move_leader(id),
        )
        .await?;
        tracing::info!(to = %name, "moved etcd raft leadership off this monitor's member");
        return Ok(());
    }
    Ok(())
}

/// Whether the member at `urls` answers a status request with a raft log at most
/// [`MAX_LAG`] entries behind `leader_index`.
async fn caught_up(urls: &[String], leader_index: u64) -> bool {
    let options =
        etcd_client::ConnectOptions::new().with_connect_timeout(RAFT_LEADER_STATUS_TIMEOUT);
    let Ok(mut member) = etcd_client::Client::connect(urls, Some(options)).await else {
        return false;
    };
    match within(RAFT_LEADER_STATUS_TIMEOUT, member.status()).await {
        Ok(s) => s.raft_index() + MAX_LAG >= leader_index,
        Err(_) => false,
    }
}

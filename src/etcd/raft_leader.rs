//! Keeps etcd's raft leadership away from the leading monitor's own embedded member.
//!
//! When the leading monitor's host crashes, its lease must expire before a standby can take
//! over. If that host also ran etcd's raft leader, etcd first elects a new raft leader, and a
//! new raft leader refreshes every lease to its full TTL: failover then takes an election
//! timeout plus a whole TTL instead of at most a TTL. Moving raft leadership to another member
//! while we lead keeps the two roles on different hosts.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the leader checks where the raft leadership is.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until `stop`: whenever our member (at `own_url`) leads the raft group, hands the
/// leadership to another started voting member.
pub async fn keep_elsewhere(own_url: String, stop: CancellationToken) {
    let client = match etcd_client::Client::connect([own_url.clone()], None).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot connect to our etcd member to place raft leadership");
            return;
        }
    };
    loop {
        if let Err(e) = move_if_ours(&client).await {
            tracing::debug!(error = %e, "raft leadership check failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

async fn move_if_ours(client: &etcd_client::Client) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let mut c = client.clone();
    let status = tokio::time::timeout(timeout, c.status())
        .await
        .map_err(|_| "status timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let ours = status.header().map(|h| h.member_id()).unwrap_or(0);
    if ours == 0 || status.leader() != ours {
        return Ok(());
    }
    let members = tokio::time::timeout(timeout, c.member_list())
        .await
        .map_err(|_| "member list timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let Some(target) = members
        .members()
        .iter()
        .filter(|m| m.id() != ours && !m.is_learner() && !m.client_urls().is_empty())
        .min_by_key(|m| m.id())
    else {
        return Ok(());
    };
    let (name, id) = (target.name().to_string(), target.id());
    tokio::time::timeout(timeout, c.maintenance_client().move_leader(id))
        .await
        .map_err(|_| "move leader timed out".to_string())?
        .map_err(|e| e.to_string())?;
    tracing::info!(to = %name, "moved etcd raft leadership off this monitor's member");
    Ok(())
}

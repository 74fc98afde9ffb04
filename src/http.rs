//! HTTP endpoints on `prometheus_port`: /metrics (Prometheus text), /healthz (process alive),
//! /readyz (leader: state loaded and serving; standby: connected to etcd and knows the leader).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Serves the endpoints on `listener` until `stop`.
pub async fn serve(
    listener: crate::listener::Listener,
    node: Arc<Node>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    // Off the async workers: at 10,000 OSDs the text is about 1 MiB.
    let text = tokio::task::spawn_blocking(move || {
        let mut text = node.metrics.render();
        crate::metrics::render_cluster(&node, &mut text);
        text
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    json(
        StatusCode::OK,
        serde_json::json!({ "status": "alive", "name": node.me.name }),
    )
}

/// Readiness as JSON: `{"ready": bool, "role": "leader"|"standby", ...}`.
pub fn readiness(node: &Node) -> (bool, serde_json::Value) {
    let view = node.view();
    if let Some(serving) = node.serving() {
        let state = serving.snapshot();
        return (
            true,
            serde_json::json!({
                "ready": true,
                "role": "leader",
                "name": node.me.name,
                "leader_epoch": serving.term.epoch.0,
                "osdmap_epoch": state.osdmap_epoch().0,
            }),
        );
    }
    let leader = view.leader.as_ref().map(|l| l.record.grpc_address.clone());
    let leader_is_other = view
        .leader
        .as_ref()
        .is_some_and(|l| l.record.name != node.me.name);
    let ready = view.connected && leader_is_other;
    let reason = if !view.connected {
        Some("not connected to etcd")
    } else if leader.is_none() {
        Some("no leader elected")
    } else if !leader_is_other {
        Some("elected leader, not serving yet")
    } else {
        None
    };
    (
        ready,
        serde_json::json!({
            "ready": ready,
            "role": "standby",
            "name": node.me.name,
            "etcd_connected": view.connected,
            "leader": leader,
            "reason": reason,
        }),
    )
}

async fn readyz(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let (ready, body) = readiness(&node);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, body)
}

fn json(code: StatusCode, body: serde_json::Value) -> impl IntoResponse {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

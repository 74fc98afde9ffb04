//! fastblock-monitor: the metadata monitor of the fastblock distributed block store.
//!
//! `AGENTS.md` at the repository root maps every module to its purpose; README.md explains the
//! architecture. In one line: gRPC handlers (`service`) turn requests into commands for the
//! pure core (`cluster`), the commit pipeline (`commit`) writes them to etcd under the leader
//! fence, and readers see immutable snapshots.

pub mod batches;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod daemon;
pub mod etcd;
pub mod event_log;
pub mod failpoint;
pub mod failure_check;
pub mod fbclient;
#[cfg(test)]
mod fuzzing;
pub mod health;
pub mod heartbeat;
pub mod http;
#[cfg(test)]
mod layers;
pub mod leadership;
pub mod legacy;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod node;
pub mod observer;
pub mod proto;
pub mod reconcile;
mod rpcs;
pub mod service;
pub mod sim;
pub mod term;
pub mod text;
pub mod timing;
pub mod webhook;
pub mod wire;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

//! Webhooks: the leader pushes every event of the log to each registered endpoint, in order, at
//! least once, as a CloudEvent signed per Standard Webhooks (docs/webhooks.md).
//!
//! - `sign.rs`: secrets and the `webhook-signature` header (pure);
//! - `envelope.rs`: the CloudEvents body and the checks of an endpoint's url (pure);
//! - `policy.rs`: what an answer means, `Retry-After`, back-off with jitter (pure);
//! - `deliver.rs`: one endpoint's delivery loop and the HTTP sender;
//! - `supervisor.rs`: the term task that runs one delivery loop per enabled endpoint.
//!
//! Registrations, cursors and dead letters live in etcd (`crate::etcd::webhooks`), written under
//! the leader fence, so a new leader resumes each endpoint where the old one stopped:
//! duplicates are possible (the cursor is persisted about once a second), losses are not.

pub mod deliver;
pub mod envelope;
pub mod policy;
pub mod sign;
pub mod supervisor;

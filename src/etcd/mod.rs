//! Everything that talks to etcd: the embedded member, the key layout, the fenced store.

pub mod embedded;
pub mod endpoints;
pub mod events;
pub mod keys;
pub mod raft_leader;
pub mod store;
pub mod webhooks;

pub use endpoints::{Etcd, EtcdFailure, FailureKind};
pub use events::{EventPage, EventReadError, EventStore};
pub use keys::KeyLayout;
pub use store::{EncodedOp, Fence, Store, StoreError};
pub use webhooks::{WebhookStore, WebhookStoreError};

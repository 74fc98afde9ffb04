//! The pure core: cluster state, the commands that change it, and the records it is stored as.
//! No async, no etcd, no clock reads; everything here is unit-testable in milliseconds.

mod error;
mod flags;
mod records;
mod state;
mod types;

pub use error::ClusterError;
pub use flags::{ClusterFlag, Flags};
pub use records::{DecodeError, Record, RecordKey, decode_record, encode_record};
pub use state::{Applied, ClusterState, Command, LoadError, Outcome};
pub use types::{Epoch, LeaderEpoch};

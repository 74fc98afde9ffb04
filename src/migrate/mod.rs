//! Moving cluster state in and out of etcd as a whole, with no monitor serving:
//!
//! - `go`: the Go monitor's etcd contents converted into our records, with a report of what was
//!   found (pure);
//! - `backup`: the backup file format (written by `fbclient -op=backup` from the Backup call);
//! - `restore`: a backup's entries as a state, with its epochs raised (pure);
//! - `writer`: the fenced writer of a whole state that restore and import share;
//! - `run`: the `fastblock-mon restore` and `import-go` commands.
//!
//! docs/backup-restore.md and docs/migration.md are the operators' side.

pub mod backup;
pub mod go;
pub mod restore;
pub mod run;
pub mod writer;

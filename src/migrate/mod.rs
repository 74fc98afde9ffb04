//! Moving cluster state in and out of etcd as a whole, with no monitor serving: backup files
//! (`backup.rs`, the format; written by `fbclient -op=backup` from the Backup call), restore
//! (`restore.rs`, a backup's entries as a state with its epochs raised), the fenced writer both
//! restore and import use (`writer.rs`), and the commands (`run.rs`). docs/backup-restore.md
//! and docs/migration.md are the operators' side.

pub mod backup;
pub mod restore;
pub mod run;
pub mod writer;

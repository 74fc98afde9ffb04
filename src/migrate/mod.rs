//! Moving an existing cluster's state into ours.
//!
//! `go`: the Go monitor's etcd contents converted into our records, with a report of what was
//! found (pure: no etcd, no async; reading the source and writing the records are the
//! `import-go` subcommand's).

pub mod go;

//! Unit tests of the state machine's commands, one file per concern. Shared helpers live here.

mod images;
mod osds;
mod pgs;
mod pools;

//! `fbclient`: the command-line client of the fastblock monitors (see `fastblock_monitor::fbclient`
//! and docs/fbclient.md). Go-style flags (`-op=leader`) and ordinary ones (`--op leader`) both
//! work.

use std::process::ExitCode;

fn main() -> ExitCode {
    fastblock_monitor::fbclient::main_with(std::env::args_os())
}

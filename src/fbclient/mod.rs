//! `fbclient`: the command-line client (being written).

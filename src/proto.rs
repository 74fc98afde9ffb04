//! Generated protobuf and gRPC code (see `proto/` and `build.rs`).

/// The public monitor API, `fastblock.monitor.v1`.
pub mod monitor {
    tonic::include_proto!("fastblock.monitor.v1");
}

/// Values stored in etcd, `fastblock.monitor.store.v1`.
pub mod store {
    tonic::include_proto!("fastblock.monitor.store.v1");
}

/// Encoded descriptors of every file in `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fastblock_descriptor.bin"));

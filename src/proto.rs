//! Generated protobuf and gRPC code (see `proto/` and `build.rs`), in modules that mirror the
//! proto packages (generated code refers across packages by relative paths). The Monitor
//! server is generated apart, with the server codec, and included beside the messages. The
//! legacy wire protocol (`proto/legacy.proto`, package `msg`) is generated apart too, messages
//! only, with its own descriptor set.

mod generated {
    pub mod fastblock {
        pub mod monitor {
            pub mod v1 {
                tonic::include_proto!("fastblock.monitor.v1");
                include!(concat!(env!("OUT_DIR"), "/server/fastblock.monitor.v1.rs"));
            }
            pub mod store {
                pub mod v1 {
                    tonic::include_proto!("fastblock.monitor.store.v1");
                }
            }
            pub mod wire {
                pub mod v1 {
                    tonic::include_proto!("fastblock.monitor.wire.v1");
                }
            }
        }
    }
    pub mod msg {
        include!(concat!(env!("OUT_DIR"), "/msg.rs"));
    }
}

/// The framed protobuf protocol of the existing fastblock components (package `msg` on the
/// wire; framing and decoding in `crate::legacy`). Not our API: translated at the edge.
pub use generated::msg as legacy;

/// Values stored in etcd, `fastblock.monitor.store.v1`.
pub use generated::fastblock::monitor::store::v1 as store;
/// The public monitor API, `fastblock.monitor.v1`.
pub use generated::fastblock::monitor::v1 as monitor;
/// Field layouts of the messages served pre-encoded (see `crate::wire`).
pub use generated::fastblock::monitor::wire::v1 as wire;

/// Encoded descriptors of every file in `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fastblock_descriptor.bin"));

/// Encoded descriptors of `proto/legacy.proto` alone (kept out of [`FILE_DESCRIPTOR_SET`], so
/// gRPC reflection never lists the legacy messages).
pub const LEGACY_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/legacy_descriptor.bin"));

/// The Monitor service as the proto declares it, for the tests that hold lists of its calls
/// to it.
#[cfg(test)]
pub(crate) fn monitor_service() -> prost_types::ServiceDescriptorProto {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set");
    set.file
        .into_iter()
        .filter(|f| f.package() == "fastblock.monitor.v1")
        .flat_map(|f| f.service)
        .find(|s| s.name() == "Monitor")
        .expect("the Monitor service")
}

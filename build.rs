//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building needs no system
//! `protoc`. The encoded descriptor set is also kept for gRPC server reflection. The legacy wire
//! protocol (`proto/legacy.proto`, package `msg`) is compiled apart: it is not part of our API,
//! so it stays out of the reflection descriptors and out of the gRPC code generation.

use std::path::{Path, PathBuf};

/// The framed protobuf protocol of the existing fastblock components (port 3333).
const LEGACY_PROTO: &str = "legacy.proto";

const PROTOS: &[&str] = &[
    "fastblock/monitor/v1/monitor.proto",
    "fastblock/monitor/v1/store.proto",
    "fastblock/monitor/v1/wire.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;
    let descriptors = compiler.file_descriptor_set();
    std::fs::write(
        out_dir.join("fastblock_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Messages and the client, with tonic's codec.
    preencoded(tonic_prost_build::configure())
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors.clone())?;
    // The server alone, into a directory of its own, with a codec that answers undecodable
    // requests with INVALID_ARGUMENT (src/service/codec.rs); its messages are the ones above.
    let server_dir = out_dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    preencoded(tonic_prost_build::configure())
        .build_client(false)
        .build_server(true)
        .codec_path("crate::service::codec::ServerCodec")
        .out_dir(server_dir)
        .extern_path(".fastblock.monitor.v1", "crate::proto::monitor")
        .extern_path(".fastblock.monitor.store.v1", "crate::proto::store")
        .extern_path(".fastblock.monitor.wire.v1", "crate::proto::wire")
        .compile_fds(descriptors)?;
    compile_legacy(&out_dir)
}

/// Messages only (no client, no server: the legacy protocol is not gRPC), and their own
/// descriptor set, which the unit tests read to hold the generated code to the wire table.
fn compile_legacy(out_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true);
    compiler.open_files([LEGACY_PROTO])?;
    std::fs::write(
        out_dir.join("legacy_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Large maps are served pre-encoded (src/wire.rs); their field layouts are generated from
/// wire.proto.
fn preencoded(builder: tonic_prost_build::Builder) -> tonic_prost_build::Builder {
    builder
        .extern_path(".fastblock.monitor.v1.OsdMap", "crate::wire::OsdMap")
        .extern_path(".fastblock.monitor.v1.PoolPgMap", "crate::wire::PoolPgMap")
        .extern_path(
            ".fastblock.monitor.v1.WatchClusterMapResponse",
            "crate::wire::WatchClusterMapResponse",
        )
}

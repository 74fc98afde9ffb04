//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so building needs no system
//! `protoc`. The encoded descriptor set is also kept for gRPC server reflection.

use std::path::PathBuf;

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

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Large maps are served pre-encoded (src/wire.rs); their field layouts are generated
        // from wire.proto.
        .extern_path(".fastblock.monitor.v1.OsdMap", "crate::wire::OsdMap")
        .extern_path(".fastblock.monitor.v1.PoolPgMap", "crate::wire::PoolPgMap")
        .extern_path(
            ".fastblock.monitor.v1.WatchClusterMapResponse",
            "crate::wire::WatchClusterMapResponse",
        )
        .compile_fds(descriptors)?;
    Ok(())
}

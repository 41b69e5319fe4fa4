//! Generates the Rust types of `proto/*.proto` with prost and the controller's gRPC services (`RaftService`,
//! `ControllerService`)
//! with `tonic-prost-build`. `protoc` comes from `protoc-bin-vendored`, so a machine needs no
//! system `protoc`.

use std::io;

const PROTOS: [&str; 4] = [
    "proto/metadata.proto",
    "proto/raft.proto",
    "proto/raft_service.proto",
    "proto/controller_service.proto",
];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let mut config = tonic_prost_build::Config::new();
    // Passing the path here rather than through the PROTOC environment variable: setting a variable is
    // `unsafe` in edition 2024, and the workspace denies unsafe code.
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &PROTOS, &["proto"])?;
    Ok(())
}

//! Generates the Rust types of `proto/*.proto` with prost (through `tonic-prost-build`, which later also
//! generates the controller's gRPC services). `protoc` comes from `protoc-bin-vendored`, so a machine needs no
//! system `protoc`.

use std::io;

const PROTOS: [&str; 2] = ["proto/metadata.proto", "proto/raft.proto"];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let mut config = tonic_prost_build::Config::new();
    // Passing the path here rather than through the PROTOC environment variable: setting a variable is
    // `unsafe` in edition 2024, and the workspace denies unsafe code.
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_with_config(config, &PROTOS, &["proto"])?;
    Ok(())
}

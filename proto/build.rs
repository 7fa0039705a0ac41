//! Compiles `proto/` into Rust with a pure-Rust protobuf compiler (protox),
//! so building needs no `protoc`; pbjson adds the canonical proto3 JSON
//! mapping used by the CLI's `-o json`.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "ai/stigmer/commons/apiresource/metadata.proto",
    "ai/stigmer/agentic/executioncontext/v1/value.proto",
    "ai/stigmer/agentic/agentexecution/v1/enum.proto",
    "ai/stigmer/agentic/agentexecution/v1/spec.proto",
    "ai/stigmer/agentic/agentexecution/v1/status.proto",
    "ai/stigmer/agentic/agentexecution/v1/api.proto",
    "ai/stigmer/agentic/agentexecution/v1/io.proto",
    "stigmer/daemon/v1/delta.proto",
    "stigmer/daemon/v1/daemon.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(FILES, ["proto"])?;
    let descriptor_path = out.join("descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;

    let mut config = prost_build::Config::new();
    config
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .btree_map(["."])
        .bytes(["."]);
    config.compile_fds(fds)?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .btree_map([".ai", ".stigmer"])
        .build(&[".ai", ".stigmer"])?;
    Ok(())
}

//! Generates the etcd v3 gRPC client from `proto/` (this crate's own subset of
//! etcd's protobuf files) with a pure-Rust protobuf compiler (protox), so
//! building needs no `protoc`: the `etcd-client` crate runs protoc in its
//! build script, which is why this crate exists.

const FILES: &[&str] = &["mvccpb/kv.proto", "etcdserverpb/rpc.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(FILES, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        // Keys and values as `Bytes`: a watch event's value is then a view
        // of the received buffer, and cloning a `KeyValue` copies no data.
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}

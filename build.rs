//! Compiles the protobuf schemas in `proto/` into Rust types (OUT_DIR/shopscore.v1.rs,
//! included by `src/pb.rs`): the input events and the outputs. Uses `protox`, a pure-Rust protobuf
//! compiler, so building never needs `protoc` installed.

const PROTOS: &[&str] = &[
    "proto/shopscore/v1/orders.proto",
    "proto/shopscore/v1/logistics.proto",
    "proto/shopscore/v1/refunds.proto",
    "proto/shopscore/v1/service.proto",
    "proto/shopscore/v1/outputs.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    // Maps as BTreeMaps: a snapshot's windows are then encoded in key order, so the same
    // snapshot always has the same bytes.
    prost_build::Config::new().btree_map(["."]).compile_fds(fds)?;
    Ok(())
}

//! Compiles the wire contract in `proto/` with protoc (installed by
//! `.ci/install-deps`), and writes a file descriptor set for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("veritrail/v1/audit.proto"),
        root.join("veritrail/v1/admin.proto"),
        root.join("veritrail/raft/v1/raft.proto"),
    ];
    // The protos live outside this package, where cargo does not look for
    // changes by itself.
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Ordered maps: attributes convert to the core's BTreeMap without sorting.
        .btree_map(".")
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .file_descriptor_set_path(out.join("veritrail_descriptor.bin"))
        .compile_protos(&files, &[root])?;
    Ok(())
}

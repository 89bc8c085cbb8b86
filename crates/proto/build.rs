//! Compiles every .proto under the workspace's `proto/` with a vendored protoc, so a
//! fresh machine needs nothing installed, and writes the file descriptor set that
//! server reflection serves.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "concord/common/v1/common.proto",
        "concord/cluster/v1/cluster.proto",
        "concord/item/v1/item.proto",
        "concord/sharing/v1/sharing.proto",
        "concord/entity/v1/entity.proto",
        "concord/credit/v1/credit.proto",
        "concord/inspection/v1/inspection.proto",
        "concord/case/v1/case.proto",
        "concord/watch/v1/watch.proto",
        "concord/raft/v1/raft.proto",
    ];
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("concord_descriptor.bin"))
        .compile_protos(&paths, &[root])?;
    Ok(())
}

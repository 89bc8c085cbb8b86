//! Builds (or finds) the local node image from the workspace binary and prints its
//! name, e.g. `concord-node:3f9c…`: `cargo run -p concord-tests --example node_image`.
//! No registry is involved (see docs/reliability.md).

fn main() -> anyhow::Result<()> {
    println!("{}", concord_tests::docker::ensure_image()?);
    Ok(())
}

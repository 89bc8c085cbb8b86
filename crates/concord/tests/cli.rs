//! The binary's command line: a misconfigured node refuses to start and names the
//! setting. (Also makes `cargo test` build the `concord` binary the process tests run.)

use std::process::Command;

fn concord() -> Command {
    Command::new(env!("CARGO_BIN_EXE_concord"))
}

#[test]
fn a_node_with_a_bad_setting_exits_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = concord()
        .arg("node")
        .env("CONCORD_NODE_ID", "1")
        .env("CONCORD_DEPARTMENT", "samr")
        .env("CONCORD_LISTEN", "127.0.0.1:0")
        .env("CONCORD_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("department"), "{stderr}");
}

#[test]
fn a_config_file_with_an_unknown_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "node_id = 1\ndepartment = \"SAMR\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\nlisten_adress = \"x\"\n").unwrap();
    let out = concord()
        .arg("node")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

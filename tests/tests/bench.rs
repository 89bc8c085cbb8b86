//! `concord bench --local`: the standard suite runs against a fresh three-node
//! cluster and prints one line of figures per run, with no errors. (The figures
//! themselves are not asserted: timing stays out of tests, see docs/performance.md.)
//! `--scale` loads a cluster and measures restart and a learner's catch-up; `--apply`
//! times one node's state machine alone.

use std::process::Command;

/// `target/<profile>/concord`, next to this test's `deps/` directory.
fn concord_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("concord")
}

/// Runs `concord bench ARGS --dir DIR`, asserts it succeeded, returns its stdout.
fn bench(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new(concord_binary())
        .arg("bench")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run concord bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The printed line of `op` with `clients` clients, asserted to count some
/// operations and no errors.
fn clean_line<'a>(stdout: &'a str, op: &str, clients: usize) -> &'a str {
    let line = stdout
        .lines()
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
    line
}

#[test]
fn the_standard_suite_prints_a_line_per_run_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = concord_tests::free_ports(3).to_string();
    let stdout = bench(
        &["--local", "--duration", "1", "--base-port", &port],
        &dir.path().join("bench"),
    );
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
        let line = clean_line(&stdout, op, clients);
        assert!(line.contains("rss MB "), "{line}");
    }
}

#[test]
fn the_scale_mode_loads_then_measures_memory_restart_and_a_learners_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = concord_tests::free_ports(4).to_string();
    let stdout = bench(
        &[
            "--local",
            "--scale",
            "2000",
            "--clients",
            "16",
            "--base-port",
            &port,
        ],
        &dir.path().join("scale"),
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

#[test]
fn the_apply_mode_applies_every_push_and_prints_the_cpu_per_write() {
    let dir = tempfile::tempdir().unwrap();
    // The command fails when the domain refuses any of the pushes.
    let stdout = bench(
        &["--apply", "300", "--batch", "7"],
        &dir.path().join("apply"),
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Apply PushCase"))
        .unwrap_or_else(|| panic!("no Apply line in:\n{stdout}"));
    assert!(line.contains("writes 300 batch 7 "), "{line}");
    for figure in [
        "state machine ",
        "with fjall's own threads ",
        "domain alone ",
    ] {
        let value: f64 = line
            .split(figure)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no {figure:?} figure in {line}"));
        assert!(value > 0.0, "{line}");
    }
    // A second run wipes --dir first instead of applying onto the old state.
    bench(&["--apply", "10"], &dir.path().join("apply"));
}

/// `--etcd`: the anchor, etcd, under the same load generator. Each write and
/// read line of the suite runs against three etcd members without errors (a read
/// that finds no key counts as an error), so the two tables compare like with like.
#[test]
fn the_etcd_mode_runs_the_suites_writes_and_reads_against_etcd() {
    if !concord_tests::require_tool("etcd", "--version", "apt-get install etcd-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = concord_tests::free_ports(13).to_string();
    let stdout = bench(
        &["--local", "--etcd", "--duration", "1", "--base-port", &port],
        &dir.path().join("etcd"),
    );
    assert!(
        stdout.starts_with("concord bench: etcd, 3 members"),
        "header: {stdout}"
    );
    for (op, clients) in [
        ("etcd Put", 1),
        ("etcd Put", 64),
        ("etcd Put", 256),
        ("etcd RangeLinear", 64),
        ("etcd RangeSerial", 64),
    ] {
        clean_line(&stdout, op, clients);
    }
}

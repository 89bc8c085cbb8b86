//! The Helm chart: lint, render with several values sets, validate every manifest
//! against the Kubernetes schemas, and boot the rendered StatefulSet in Docker
//! (helm/tests/test_chart.py, offline: helm-python-sdk embeds Helm v4), with its own
//! dev CA too, then upgrade it through voter and department changes. In CI the
//! tools and Docker must be there; elsewhere their absence skips the test.

use std::path::Path;
use std::process::Command;

use concord_tests::docker::{ensure_image, require_docker, workspace_binary};

#[test]
fn the_chart_lints_renders_validates_and_boots_a_cluster() {
    let has_tools = Command::new("python3")
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_tools {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but helm-python-sdk, kubernetes-validate or PyYAML is missing"
        );
        eprintln!("SKIPPED: pip install helm-python-sdk kubernetes-validate pyyaml");
        return;
    }
    if !require_docker() {
        return;
    }
    let image = ensure_image().expect("node image");
    let bin = workspace_binary().expect("concord binary");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/tests/test_chart.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("CONCORD_IMAGE", &image)
        .env("CONCORD_BIN", &bin)
        .output()
        .expect("run the chart test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "chart test failed:\n{text}");
    assert!(text.contains("ok: boot (default)"), "{text}");
    assert!(
        text.contains("ok: boot (learners beyond the voters)"),
        "{text}"
    );
    // tls.devCA: the nodes issue their own certificates from the chart's CA, and an
    // admin certificate from that CA is accepted.
    assert!(text.contains("ok: boot (dev CA)"), "{text}");
    // Membership follows `voters` and `departments` through upgrades by itself.
    for step in [
        "ok: scale (5 departments, 5 voters): 5 members, voters [1, 2, 3, 4, 5]",
        "ok: scale (5 departments, 3 voters): 5 members",
        "ok: scale (3 departments, 3 voters): 3 members, voters [1, 2, 3]",
    ] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
}

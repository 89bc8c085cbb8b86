#!/usr/bin/env python3
"""Chart tests, offline: lint, render with several values sets, validate every
manifest against the Kubernetes schemas, then boot the rendered StatefulSet in
Docker — each pod a container started with exactly the command, environment,
volumes and host name the rendered pod spec gives it — and check the pods form one
cluster that serves.

Needs: helm-python-sdk, kubernetes-validate, PyYAML, Docker, grpcurl, and the
`concord` binary (CONCORD_BIN) and local node image (CONCORD_IMAGE).
Usage: python3 helm/tests/test_chart.py [--no-boot]
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import helm_python as helm
import kubernetes_validate
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "concord")
KUBE = "1.30"
NAMESPACE = "gov"
RELEASE = "concord"

VALUES_SETS = {
    "default": {},
    "five voters": {"departments": ["SAMR", "TRANS", "JUST", "ECO", "EMER"], "voters": 5},
    "external certs": {"tls": {"existingSecret": "yangquan-concord-certs"}},
    "no persistence": {"persistence": {"enabled": False}},
    "learners beyond the voters": {"departments": ["SAMR", "TRANS", "JUST", "NDRC"], "voters": 3},
}


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def render(chart, values):
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for d in yaml.safe_load_all(text):
            if d:
                docs.append(d)
    return docs, out


def check_values_set(chart, name, values):
    docs, out = render(chart, values)
    for d in docs:
        try:
            kubernetes_validate.validate(d, KUBE, strict=True)
        except kubernetes_validate.ValidationError as e:
            fail(f"{name}: {d['kind']} {d['metadata']['name']}: {e.message}")
    merged = chart.merge_values(values)
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sts) != 1:
        fail(f"{name}: {len(sts)} StatefulSets")
    spec = sts[0]["spec"]
    if spec["replicas"] != len(merged["departments"]):
        fail(f"{name}: replicas {spec['replicas']} for {len(merged['departments'])} departments")
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if c[probe].get("grpc", {}).get("port") != merged["ports"]["ops"]:
            fail(f"{name}: {probe} is not a gRPC probe on the ops port")
    if pod["securityContext"].get("runAsNonRoot") is not True:
        fail(f"{name}: pods may run as root")
    has_claims = "volumeClaimTemplates" in spec
    if has_claims != merged["persistence"]["enabled"]:
        fail(f"{name}: volume claims {has_claims} with persistence {merged['persistence']['enabled']}")
    secret = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]
    if secret != merged["tls"]["existingSecret"]:
        fail(f"{name}: TLS secret {secret}")
    services = [d for d in docs if d["kind"] == "Service"]
    if len(services) != len(merged["departments"]) + 2:
        fail(f"{name}: {len(services)} services")
    if not any(d["kind"] == "PodDisruptionBudget" for d in docs):
        fail(f"{name}: no PodDisruptionBudget")
    notes = next(v for k, v in out.items() if k.endswith("NOTES.txt"))
    if "grpcurl" not in notes:
        fail(f"{name}: NOTES has no grpcurl commands")
    print(f"ok: values set '{name}': {len(docs)} manifests valid for Kubernetes {KUBE}")
    return docs


def run(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        fail(f"{' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def pod_env(container, index):
    """The environment the kubelet gives pod `index`: fieldRefs resolved, $(VAR) expanded."""
    env = {}
    for e in container["env"]:
        if "value" in e:
            v = e["value"]
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            v = {
                "metadata.labels['apps.kubernetes.io/pod-index']": str(index),
                "metadata.namespace": NAMESPACE,
            }[path]
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), v)
    return env


def boot(label, docs):
    image = os.environ.get("CONCORD_IMAGE") or fail("CONCORD_IMAGE is not set")
    binary = os.environ.get("CONCORD_BIN") or fail("CONCORD_BIN is not set")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    peers = sts["spec"]["serviceName"]
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env0 = pod_env(c, 0)
    departments = env0["CONCORD_DEPARTMENTS"].split(",")
    grpc_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
    ops_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "ops")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    ctx = c["securityContext"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    work = tempfile.mkdtemp(prefix="concord-chart-")
    pki, secret = os.path.join(work, "pki"), os.path.join(work, "secret")
    os.makedirs(secret)
    fqdn = lambda i: f"{sts['metadata']['name']}-{i}.{peers}.{NAMESPACE}.svc.cluster.local"
    # The Secret, made as NOTES.txt says.
    run(binary, "pki", "init", "--dir", pki)
    shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(secret, "ca.pem"))
    for i, d in enumerate(departments):
        run(binary, "pki", "issue", "--dir", pki, "--department", d, "--role", "node",
            "--name", "node", "--host", fqdn(i))
        for ext in ("pem", "key"):
            shutil.copy(os.path.join(pki, f"{d}-node-node.{ext}"), os.path.join(secret, f"{d}-node.{ext}"))
    run(binary, "pki", "issue", "--dir", pki, "--department", "BIGDATA", "--role", "admin", "--name", "operator")
    run(binary, "pki", "issue", "--dir", pki, "--department", departments[0], "--role", "client", "--name", "app")
    for f in os.listdir(secret):
        os.chmod(os.path.join(secret, f), 0o444)  # the Secret's defaultMode, readable by fsGroup
    net = f"concord-chart-{uuid.uuid4().hex[:8]}"
    names = []
    run("docker", "network", "create", net)
    try:
        for i in range(len(departments)):
            env = pod_env(c, i)
            name = f"{net}-{sts['metadata']['name']}-{i}"
            names.append(name)
            args = ["docker", "run", "-d", "--name", name, "--network", net,
                    "--network-alias", fqdn(i), "--hostname", f"{sts['metadata']['name']}-{i}",
                    "--user", user, "--cap-drop", "ALL",
                    "--security-opt", "no-new-privileges",
                    "--tmpfs", f"{mounts['data']}:rw,uid=65532,gid=65532,mode=0700",
                    "-v", f"{secret}:{mounts['tls']}:ro",
                    "-p", f"127.0.0.1::{grpc_port}", "-p", f"127.0.0.1::{ops_port}"]
            if ctx.get("readOnlyRootFilesystem"):
                args.append("--read-only")
            for k, v in env.items():
                args += ["-e", f"{k}={v}"]
            args += [image] + c.get("args", [])
            run(*args)
        port = lambda name, p: run("docker", "port", name, f"{p}/tcp").stdout.strip().splitlines()[0].rsplit(":", 1)[1]
        # The probes: grpc.health.v1 on the ops port, as the kubelet calls it.
        deadline = time.time() + 60
        for name in names:
            while True:
                r = run("grpcurl", "-plaintext", "-max-time", "2", f"127.0.0.1:{port(name, ops_port)}",
                        "grpc.health.v1.Health/Check", check=False)
                if '"SERVING"' in r.stdout:
                    break
                if time.time() > deadline:
                    logs = run("docker", "logs", name, check=False)
                    fail(f"{name} never became ready: {r.stderr}\n{logs.stdout}{logs.stderr}")
                time.sleep(0.5)
        admin = ["-cacert", f"{pki}/ca.pem", "-cert", f"{pki}/BIGDATA-admin-operator.pem",
                 "-key", f"{pki}/BIGDATA-admin-operator.key"]
        # Every pod becomes a member without anyone's help: the first `voters` from
        # pod 0's bootstrap, the rest by joining as learners.
        status, last = None, ""
        while time.time() < deadline:
            r = run("grpcurl", *admin, "-servername", fqdn(0), f"127.0.0.1:{port(names[0], grpc_port)}",
                    "concord.cluster.v1.ClusterService/Status", check=False)
            last = r.stdout + r.stderr
            if r.returncode == 0 and '"leaderId"' in r.stdout:
                s = json.loads(r.stdout)
                if len(s.get("members", [])) == len(departments):
                    status = s
                    break
            time.sleep(0.5)
        if not status:
            fail(f"the rendered pods did not all become members: {last}")
        voters = [m for m in status.get("members", []) if m.get("voter")]
        if len(voters) != int(env0["CONCORD_VOTERS"]):
            fail(f"{len(voters)} voters: {status}")
        # A department's write through its own pod, by the names the chart gives.
        client = ["-cacert", f"{pki}/ca.pem", "-cert", f"{pki}/{departments[0]}-client-app.pem",
                  "-key", f"{pki}/{departments[0]}-client-app.key"]
        entity = {"request_id": "chart-boot", "entity": {"uscc": "91140311729YDWUJ0U", "name": "郊区成品油经营有限公司",
                  "district": "郊区", "industry": "refined_oil", "licence": "ACTIVE"}}
        r = run("grpcurl", *client, "-servername", fqdn(0), "-d", json.dumps(entity, ensure_ascii=False),
                f"127.0.0.1:{port(names[0], grpc_port)}", "concord.entity.v1.EntityService/RegisterEntity", check=False)
        if r.returncode != 0:
            fail(f"RegisterEntity through pod 0: {r.stderr}")
        leader = status["leaderId"]
        print(f"ok: boot ({label}): {len(names)} pods from the rendered StatefulSet formed a cluster "
              f"(leader node {leader}, {len(voters)} voters, {len(names) - len(voters)} learners joined), "
              f"probes SERVING, a write served")
    finally:
        for name in names:
            run("docker", "rm", "-f", name, check=False)
        run("docker", "network", "rm", net, check=False)
        shutil.rmtree(work, ignore_errors=True)


def main():
    report = helm.lint(CHART, strict=True, kube_version=f"v{KUBE}.0")
    errors = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
    if errors:
        fail(f"helm lint: {errors}")
    print(f"ok: helm lint (strict, Kubernetes {KUBE}): {report.get('total_charts_linted')} chart, no warnings")
    chart = helm.Chart.load(CHART)
    # A bad value is refused by the schema.
    try:
        chart.render({"voters": "three"}, name=RELEASE, namespace=NAMESPACE)
        fail("voters: \"three\" was accepted")
    except helm.errors.HelmError as e:
        print(f"ok: schema refuses voters: \"three\" ({type(e).__name__})")
    rendered = {name: check_values_set(chart, name, values) for name, values in VALUES_SETS.items()}
    if "--no-boot" not in sys.argv:
        boot("default", rendered["default"])
        boot("learners beyond the voters", rendered["learners beyond the voters"])


if __name__ == "__main__":
    main()

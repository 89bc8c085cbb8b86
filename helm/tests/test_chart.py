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

import base64
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
    "dev CA": {"tls": {"devCA": True}},
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
    expected = f"{RELEASE}-dev-ca" if merged["tls"]["devCA"] else merged["tls"]["existingSecret"]
    if secret != expected:
        fail(f"{name}: TLS secret {secret}")
    if merged["tls"]["devCA"] != any(d["kind"] == "Secret" and d["metadata"]["name"] == secret for d in docs):
        fail(f"{name}: the dev CA Secret is rendered only with tls.devCA")
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


class Cluster:
    """The rendered StatefulSet's pods as containers on one Docker network: each
    started with exactly the command, environment, volumes, user and host name its
    pod spec gives it. Data directories are host directories owned by the pods'
    user, so a pod recreated by an upgrade keeps its volume, as with a PVC."""

    def __init__(self, docs):
        self.image = os.environ.get("CONCORD_IMAGE") or fail("CONCORD_IMAGE is not set")
        self.binary = os.environ.get("CONCORD_BIN") or fail("CONCORD_BIN is not set")
        self.work = tempfile.mkdtemp(prefix="concord-chart-")
        self.net = f"concord-chart-{uuid.uuid4().hex[:8]}"
        self.pods = {}
        self.render(docs)
        run("docker", "network", "create", self.net)
        self.make_pki(docs)

    def render(self, docs):
        """Takes a (re)rendered release: what pods started from now on get."""
        self.docs = docs
        self.sts = next(d for d in docs if d["kind"] == "StatefulSet")
        self.peers = self.sts["spec"]["serviceName"]
        self.pod = self.sts["spec"]["template"]["spec"]
        self.c = self.pod["containers"][0]
        self.env0 = pod_env(self.c, 0)
        self.departments = self.env0["CONCORD_DEPARTMENTS"].split(",")
        self.grpc_port = next(p["containerPort"] for p in self.c["ports"] if p["name"] == "grpc")
        self.ops_port = next(p["containerPort"] for p in self.c["ports"] if p["name"] == "ops")

    def fqdn(self, i):
        return f"{self.sts['metadata']['name']}-{i}.{self.peers}.{NAMESPACE}.svc.cluster.local"

    def make_pki(self, docs):
        """The TLS Secret: the chart's own dev CA when it renders one, else made as
        NOTES.txt says. Either way operators' certificates come from its CA."""
        pki, secret = os.path.join(self.work, "pki"), os.path.join(self.work, "secret")
        self.pki = pki
        self.secrets = {}
        os.makedirs(secret)
        rendered = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
        tls = next(v for v in self.pod["volumes"] if v["name"] == "tls")["secret"]["secretName"]
        if tls in rendered:
            os.makedirs(pki)
            for k, v in rendered[tls]["data"].items():
                with open(os.path.join(pki, k), "wb") as f:
                    f.write(base64.b64decode(v))
                shutil.copy(os.path.join(pki, k), os.path.join(secret, k))
        else:
            run(self.binary, "pki", "init", "--dir", pki)
            shutil.copy(os.path.join(pki, "ca.pem"), os.path.join(secret, "ca.pem"))
            for i, d in enumerate(self.departments):
                run(self.binary, "pki", "issue", "--dir", pki, "--department", d, "--role", "node",
                    "--name", "node", "--host", self.fqdn(i))
                for ext in ("pem", "key"):
                    shutil.copy(os.path.join(pki, f"{d}-node-node.{ext}"), os.path.join(secret, f"{d}-node.{ext}"))
        self.secrets[tls] = secret
        run(self.binary, "pki", "issue", "--dir", pki, "--department", "BIGDATA", "--role", "admin", "--name", "operator")
        run(self.binary, "pki", "issue", "--dir", pki, "--department", self.departments[0], "--role", "client", "--name", "app")
        for f in os.listdir(secret):
            os.chmod(os.path.join(secret, f), 0o444)  # the Secret's defaultMode, readable by fsGroup

    def start(self, i):
        env = pod_env(self.c, i)
        name = f"{self.net}-{self.sts['metadata']['name']}-{i}"
        user = f"{self.pod['securityContext']['runAsUser']}:{self.pod['securityContext']['runAsGroup']}"
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        args = ["docker", "run", "-d", "--name", name, "--network", self.net,
                "--network-alias", self.fqdn(i), "--hostname", f"{self.sts['metadata']['name']}-{i}",
                "--user", user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "-p", f"127.0.0.1::{self.grpc_port}", "-p", f"127.0.0.1::{self.ops_port}"]
        for m in self.c["volumeMounts"]:
            v = volumes.get(m["name"], {})
            if "secret" in v:
                args += ["-v", f"{self.secrets[v['secret']['secretName']]}:{m['mountPath']}:ro"]
            elif "emptyDir" in v and m["name"] != "data":
                args += ["--tmpfs", f"{m['mountPath']}:rw,uid=65532,gid=65532,mode=0700"]
            else:  # the data volume: a PVC, or an emptyDir without persistence
                data = os.path.join(self.work, f"data-{i}")
                os.makedirs(data, mode=0o700, exist_ok=True)
                os.chown(data, 65532, 65532)
                args += ["-v", f"{data}:{m['mountPath']}"]
        if self.c["securityContext"].get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        args += [self.image] + self.c.get("args", [])
        run("docker", "rm", "-f", name, check=False)
        run(*args)
        self.pods[i] = name

    def stop(self, i):
        run("docker", "rm", "-f", self.pods.pop(i), check=False)

    def port(self, i, p):
        out = run("docker", "port", self.pods[i], f"{p}/tcp").stdout.strip().splitlines()[0]
        return out.rsplit(":", 1)[1]

    def wait_ready(self, i, deadline):
        """The probes: grpc.health.v1 on the ops port, as the kubelet calls it."""
        while True:
            r = run("grpcurl", "-plaintext", "-max-time", "2", f"127.0.0.1:{self.port(i, self.ops_port)}",
                    "grpc.health.v1.Health/Check", check=False)
            if '"SERVING"' in r.stdout:
                return
            if time.time() > deadline:
                logs = run("docker", "logs", self.pods[i], check=False)
                fail(f"pod {i} never became ready: {r.stderr}\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)

    def grpcurl(self, i, method, cert, data=None):
        args = ["grpcurl", "-cacert", f"{self.pki}/ca.pem", "-cert", f"{self.pki}/{cert}.pem",
                "-key", f"{self.pki}/{cert}.key", "-servername", self.fqdn(i)]
        if data is not None:
            args += ["-d", json.dumps(data, ensure_ascii=False)]
        return run(*args, f"127.0.0.1:{self.port(i, self.grpc_port)}", method, check=False)

    def wait_members(self, voters, members, within=90):
        """Polls Status at pod 0 until the membership is `voters` voters among
        `members` members; returns the status."""
        deadline, last = time.time() + within, ""
        while time.time() < deadline:
            r = self.grpcurl(0, "concord.cluster.v1.ClusterService/Status", "BIGDATA-admin-operator")
            last = r.stdout + r.stderr
            if r.returncode == 0 and '"leaderId"' in r.stdout:
                s = json.loads(r.stdout)
                ms = s.get("members", [])
                if len(ms) == members and len([m for m in ms if m.get("voter")]) == voters:
                    return s
            time.sleep(0.5)
        fail(f"no membership of {voters} voters among {members} members: {last}")

    def write(self, request_id):
        """A department's write through its own pod, by the names the chart gives."""
        entity = {"request_id": request_id, "entity": {"uscc": "91140311729YDWUJ0U", "name": "郊区成品油经营有限公司",
                  "district": "郊区", "industry": "refined_oil", "licence": "ACTIVE"}}
        r = self.grpcurl(0, "concord.entity.v1.EntityService/RegisterEntity", f"{self.departments[0]}-client-app", entity)
        if r.returncode != 0 and "AlreadyExists" not in r.stderr:
            fail(f"RegisterEntity through pod 0: {r.stderr}")

    def upgrade(self, docs):
        """`helm upgrade`: pods beyond the new replica count are deleted, then the
        rest are replaced highest ordinal first, each once the last is ready, and
        new pods are created (podManagementPolicy Parallel)."""
        old = len(self.departments)
        self.render(docs)
        new = len(self.departments)
        for i in range(new, old):
            self.stop(i)
        for i in range(old, new):
            self.start(i)
        for i in reversed(range(min(old, new))):
            self.stop(i)
            self.start(i)
            self.wait_ready(i, time.time() + 60)

    def close(self):
        for i in list(self.pods):
            self.stop(i)
        run("docker", "network", "rm", self.net, check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def boot(label, docs):
    cluster = Cluster(docs)
    try:
        for i in range(len(cluster.departments)):
            cluster.start(i)
        deadline = time.time() + 60
        for i in range(len(cluster.departments)):
            cluster.wait_ready(i, deadline)
        # Every pod becomes a member without anyone's help: the first `voters` from
        # pod 0's bootstrap, the rest by joining as learners.
        voters = int(cluster.env0["CONCORD_VOTERS"])
        status = cluster.wait_members(voters, len(cluster.departments))
        cluster.write("chart-boot")
        print(f"ok: boot ({label}): {len(cluster.departments)} pods from the rendered StatefulSet formed a cluster "
              f"(leader node {status['leaderId']}, {voters} voters, {len(cluster.departments) - voters} learners joined), "
              f"probes SERVING, a write served")
    finally:
        cluster.close()


def scale(chart):
    """Membership keeps itself through upgrades: more voters, fewer voters, fewer pods.
    With the dev CA, so a department added by an upgrade needs no new Secret entry."""
    steps = [
        ("4 departments, 3 voters", {"departments": ["SAMR", "TRANS", "JUST", "NDRC"], "voters": 3}),
        ("5 departments, 5 voters", {"departments": ["SAMR", "TRANS", "JUST", "NDRC", "ECO"], "voters": 5}),
        ("5 departments, 3 voters", {"departments": ["SAMR", "TRANS", "JUST", "NDRC", "ECO"], "voters": 3}),
        ("3 departments, 3 voters", {"departments": ["SAMR", "TRANS", "JUST"], "voters": 3}),
    ]
    steps = [(label, {**values, "tls": {"devCA": True}}) for label, values in steps]
    cluster = None
    try:
        for n, (label, values) in enumerate(steps):
            docs, _ = render(chart, values)
            if cluster is None:
                cluster = Cluster(docs)
                for i in range(len(cluster.departments)):
                    cluster.start(i)
            else:
                cluster.upgrade(docs)
            s = cluster.wait_members(values["voters"], len(values["departments"]))
            cluster.write(f"chart-scale-{n}")
            ids = sorted(int(m["nodeId"]) for m in s["members"] if m.get("voter"))
            print(f"ok: scale ({label}): {len(s['members'])} members, voters {ids}, a write served")
    finally:
        if cluster:
            cluster.close()


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
        boot("dev CA", rendered["dev CA"])
        scale(chart)


if __name__ == "__main__":
    main()

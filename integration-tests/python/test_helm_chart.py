"""The Helm chart (helm/secondpass), its example values and the Grafana dashboard.

Runs helm/check.py (helm lint, helm template, kubernetes-validate --strict, promtool)
and asserts facts of the rendered manifests. Needs the pinned helm-python-sdk and
kubernetes-validate of requirements.txt; everything runs offline (Helm's Go SDK is a
shared library inside helm-python-sdk: no helm binary, no cluster).

    .local/venv/bin/python -m pytest integration-tests/python/test_helm_chart.py -q
"""

from __future__ import annotations

import base64
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "helm"))
import check as chart_check  # noqa: E402  (helm/check.py)
from support import missing, under_ci  # noqa: E402

try:
    import helm_python as helm  # noqa: E402
except ImportError as e:
    if under_ci():
        raise  # under CI every test of this module fails, as a collection error
    pytest.skip(f"helm-python-sdk missing ({e}): pip install -r integration-tests/python/requirements.txt",
                allow_module_level=True)

EXAMPLES = {p.stem: p for p in chart_check.EXAMPLES.glob("*.yaml") if p != chart_check.SIDECAR_EXAMPLE}
CASES = ["default", *sorted(EXAMPLES)]
SECRET_ADMIN = "adm-9f2c1b7e-not-in-configmap"
SECRET_COHERE = "co-4d1e8a55-not-in-configmap"


def values_of(case: str) -> dict:
    return {} if case == "default" else yaml.safe_load(EXAMPLES[case].read_text())


def render(values: dict | None = None, **kw) -> list[dict]:
    return chart_check.render(values or {}, **kw)[0]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def workload(docs: list[dict]) -> dict:
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1
    return found[0]


def container(docs: list[dict], name: str = "secondpass") -> dict:
    spec = workload(docs)["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def env_of(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {case: render(values_of(case)) for case in CASES}


# ------------------------------------------------------------------ the checks


def test_chart_checks_pass(tmp_path):
    """helm lint + helm template + kubernetes-validate --strict + promtool, as helm/check.py runs them."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "helm" / "check.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert " 0 failures" in last
    # every case was rendered and validated against both Kubernetes versions
    for case in CASES:
        assert f"== {case}:" in proc.stdout
    assert proc.stdout.count("kubernetes-validate --strict -k 1.25.0") >= len(CASES) + 1
    assert proc.stdout.count("kubernetes-validate --strict -k 1.37.0") >= len(CASES) + 1
    assert "skipped by kubernetes-validate (CRD kinds, no schema): PrometheusRule" in proc.stdout
    assert list(tmp_path.glob("full-monitoring/*-servicemonitor-*.yaml"))
    # the alert rules and the dashboard's queries went through promtool
    if not shutil.which("promtool"):
        missing("promtool (scripts/setup --promtool): the rule and dashboard checks did not run")
    assert "promtool check rules: SUCCESS" in proc.stdout
    assert "panel queries: ok" in proc.stdout


def test_no_network_needed(tmp_path):
    """Rendering and linting work without any network: in a network namespace of their own
    (`unshare -rn`: a user namespace too, so no privileges are needed), where the only
    interface is a loopback that is down."""
    unshare = shutil.which("unshare")
    if not unshare:
        missing("unshare (util-linux; scripts/setup --test-tools)")
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        missing(f"unshare -rn cannot create a network namespace here: {probe.stderr.strip()}")
    code = (
        "import socket, sys; sys.path.insert(0, 'helm'); import check, helm_python as h; "
        "assert [n for _, n in socket.if_nameindex()] == ['lo'], socket.if_nameindex(); "
        "docs, _ = check.render({}); r = h.lint(check.CHART); "
        "assert docs and not r['errors']; print(len(docs))"
    )
    proc = subprocess.run([unshare, "-rn", sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 5, proc.stdout


# ------------------------------------------------------------------ rendered facts


@pytest.mark.parametrize("case", CASES)
def test_probes_point_at_admin_health_endpoints(rendered, case):
    c = container(rendered[case])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["rest"] == 7333 and ports["admin"] == 7335
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}


@pytest.mark.parametrize("case", CASES)
def test_security_context(rendered, case):
    pod = workload(rendered[case])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
        assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, c["name"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("case", CASES)
def test_config_is_toml_mounted_and_checksummed(rendered, case):
    docs = rendered[case]
    cm = one(docs, "ConfigMap")
    cfg = tomllib.loads(cm["data"]["secondpass.toml"])
    want = values_of(case).get("config") or helm.Chart.load(chart_check.CHART).values["config"]
    for section, body in want.items():
        assert section in cfg
    # whole numbers stay integers (Helm's own toToml would write 100.0)
    if "collections" in cfg and "default" in cfg["collections"] and "pool" in cfg["collections"]["default"]:
        assert isinstance(cfg["collections"]["default"]["pool"], int)
    tpl = workload(docs)["spec"]["template"]
    assert len(tpl["metadata"]["annotations"]["checksum/config"]) == 64
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/secondpass" and mounts["config"]["readOnly"] is True
    assert container(docs)["args"] == ["serve", "--config", "/etc/secondpass/secondpass.toml"]


def test_config_change_rolls_pods():
    a = workload(render({}))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = workload(render({"config": {"collections": {"docs": {"enabled": True}}}}))
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != a


def test_configmap_never_holds_secrets():
    docs = render({
        "secrets": {"create": True, "adminToken": SECRET_ADMIN, "apiKeys": {"COHERE_API_KEY": SECRET_COHERE}},
        "config": {"collections": {"docs": {"enabled": True}}},
    })
    cm = one(docs, "ConfigMap")
    text = yaml.safe_dump(cm)
    assert SECRET_ADMIN not in text and SECRET_COHERE not in text
    # the plain values appear nowhere in the manifests; the Secret holds them base64-encoded
    everything = yaml.safe_dump_all(docs)
    assert SECRET_ADMIN not in everything and SECRET_COHERE not in everything
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["admin-token"]).decode() == SECRET_ADMIN
    assert base64.b64decode(secret["data"]["COHERE_API_KEY"]).decode() == SECRET_COHERE
    env = env_of(container(docs))
    name = secret["metadata"]["name"]
    assert env["SECONDPASS_ADMIN_TOKEN"] == {"secretKeyRef": {"name": name, "key": "admin-token", "optional": False}}
    assert env["COHERE_API_KEY"] == {"secretKeyRef": {"name": name, "key": "COHERE_API_KEY"}}
    ann = workload(docs)["spec"]["template"]["metadata"]["annotations"]
    assert len(ann["checksum/secret"]) == 64


def test_existing_secret_is_referenced_not_created(rendered):
    docs = rendered["full-monitoring"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = env_of(container(docs))
    assert env["SECONDPASS_ADMIN_TOKEN"]["secretKeyRef"]["name"] == "secondpass-secrets"
    assert env["SECONDPASS_ADMIN_TOKEN"]["secretKeyRef"]["optional"] is True
    assert env["COHERE_API_KEY"] == {"secretKeyRef": {"name": "secondpass-secrets", "key": "COHERE_API_KEY"}}


@pytest.mark.parametrize("key", ["api_key", "admin_token", "password"])
def test_secret_like_config_keys_are_refused(key):
    with pytest.raises(helm.HelmError, match="looks like a secret"):
        render({"config": {"rerankers": {"hosted": {"kind": "cohere", key: "xyz"}}}})


def test_gpu_example(rendered):
    docs = rendered["gpu"]
    c = container(docs)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith(":0.1.0-cuda")
    assert env_of(c)["SECONDPASS__RERANKERS__LOCAL__DEVICE"] == "cuda:0"
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # the CPU default requests no GPU
    assert "nvidia.com/gpu" not in container(rendered["default"])["resources"].get("limits", {})
    assert "SECONDPASS__RERANKERS__LOCAL__DEVICE" not in env_of(container(rendered["default"]))


def test_pod_with_qdrant_renders_both_containers(rendered):
    docs = rendered["pod-with-qdrant"]
    sts = one(docs, "StatefulSet")
    assert not [d for d in docs if d["kind"] == "Deployment"]
    names = [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]]
    assert names == ["qdrant", "secondpass"]
    q = container(docs, "qdrant")
    assert q["image"] == "qdrant/qdrant:v1.18.3"
    assert q["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {m["mountPath"] for m in q["volumeMounts"]} >= {"/qdrant/storage", "/qdrant/snapshots"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "qdrant-storage"
    env = env_of(container(docs))
    assert env["SECONDPASS__UPSTREAM__URL"] == "http://localhost:6333"
    assert env["SECONDPASS__UPSTREAM__GRPC_URL"] == "http://localhost:6334"
    svc = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    # clients reach secondpass (here on Qdrant's port numbers), not Qdrant
    assert ports == {"rest": (6333, "rest"), "grpc": (6334, "grpc"), "admin": (7335, "admin")}


def test_standalone_default(rendered):
    docs = rendered["default"]
    assert workload(docs)["kind"] == "Deployment"
    svc = one(docs, "Service")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"rest": 7333, "grpc": 7334, "admin": 7335}
    env = env_of(container(docs))
    assert env["SECONDPASS__UPSTREAM__URL"] == "http://qdrant:6333"
    assert env["SECONDPASS__UPSTREAM__GRPC_URL"] == "http://qdrant:6334"
    assert env["SECONDPASS__SERVER__GRPC_LISTEN"] == "0.0.0.0:7334"
    assert env["SECONDPASS__RERANKERS__LOCAL__MODEL_DIR"] == "/models/default"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Secret"}


def test_grpc_can_be_turned_off():
    docs = render({"grpc": {"enabled": False}})
    assert "grpc" not in {p["name"] for p in one(docs, "Service")["spec"]["ports"]}
    assert not [k for k in env_of(container(docs)) if "GRPC" in k]


def test_model_sources(rendered):
    hf = rendered["hf-download"]
    init = workload(hf)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "model-download"
    ienv = env_of(init)
    assert ienv["HF_REPO"] == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert ienv["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN", "optional": True}}
    model_dir = env_of(container(hf))["SECONDPASS__RERANKERS__LOCAL__MODEL_DIR"]
    assert model_dir == ienv["MODEL_DIR"] == "/models/cross-encoder--ms-marco-MiniLM-L-6-v2"
    vols = {v["name"]: v for v in workload(hf)["spec"]["template"]["spec"]["volumes"]}
    assert vols["model"]["emptyDir"] == {"sizeLimit": "1Gi"}
    mount = next(m for m in container(hf)["volumeMounts"] if m["name"] == "model")
    assert mount["readOnly"] is True
    # PVC from an existing claim
    fm = rendered["full-monitoring"]
    vols = {v["name"]: v for v in workload(fm)["spec"]["template"]["spec"]["volumes"]}
    assert vols["model"]["persistentVolumeClaim"]["claimName"] == "reranker-models"
    assert env_of(container(fm))["SECONDPASS__RERANKERS__LOCAL__MODEL_DIR"] == "/models/ms-marco-MiniLM-L-6-v2"
    # a created PVC, filled by the download
    gpu = rendered["gpu"]
    pvc = one(gpu, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_full_monitoring_objects(rendered):
    docs = rendered["full-monitoring"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-secondpass"}
    assert "replicas" not in workload(docs)["spec"]
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "admin"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for r in one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert set(rules) == {"SecondpassFailOpenRateHigh", "SecondpassLatencyP99High", "SecondpassUpstreamErrors",
                          "SecondpassUpstream5xxRatioHigh", "SecondpassModelNotLoaded", "SecondpassBreakerOpen",
                          "SecondpassRerankLatencyOverBudget", "SecondpassRedisErrors"}
    assert "secondpass_fail_open_total" in rules["SecondpassFailOpenRateHigh"]["expr"]
    assert "secondpass_requests_total" in rules["SecondpassFailOpenRateHigh"]["expr"]
    assert "> 0.02" in rules["SecondpassFailOpenRateHigh"]["expr"]
    assert "secondpass_request_duration_seconds_bucket" in rules["SecondpassLatencyP99High"]["expr"]
    assert 'code="5xx"' in rules["SecondpassUpstream5xxRatioHigh"]["expr"]
    assert "secondpass_upstream_errors_total" in rules["SecondpassUpstreamErrors"]["expr"]
    np_ = one(docs, "NetworkPolicy")["spec"]
    client_ports = {p["port"] for p in np_["ingress"][0]["ports"]}
    assert client_ports == {"rest", "grpc"}
    assert {p["port"] for p in np_["ingress"][1]["ports"]} == {"admin"}
    assert np_["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    egress_ports = [{p["port"] for p in e["ports"]} for e in np_["egress"]]
    assert {53} in egress_ports and {6333, 6334} in egress_ports and {443} in egress_ports


@pytest.mark.parametrize("values, message", [
    ({"mode": "sidecar"}, "mode"),
    ({"mode": "pod-with-qdrant", "replicaCount": 2}, "replicaCount"),
    ({"mode": "pod-with-qdrant", "autoscaling": {"enabled": True}}, "autoscaling"),
    ({"secrets": {"create": True, "existingSecret": "x"}}, "not both"),
    ({"configToml": "[log]\nlevel = \"debug\"\n"}, "not both"),
    ({"mode": "pod-with-qdrant", "qdrant": {"exposePorts": True}, "service": {"ports": {"rest": 6333}}}, "collide"),
])
def test_invalid_values_fail(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_raw_toml_config():
    raw = '[collections.docs]\nenabled = true\ntext_field = "body"\n'
    cm = one(render({"config": None, "configToml": raw}), "ConfigMap")
    assert tomllib.loads(cm["data"]["secondpass.toml"]) == {"collections": {"docs": {"enabled": True, "text_field": "body"}}}


# ------------------------------------------------------------------ against the real program


def secondpass_binary() -> Path:
    """SECONDPASS_BIN, else a built one; skips (fails under CI) when there is none."""
    for p in (os.environ.get("SECONDPASS_BIN"), ROOT / "target/debug/secondpass", ROOT / "target/release/secondpass"):
        if p and Path(p).is_file() and os.access(p, os.X_OK):
            return Path(p)
    missing("no secondpass binary (cargo build, or SECONDPASS_BIN)")


def check_config(binary: Path, toml_text: str | None, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    args = [str(binary), "check-config"]
    if toml_text is not None:
        f = tmp_path / "secondpass.toml"
        f.write_text(toml_text)
        args += ["--config", str(f)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SECONDPASS__")}
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", CASES)
def test_rendered_config_accepted_by_secondpass(rendered, case, tmp_path):
    """The ConfigMap plus the container's literal env, through `secondpass check-config`."""
    binary = secondpass_binary()
    docs = rendered[case]
    env = {k: v for k, v in env_of(container(docs)).items() if isinstance(v, str) and k.startswith("SECONDPASS__")}
    proc = check_config(binary, one(docs, "ConfigMap")["data"]["secondpass.toml"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "configuration is valid" in proc.stdout


def test_sidecar_env_accepted_by_secondpass(tmp_path):
    binary = secondpass_binary()
    pod = chart_check.sidecar_pod()
    sidecar = pod["spec"]["containers"][0]
    assert sidecar["args"] == ["serve"]  # env only, no file
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    proc = check_config(binary, None, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "collection docs" in proc.stdout


# ------------------------------------------------------------------ the download init container


class FakeHub(http.server.BaseHTTPRequestHandler):
    files = {"onnx/model.onnx": b"ONNX", "tokenizer.json": b"{}", "config.json": b'{"pad_token_id": 0}'}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802
        FakeHub.seen.append((self.path, self.headers.get("Authorization")))
        prefix = "/cross-encoder/ms-marco-MiniLM-L-6-v2/resolve/main/"
        name = self.path[len(prefix):] if self.path.startswith(prefix) else None
        if name not in self.files:
            self.send_response(404)
            self.end_headers()
            return
        body = self.files[name]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_script_against_a_local_hub(rendered, tmp_path):
    """The init container's script (sh + curl) fetches the files, sends the token, and runs once."""
    if not shutil.which("curl"):
        missing("curl (scripts/setup --test-tools)")
    init = workload(rendered["hf-download"])["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["/bin/sh", "-c"]
    script = init["args"][0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in env_of(init).items() if isinstance(v, str)}
        env.update(HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", MODEL_DIR=str(tmp_path / "m"),
                   HF_TOKEN="hf_test", PATH=os.environ["PATH"])
        FakeHub.seen.clear()
        first = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        for name, body in FakeHub.files.items():
            assert (tmp_path / "m" / name).read_bytes() == body
        assert {auth for _, auth in FakeHub.seen} == {"Bearer hf_test"}
        assert not list((tmp_path / "m").rglob("*.part"))
        # a second start finds the marker and downloads nothing
        FakeHub.seen.clear()
        second = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0 and "already in" in second.stdout and not FakeHub.seen
        # a missing file fails the init container (and so the pod start)
        env.update(HF_FILES="onnx/model.onnx missing.json", MODEL_DIR=str(tmp_path / "n"))
        bad = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode != 0
    finally:
        server.shutdown()


# ------------------------------------------------------------------ alerts, with promtool


def test_alerts_fire_on_synthetic_series(rendered, tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        missing("promtool (scripts/setup --promtool)")
    pr = one(rendered["full-monitoring"], "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": pr["spec"]["groups"]}))
    sel = 'job="rel-secondpass",namespace="secondpass"'
    # per minute: 100 searches, 10 of them fail-open (10% > 2%); 20 Qdrant answers, 5 of them 5xx (25%)
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": f'secondpass_requests_total{{{sel},route="query",collection="docs",rerank_status="applied"}}',
                 "values": "0+100x30"},
                {"series": f'secondpass_fail_open_total{{{sel},collection="docs"}}', "values": "0+10x30"},
                {"series": f'secondpass_upstream_responses_total{{{sel},code="2xx"}}', "values": "0+15x30"},
                {"series": f'secondpass_upstream_responses_total{{{sel},code="5xx"}}', "values": "0+5x30"},
                {"series": f'secondpass_model_loaded{{{sel},pod="p"}}', "values": "1x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "SecondpassFailOpenRateHigh",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "job": "rel-secondpass", "namespace": "secondpass"}}]},
                {"eval_time": "20m", "alertname": "SecondpassUpstream5xxRatioHigh",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "job": "rel-secondpass", "namespace": "secondpass"}}]},
                {"eval_time": "20m", "alertname": "SecondpassModelNotLoaded", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "SecondpassUpstreamErrors", "exp_alerts": []},
            ],
        }],
    }
    for t in tests["tests"][0]["alert_rule_test"]:
        for a in t["exp_alerts"]:
            a["exp_annotations"] = {}
    # compare labels only: drop annotations from the rules copy used here
    groups = pr["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_replica_alerts_fire_on_synthetic_series(rendered, tmp_path):
    """Breaker open, rerank p99 near its budget and Redis errors fire on series that show
    them, and stay quiet on series that do not."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (scripts/setup --promtool)")
    groups = one(rendered["replicas-shared-cache"], "PrometheusRule")["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    sel = 'job="rel-secondpass",namespace="secondpass"'
    labels = {"job": "rel-secondpass", "namespace": "secondpass", "severity": "warning"}
    rerank = f'secondpass_rerank_duration_seconds_bucket{{{sel},reranker="%s",le="%s"}}'
    # per minute: `slow` answers 60 rerank steps, 59 of them in (1, 2.5] s (p99 ~2.5 s
    # > 1.8 s); `fast` answers 60 within 0.1 s.
    series = [
        {"series": f'secondpass_breaker_state{{{sel},pod="a",reranker="cohere"}}', "values": "0x5 1x30"},
        {"series": f'secondpass_breaker_state{{{sel},pod="a",reranker="local"}}', "values": "0x35"},
        {"series": f'secondpass_cache_redis_errors_total{{{sel},pod="a",op="get",kind="timeout"}}',
         "values": "0+60x35"},
        {"series": f'secondpass_cache_redis_errors_total{{{sel},pod="b",op="set",kind="connection"}}',
         "values": "0x35"},
    ]
    for reranker, le_counts in (("slow", {"0.1": 0, "1": 1, "2.5": 60, "+Inf": 60}),
                                ("fast", {"0.1": 60, "1": 60, "2.5": 60, "+Inf": 60})):
        for le, per_minute in le_counts.items():
            series.append({"series": rerank % (reranker, le), "values": f"0+{per_minute}x35"})
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "SecondpassBreakerOpen",
             "exp_alerts": [{"exp_labels": {**labels, "reranker": "cohere"}}]},
            {"eval_time": "20m", "alertname": "SecondpassRerankLatencyOverBudget",
             "exp_alerts": [{"exp_labels": {**labels, "reranker": "slow"}}]},
            {"eval_time": "20m", "alertname": "SecondpassRedisErrors",
             "exp_alerts": [{"exp_labels": {**labels, "op": "get", "kind": "timeout"}}]},
            {"eval_time": "4m", "alertname": "SecondpassBreakerOpen", "exp_alerts": []},
        ],
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_redis_url_comes_from_a_secret(rendered):
    env = env_of(container(rendered["replicas-shared-cache"]))
    assert env["SECONDPASS_REDIS_URL"] == {"secretKeyRef": {"name": "secondpass-secrets", "key": "redis-url"}}
    assert env["SECONDPASS__CACHE__REDIS__URL_ENV"] == "SECONDPASS_REDIS_URL"
    cm = tomllib.loads(one(rendered["replicas-shared-cache"], "ConfigMap")["data"]["secondpass.toml"])
    assert "url" not in cm["cache"]["redis"] and cm["cache"]["redis"]["timeout_ms"] == 30
    docs = render({"redis": {"enabled": True}, "secrets": {"create": True, "redisUrl": "redis://:pw@r:6379"}})
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["redis-url"]) == b"redis://:pw@r:6379"
    assert "pw@" not in json.dumps(one(docs, "ConfigMap"))
    for values, message in (({"redis": {"enabled": True}}, "Secret"),
                            ({"redis": {"enabled": True}, "secrets": {"create": True}}, "redisUrl")):
        with pytest.raises(helm.HelmError, match=message):
            render(values)


def test_replicas_spread_over_nodes_and_zones(rendered):
    spec = workload(rendered["replicas-shared-cache"])["spec"]["template"]["spec"]
    keys = [c["topologyKey"] for c in spec["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert all(c["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "rel"
               and c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spec["topologySpreadConstraints"])
    mine = {"maxSkew": 2, "topologyKey": "x", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"a": "b"}}}
    spec = workload(render({"topologySpread": {"enabled": False}, "topologySpreadConstraints": [mine]}))
    assert spec["spec"]["template"]["spec"]["topologySpreadConstraints"] == [mine]
    hpa = one(rendered["replicas-shared-cache"], "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert one(rendered["replicas-shared-cache"], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


# ------------------------------------------------------------------ dashboard


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_dashboard", ROOT / "dashboards" / "generate_dashboard.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_dashboard_matches_its_generator():
    on_disk = json.loads((ROOT / "dashboards" / "secondpass.json").read_text())
    assert on_disk == json.loads(json.dumps(load_generator().dashboard)), \
        "dashboards/secondpass.json is stale: run python3 dashboards/generate_dashboard.py"


def test_dashboard_structure():
    dash = json.loads((ROOT / "dashboards" / "secondpass.json").read_text())
    assert dash["schemaVersion"] >= 38  # Grafana 10+
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert {"collection", "route"} <= set(variables)
    panels = all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            assert p["targets"] and all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in p["targets"])
    exprs = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for metric in [
        "secondpass_requests_total", "secondpass_fail_open_total", "secondpass_request_duration_seconds_bucket",
        "secondpass_upstream_duration_seconds_bucket", "secondpass_rerank_duration_seconds_bucket",
        "secondpass_rerank_candidates", "secondpass_candidates_without_text_total", "secondpass_rerank_errors_total",
        "secondpass_upstream_errors_total", "secondpass_upstream_responses_total", "secondpass_model_loaded",
        "secondpass_rank_displacement", "secondpass_queue_wait_seconds", "secondpass_batch_size",
        "secondpass_fallback_total",
    ]:
        assert metric in exprs, metric
    assert '$collection' in exprs and '$route' in exprs


def test_dashboard_metrics_exist_in_secondpass():
    """Every metric family on the dashboard that src/metrics.rs defines today is spelled the same there."""
    src = (ROOT / "src" / "metrics.rs").read_text()
    dash = (ROOT / "dashboards" / "secondpass.json").read_text()
    for family in ["secondpass_requests_total", "secondpass_request_duration_seconds",
                   "secondpass_upstream_duration_seconds", "secondpass_upstream_responses_total",
                   "secondpass_upstream_errors_total", "secondpass_responses_total",
                   "secondpass_rerank_duration_seconds", "secondpass_rerank_candidates",
                   "secondpass_candidates_without_text_total", "secondpass_rerank_errors_total",
                   "secondpass_fail_open_total", "secondpass_model_loaded"]:
        assert f'"{family}"' in src, f"{family} no longer in src/metrics.rs"
        assert family in dash


def test_every_metric_family_has_a_panel():
    """A metric secondpass exports and no panel shows is one nobody looks at."""
    import re
    families = set()
    for f in ("metrics.rs", "shadow.rs"):
        families |= set(re.findall(r'"(secondpass_[a-z0-9_]+)"', (ROOT / "src" / f).read_text()))
    assert len(families) >= 30, families
    dash = json.loads((ROOT / "dashboards" / "secondpass.json").read_text())
    exprs = " ".join(t["expr"] for p in all_panels(dash) for t in p.get("targets", []))
    missing = sorted(f for f in families if not re.search(rf"\b{f}(_bucket|_sum|_count)?\b", exprs))
    assert not missing, f"no dashboard panel for {missing}: add one in dashboards/generate_dashboard.py"


# ------------------------------------------------------------------ Dockerfiles (not built here)


def test_docker_default_config_accepted_by_secondpass(tmp_path):
    binary = secondpass_binary()
    proc = check_config(binary, (ROOT / "docker" / "secondpass.toml").read_text(), {}, tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_dockerfiles_agree_with_the_project():
    """No Docker engine here: check what can be checked statically."""
    pins = dict(line.split("==") for line in (ROOT / "integration-tests/python/requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (ROOT / "docker" / name).read_text()
        assert f"ARG ORT_VERSION={pins['onnxruntime']}" in text, name
        assert "USER 10001:10001" in text and "useradd --system --uid 10001" in text, name
        assert "ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so" in text, name
        assert "COPY ${MODEL_SRC}/ /models/default/" in text, name
        assert "EXPOSE 7333 7334 7335" in text, name
        assert (ROOT / "docker" / f"{name}.dockerignore").is_file(), name
    cuda = (ROOT / "docker" / "Dockerfile.cuda").read_text()
    assert '"onnxruntime-gpu==${ORT_VERSION}"' in cuda and "cudnn-runtime" in cuda
    assert "libonnxruntime_providers_cuda.so" in cuda
    # the chart's default model path is where the image puts the model
    assert helm.Chart.load(chart_check.CHART).values["model"]["imagePath"] == "/models/default"


def test_admin_token_env_can_be_left_out():
    docs = render({"secrets": {"existingSecret": "s", "adminTokenEnv": "", "apiKeyEnvs": ["COHERE_API_KEY"]}})
    env = env_of(container(docs))
    assert "SECONDPASS_ADMIN_TOKEN" not in env
    assert env["COHERE_API_KEY"] == {"secretKeyRef": {"name": "s", "key": "COHERE_API_KEY"}}

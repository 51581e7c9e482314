#!/usr/bin/env python3
"""Offline checks of the secondpass Helm chart and Grafana dashboard.

    .local/venv/bin/python helm/check.py [--out DIR] [--keep]

For the chart's default values and every values file in helm/secondpass/examples/
(except qdrant-sidecar-values.yaml, which is for the official qdrant/qdrant chart):

1. `helm lint` (strict) and the values.schema.json check, through helm-python-sdk
   (Helm's Go SDK as a shared library: no helm binary, no cluster, no network);
2. `helm template` (release "rel", namespace "secondpass");
3. `kubernetes-validate --strict` on every rendered manifest, against the oldest
   Kubernetes the chart allows (Chart.yaml kubeVersion) and the newest the
   validator knows. Kinds of the Prometheus Operator (ServiceMonitor,
   PrometheusRule) are CRDs that kubernetes-validate has no schema for: they are
   skipped by name in the output and checked structurally instead;
4. `promtool check rules` on the rendered PrometheusRule.

The sidecar snippet for the official Qdrant chart is checked by putting its
sidecarContainers / additionalVolumes into a Pod and validating that strictly.
The Grafana dashboard's PromQL (template variables filled in) goes through
`promtool check rules` as recording rules. Without promtool on PATH those checks are
skipped (and say so), except under CI (CI set and not "false"), where that is a failure.

Exit status 0 when everything passed; the last line is a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "secondpass"
EXAMPLES = CHART / "examples"
DASHBOARD = ROOT / "dashboards" / "secondpass.json"
SIDECAR_EXAMPLE = EXAMPLES / "qdrant-sidecar-values.yaml"
RELEASE = "rel"
NAMESPACE = "secondpass"
# Kinds kubernetes-validate cannot validate (CustomResourceDefinitions' objects).
CRD_API_GROUPS = ("monitoring.coreos.com/",)
# Newest Kubernetes known to the pinned kubernetes-validate; the oldest comes from Chart.yaml.
NEWEST_K8S = "1.37.0"


def venv_bin(name: str) -> str:
    """A console script next to this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the pinned packages of "
                         "integration-tests/python/requirements.txt into this Python's venv")
    return found


@dataclass
class Case:
    name: str
    values_file: Path | None
    values: dict
    manifests: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: str = ""
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def by_kind(self, kind: str) -> list[dict]:
        return [m for m in self.manifests if m.get("kind") == kind]


def cases() -> list[Case]:
    out = [Case("default", None, {})]
    for f in sorted(EXAMPLES.glob("*.yaml")):
        if f == SIDECAR_EXAMPLE:
            continue
        out.append(Case(f.stem, f, yaml.safe_load(f.read_text()) or {}))
    return out


def min_kube_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    m = re.search(r">=\s*v?(\d+\.\d+)", chart.get("kubeVersion", ""))
    return f"{m.group(1)}.0" if m else NEWEST_K8S


def render(values: dict, *, name: str = RELEASE, namespace: str = NAMESPACE) -> tuple[list[dict], str]:
    """Renders the chart; returns (manifests in template order, NOTES.txt)."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or None, name=name, namespace=namespace)
    docs: list[dict] = []
    notes = ""
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs, notes


def lint(case: Case) -> None:
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(case.values or None)
            case.lines.append("values.schema.json: ok")
        except helm.HelmValuesError as e:
            case.problems.append(f"values.schema.json: {e.detail.strip()}")
    report = helm.lint(CHART, case.values or None, strict=True, namespace=NAMESPACE)
    infos = [m["error"] for m in report["messages"] if m["severity"] <= 1]
    bad = [f'{m["path"]}: {m["error"]}' for m in report["messages"] if m["severity"] >= 2]
    bad += report.get("errors") or []
    if bad:
        case.problems += [f"helm lint: {b}" for b in bad]
    else:
        extra = f" (info: {'; '.join(infos)})" if infos else ""
        case.lines.append(f"helm lint --strict: ok, {report['total_charts_linted']} chart{extra}")


def write_manifests(case: Case, out: Path) -> list[Path]:
    d = out / case.name
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for i, doc in enumerate(case.manifests):
        f = d / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(f)
    return files


def kubernetes_validate(files: list[Path], version: str) -> tuple[bool, str]:
    """Runs the kubernetes-validate CLI; (ok, output)."""
    proc = subprocess.run(
        [venv_bin("kubernetes-validate"), "--strict", "-k", version, *map(str, files)],
        capture_output=True, text=True,
    )
    text = (proc.stdout + proc.stderr).strip()
    ok = proc.returncode == 0 and "ERROR" not in text and "WARN" not in text and "FATAL" not in text
    return ok, text


def check_crd_objects(case: Case) -> None:
    """Structural checks for the kinds kubernetes-validate cannot validate."""
    for sm in case.by_kind("ServiceMonitor"):
        eps = sm["spec"]["endpoints"]
        if not any(e.get("port") == "admin" and e.get("path") == "/metrics" for e in eps):
            case.problems.append("ServiceMonitor does not scrape port admin /metrics")
    for pr in case.by_kind("PrometheusRule"):
        for g in pr["spec"]["groups"]:
            for r in g["rules"]:
                if not (r.get("alert") or r.get("record")) or not r.get("expr"):
                    case.problems.append(f"PrometheusRule rule without alert/record or expr: {r}")


def under_ci() -> bool:
    return os.environ.get("CI", "") not in ("", "false")


def promtool_rules(rule_groups: list[dict], label: str, workdir: Path) -> tuple[bool | None, str]:
    """`promtool check rules` on the groups; None when promtool is missing (False under CI)."""
    promtool = shutil.which("promtool")
    if not promtool:
        why = "promtool not on PATH (scripts/setup --promtool installs it)"
        return (False, f"{why}: required under CI") if under_ci() else (None, f"{why}: skipped")
    f = workdir / f"{label}.rules.yaml"
    f.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    proc = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def check_case(case: Case, out: Path, versions: list[str]) -> None:
    label = case.values_file.relative_to(ROOT) if case.values_file else "values.yaml (defaults)"
    case.lines.append(f"== {case.name}: {label}")
    lint(case)
    try:
        case.manifests, case.notes = render(case.values)
    except Exception as e:  # noqa: BLE001 - any render failure is a finding
        case.problems.append(f"helm template: {e}")
        return
    kinds = ", ".join(f"{m['kind']}/{m['metadata']['name']}" for m in case.manifests)
    case.lines.append(f"helm template: {len(case.manifests)} manifests: {kinds}")
    case.files = write_manifests(case, out)
    plain = [f for f, m in zip(case.files, case.manifests) if not m["apiVersion"].startswith(CRD_API_GROUPS)]
    crds = [m for m in case.manifests if m["apiVersion"].startswith(CRD_API_GROUPS)]
    for version in versions:
        ok, text = kubernetes_validate(plain, version)
        if ok:
            case.lines.append(f"kubernetes-validate --strict -k {version}: {len(plain)} passed")
        else:
            case.problems.append(f"kubernetes-validate --strict -k {version}:\n{text}")
    if crds:
        names = ", ".join(f"{m['kind']}/{m['metadata']['name']}" for m in crds)
        case.lines.append(f"skipped by kubernetes-validate (CRD kinds, no schema): {names}; checked structurally")
        check_crd_objects(case)
    for pr in case.by_kind("PrometheusRule"):
        ok, text = promtool_rules(pr["spec"]["groups"], f"{case.name}-prometheusrule", out)
        if ok is None:
            case.lines.append(text)
        elif ok:
            case.lines.append(f"promtool check rules: {text.splitlines()[-1].strip()}")
        else:
            case.problems.append(f"promtool check rules:\n{text}")


def sidecar_pod() -> dict:
    """The official chart's pod, reduced to what the sidecar example adds to it."""
    v = yaml.safe_load(SIDECAR_EXAMPLE.read_text())
    qdrant = {
        "name": "qdrant", "image": "docker.io/qdrant/qdrant:v1.18.3",
        "ports": [{"name": p["name"], "containerPort": p["targetPort"], "protocol": p["protocol"]}
                  for p in v["service"]["ports"]],
    }
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "qdrant-0", "namespace": NAMESPACE},
        "spec": {"containers": [*v["sidecarContainers"], qdrant], "volumes": v["additionalVolumes"]},
    }


def check_sidecar(out: Path, versions: list[str]) -> Case:
    case = Case("qdrant-sidecar", SIDECAR_EXAMPLE, {})
    case.lines.append(f"== {case.name}: {SIDECAR_EXAMPLE.relative_to(ROOT)} (values for qdrant/qdrant, "
                      "checked as a Pod: sidecarContainers + additionalVolumes)")
    pod = sidecar_pod()
    case.manifests = [pod]
    case.files = write_manifests(case, out)
    for version in versions:
        ok, text = kubernetes_validate(case.files, version)
        if ok:
            case.lines.append(f"kubernetes-validate --strict -k {version}: pod with the sidecar passed")
        else:
            case.problems.append(f"kubernetes-validate --strict -k {version}:\n{text}")
    return case


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every target; template variables replaced by samples."""
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
             "${collection:regex}": ".*", "${route:regex}": ".*",
             "$collection": ".*", "$route": ".*", "$job": "secondpass", "$namespace": "default"}
    found = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                for k in sorted(subst, key=len, reverse=True):
                    expr = expr.replace(k, subst[k])
                found.append((p.get("title", "?"), expr))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return found


def check_dashboard(out: Path) -> Case:
    case = Case("dashboard", DASHBOARD, {})
    case.lines.append(f"== dashboard: {DASHBOARD.relative_to(ROOT)}")
    dash = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(dash)
    if not exprs:
        case.problems.append("dashboard has no PromQL targets")
        return case
    leftover = [(t, e) for t, e in exprs if "$" in e]
    if leftover:
        case.problems.append(f"unreplaced template variables: {leftover}")
    rules = [{"record": f"dashboard:expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]
    ok, text = promtool_rules([{"name": "dashboard", "rules": rules}], "dashboard", out)
    if ok is None:
        case.lines.append(text)
    elif ok:
        case.lines.append(f"promtool check rules on {len(exprs)} panel queries: ok")
    else:
        case.problems.append(f"promtool check rules on panel queries:\n{text}")
    return case


def run(out: Path) -> list[Case]:
    versions = [min_kube_version(), NEWEST_K8S]
    results = []
    for case in cases():
        check_case(case, out, versions)
        results.append(case)
    results.append(check_sidecar(out, versions))
    if DASHBOARD.exists():
        results.append(check_dashboard(out))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write rendered manifests here (default: a temporary directory)")
    args = ap.parse_args()
    import helm_python as helm
    import kubernetes_validate

    print(f"helm-python-sdk {helm.__version__} (libhelm_c {helm.helm_c_version()}, Helm SDK "
          f"{helm.helm_sdk_version()}), kubernetes-validate {kubernetes_validate.__version__}")
    tmp = None
    if args.out:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="secondpass-chart-")
        out = Path(tmp.name)
    try:
        results = run(out)
    finally:
        if tmp:
            tmp.cleanup()
    failed = 0
    manifests = skipped = 0
    for case in results:
        for line in case.lines:
            print(line if line.startswith("==") else f"  {line}")
        for p in case.problems:
            failed += 1
            print("  FAIL " + p.replace("\n", "\n       "))
        manifests += len(case.manifests)
        skipped += sum(1 for m in case.manifests if m.get("apiVersion", "").startswith(CRD_API_GROUPS))
    print(f"chart checks: {len(results)} cases, {manifests} manifests, {skipped} CRD objects skipped by "
          f"kubernetes-validate, {failed} failures" + ("" if args.out is None else f"; manifests in {out}"))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

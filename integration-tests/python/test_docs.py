"""The documentation stays true to the repository: the layout page names every folder
that exists (and none that does not), every relative link in README.md and docs/ leads to
a file and, with an anchor, to a heading of it, every metric family secondpass exports and
every configuration key it reads is documented, and the README stays a newcomer's page."""

import os
import re
from pathlib import Path

from support import ROOT

ROOTS = ("src", "tests", "integration-tests", "scripts", "helm", "docs", "benches", "config", "dashboards",
         "docker", ".ci")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def folders():
    """Every folder under ROOTS holding a file, caches and hidden folders aside."""
    found = set()
    for top in ROOTS:
        for path, dirs, files in os.walk(ROOT / top):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            found.add(str(Path(path).relative_to(ROOT)) + "/")
    return found


def test_layout_names_every_folder_and_only_those():
    text = (ROOT / "docs" / "layout.md").read_text()
    named = {p for p in re.findall(r"`([\w./-]+/)`", text) if p.startswith(tuple(f"{r}/" for r in ROOTS))}
    have = folders()
    assert len(have) > 20, have
    assert not have - named, f"folders docs/layout.md does not describe: {sorted(have - named)}"
    assert not named - have, f"docs/layout.md names folders that do not exist: {sorted(named - have)}"


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_relative_links_lead_to_files_and_headings():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_metric_family_is_documented():
    families = set()
    for f in ("metrics.rs", "shadow.rs", "telemetry.rs"):
        families |= set(re.findall(r'"(secondpass_[a-z0-9_]+)"', (ROOT / "src" / f).read_text()))
    assert len(families) >= 30, families
    docs = (ROOT / "docs" / "operations.md").read_text() + (ROOT / "docs" / "evaluation.md").read_text()
    missing = sorted(f for f in families if not re.search(rf"\b{f}\b", docs))
    assert not missing, f"metrics not documented in docs/operations.md: {missing}"


# Each configuration struct of src/config and where its keys live in the file.
SECTIONS = {"ServerConfig": "server.", "UpstreamConfig": "upstream.", "LogConfig": "log.",
            "RerankApiConfig": "rerank_api.", "CacheConfig": "cache.", "RedisConfig": "cache.redis.",
            "AdminConfig": "admin.", "ShadowConfig": "shadow.", "OnnxConfig": "rerankers.<name>.",
            "HostedConfig": "rerankers.<name>."}


def struct_fields(name):
    """The `pub` fields of `struct name` in src/config (sub-sections like `redis` included)."""
    for f in sorted((ROOT / "src" / "config").glob("*.rs")):
        body = re.search(rf"pub struct {name} \{{(.*?)\n\}}", f.read_text(), flags=re.S)
        if body:
            return re.findall(r"^\s*pub (\w+):", body.group(1), flags=re.M)
    raise AssertionError(f"no struct {name} in src/config")


def documented_keys():
    """Full keys named in the first column of docs/configuration.md's table: `a.b.c` /
    `d` / `e` names a.b.c, a.b.d and a.b.e (a name with a dot is a full key)."""
    keys = set()
    for row in re.findall(r"^\| (.+?) \|", (ROOT / "docs" / "configuration.md").read_text(), flags=re.M):
        names = re.findall(r"`([\w.<>]+)`", row)
        if names and "." in names[0]:
            prefix = names[0].rsplit(".", 1)[0] + "."
            keys |= {n if "." in n else prefix + n for n in names}
    return keys


def test_every_configuration_key_is_documented():
    keys = documented_keys()
    want = {prefix + f for struct, prefix in SECTIONS.items() for f in struct_fields(struct)
            if f != "redis"}  # [cache.redis] is a section, its keys are RedisConfig's
    macro = re.search(r"collection_keys! \{(.*?)\n\}", (ROOT / "src" / "config" / "collections.rs").read_text(), re.S)
    want |= {f"collections.<name>.{k}" for k in re.findall(r"^\s*(\w+):", macro.group(1), flags=re.M)}
    assert len(want) > 60, want
    missing = sorted(want - keys)
    assert not missing, f"configuration keys docs/configuration.md does not list: {missing}"
    llm = (ROOT / "docs" / "llm-rerankers.md").read_text()
    missing = [f for f in struct_fields("PromptConfig") if not re.search(rf"^{f} = ", llm, flags=re.M)]
    assert not missing, f"[rerankers.<name>.prompt] keys docs/llm-rerankers.md does not show: {missing}"


def test_readme_is_a_newcomers_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md grew past 300 lines: move the detail to a docs/ page"
    # .ci/run runs the README's test command, and the Quickstart starts with the demo
    for command in ("scripts/demo", "scripts/serve", "scripts/test"):
        assert f"\n{command} " in readme, command
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "layout.md":
            assert f"(docs/{page.name})" in readme, f"README's 'Where to go next' lacks docs/{page.name}"

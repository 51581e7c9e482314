"""The documentation stays true to the repository: the layout page names every folder
that exists (and none that does not), every relative link in README.md and docs/ leads to
a file and, with an anchor, to a heading of it, every metric family secondpass exports is
documented, and the README stays a newcomer's page."""

import os
import re
from pathlib import Path

from support import ROOT

ROOTS = ("src", "tests", "integration-tests", "scripts", "helm", "docs")
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


def test_readme_is_a_newcomers_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300, "README.md grew past 300 lines: move the detail to a docs/ page"
    # .ci/run runs the README's test command, and the Quickstart starts with the demo
    for command in ("scripts/demo", "scripts/serve", "scripts/test"):
        assert f"\n{command} " in readme, command
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "layout.md":
            assert f"(docs/{page.name})" in readme, f"README's 'Where to go next' lacks docs/{page.name}"

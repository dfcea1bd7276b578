"""The repository stands alone: no pointers to the team's private folder, and every citation of
docs/references.md names a section that exists there.

Code and docs cite facts as "docs/references.md section N" (or "s. N"); the citation may wrap onto
the next line of a docstring or comment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFS_DOC = ROOT / "docs" / "references.md"
#: generated run folders: written by the code, not part of the project's text
EXCLUDED_PREFIXES = ("results/runs/",)

# Built from pieces so that this file does not match its own patterns.
_TEAM = "shared"
#: a pointer to the team folder or to its reference file (case-sensitive: docs/references.md is fine)
FORBIDDEN = (_TEAM + "/", "../" + _TEAM, "references".upper() + ".md")

#: "docs/references.md section 3", "`docs/references.md` section 3", "docs/references.md s. 3",
#: also when a comment or docstring wraps between the file name and the word "section"
CITATION = re.compile(r"docs/references\.md[`\])]*[\s#:*]*(?:section|s\.)\s*(\d+(?:\.\d+)*)")
#: "## 3. Published results" or "### 1.2 Copy memory"
HEADER = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in out.decode().split("\0") if n and not n.startswith(EXCLUDED_PREFIXES)]
    # a tracked file may be deleted in the working tree; the test reads what is there
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def project_files() -> list[Path]:
    """Tracked files plus the references file itself (which may not be committed yet)."""
    files = tracked_files()
    if REFS_DOC.is_file() and REFS_DOC not in files:
        files.append(REFS_DOC)
    return files


def test_no_pointer_to_the_team_folder():
    offenders = []
    for path in project_files():
        data = path.read_bytes()
        if not any(pattern.encode() in data for pattern in FORBIDDEN):
            continue
        text = data.decode("utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            if any(pattern in line for pattern in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "pointers to a folder users do not have:\n" + "\n".join(offenders)


def test_references_file_has_numbered_sections():
    headers = set(HEADER.findall(REFS_DOC.read_text(encoding="utf-8")))
    assert {str(n) for n in range(1, 11)} <= headers
    assert "Published results" in REFS_DOC.read_text(encoding="utf-8")


def test_every_cited_section_exists():
    headers = set(HEADER.findall(REFS_DOC.read_text(encoding="utf-8")))
    cited = []
    missing = []
    for path in project_files():
        if path.suffix not in {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".rst"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            lineno = text.count("\n", 0, m.start()) + 1
            cited.append(m.group(1))
            if m.group(1) not in headers:
                missing.append(f"{path.relative_to(ROOT)}:{lineno}: section {m.group(1)}")
    assert cited, "no citation of docs/references.md found: is the pattern out of date?"
    assert not missing, "cited sections missing from docs/references.md:\n" + "\n".join(missing)


SHELL_SCRIPTS = sorted([*ROOT.glob("benchmarks/*.sh"), ROOT / "results" / "regenerate.sh",
                        ROOT / ".ci" / "run"])


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_parse(script):
    """The GPU scripts run only where a GPU is lent, in windows of minutes: a syntax error must
    not be found there (bash -n reads a script without running it)."""
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

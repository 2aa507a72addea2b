"""The documentation runs as written: every ```python block of README.md and docs/*.md in a fresh
Python, and every relative link and anchor resolves.

A block fenced ```python keras3 runs in the Keras 3 venv (`.venv3.12`, skipped where it is absent)
without `TF_USE_LEGACY_KERAS`; every other ```python block runs with `TF_USE_LEGACY_KERAS=1` in the
Python running the tests. Each runs in an empty temporary directory. Shell, JSON and text blocks are
not run.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
KERAS3_PYTHON = os.path.join(REPO, ".venv3.12", "bin", "python")
TIMEOUT_S = 120
README_MAX_LINES = 300
FENCE = re.compile(r"^```(.*)$")


def relative(path):
    return os.path.relpath(path, REPO)


def blocks(path):
    """``[(info string, code)]`` of every fenced block of ``path``, in order."""
    found, info, lines = [], None, []
    with open(path, encoding="utf-8") as file:
        for line in file.read().split("\n"):
            fence = FENCE.match(line)
            if info is None and fence:
                info, lines = fence.group(1).strip(), []
            elif info is not None and line.startswith("```"):
                found.append((info, "\n".join(lines) + "\n"))
                info = None
            elif info is not None:
                lines.append(line)
    return found


def python_blocks():
    cases = []
    for path in DOCS:
        python = [(info, code) for info, code in blocks(path) if info.split()[:1] == ["python"]]
        for index, (info, code) in enumerate(python):
            cases.append(pytest.param(info.split()[1:], code, id=f"{relative(path)}-python-{index}"))
    return cases


@pytest.mark.parametrize("tags, code", python_blocks())
def test_python_block_runs_as_written(tags, code, tmp_path):
    env = dict(os.environ)
    if "keras3" in tags:
        if not os.path.exists(KERAS3_PYTHON):
            pytest.skip(f"{relative(KERAS3_PYTHON)} is absent (make install-3.12)")
        python = KERAS3_PYTHON
        env.pop("TF_USE_LEGACY_KERAS", None)
    else:
        python = sys.executable
        env["TF_USE_LEGACY_KERAS"] = "1"
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    completed = subprocess.run([python, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
    assert completed.returncode == 0, f"the block failed:\n{code}\n{completed.stderr[-4000:]}"


def test_readme_is_short():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as file:
        lines = file.read().count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def anchors(path):
    """GitHub's anchors of ``path``'s headings (outside code blocks), duplicates numbered."""
    found, counts, fenced = set(), {}, False
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.startswith("```"):
                fenced = not fenced
            heading = re.match(r"^#{1,6} (.*)$", line)
            if fenced or not heading:
                continue
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            found.add(slug if slug not in counts else f"{slug}-{counts[slug]}")
            counts[slug] = counts.get(slug, 0) + 1
    return found


def links(path):
    """``[(target path or None for this file, anchor or None)]`` of every relative link outside code."""
    with open(path, encoding="utf-8") as file:
        text = re.sub(r"^```.*?^```", "", file.read(), flags=re.M | re.S)
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        found.append((file_part or None, anchor or None))
    return found


@pytest.mark.parametrize("path", DOCS, ids=relative)
def test_links_and_anchors_resolve(path):
    dead = []
    for file_part, anchor in links(path):
        target = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(target):
            dead.append(f"{file_part}: no such file")
        elif anchor and anchor not in anchors(target):
            dead.append(f"{file_part or ''}#{anchor}: no such heading")
    assert not dead, dead

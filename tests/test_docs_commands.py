"""Every `edge-pose` command in the fenced sh blocks of README.md and docs/*.md runs as shown.

The commands run in order, as a user would (later ones use earlier ones' bundles), from a fresh directory laid out
like a clone: `edge-pose/` as the working directory with the shared material at `../shared`, the paths the docs
use. A block that cannot run here says why in an HTML comment right before it: `<!-- not run: REASON -->`. Commands
must live in sh fences (an indented block of `edge-pose` lines would hide them from this test).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from shared import SHARED, shared

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(\S.*?)\s*-->$")
SLOW = pytest.mark.slow  # the conversions: ~1.5 min on the 2-core CI machine, run by make test


@dataclass
class Command:
    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def _blocks(path: Path):
    """(first line number, lines, not-run reason or None) of every fenced sh block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            match = NOT_RUN.match(before)
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            yield i + 2, lines[i + 1:end], match.group(1) if match else None
            i = end
        i += 1


def _commands(start: int, lines: list[str], doc: str) -> list[Command]:
    out, pending, first = [], "", start
    for n, raw in enumerate(lines, start):
        line = raw.strip()
        if not pending:
            first = n
            if not line or line.startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append(Command(doc, first, (pending + line).strip()))
        pending = ""
    return out


def runnable() -> list[Command]:
    found = []
    for path in DOCS:
        for start, lines, reason in _blocks(path):
            if reason is None:
                found += _commands(start, lines, path.name)
    return found


COMMANDS = runnable()


def test_docs_have_runnable_commands_and_every_skipped_block_says_why():
    assert len(COMMANDS) >= 15
    assert all(c.text.startswith("edge-pose ") for c in COMMANDS), [str(c) for c in COMMANDS
                                                                    if not c.text.startswith("edge-pose ")]
    skipped = [(p.name, s, r) for p in DOCS for s, _, r in _blocks(p) if r is not None]
    assert 1 <= len(skipped) <= 6, skipped  # a few, each with its reason
    for path in DOCS:  # no edge-pose command outside an sh fence, where this test would not see it
        text, fenced = path.read_text().splitlines(), False
        for n, line in enumerate(text, 1):
            if line.strip().startswith("```"):
                fenced = not fenced
            elif not fenced and re.match(r"^ {4}edge-pose \w", line):
                pytest.fail(f"{path.name}:{n}: command in an indented block; put it in a ```sh block")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A clone-like layout: cwd `edge-pose/` with `../shared` -> the shared material."""
    shared("models")
    base = tmp_path_factory.mktemp("docs")
    (base / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    (base / "edge-pose").mkdir()
    return base / "edge-pose"


@SLOW
@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.doc}:{c.line}" for c in COMMANDS])
def test_command_runs_as_shown(command, workspace):
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", "-c", command.text], cwd=workspace, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"{command}\nexit {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, f"{command}\n{r.stderr[-3000:]}"

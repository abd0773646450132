"""A fresh clone's journey: `make run`, every shell block of the docs, every `--help`.

The slow test clones the repository's committed HEAD into a temporary folder, runs `make run`
there in the background on a free loopback port (IMGEST_PORT), waits for /healthz, then runs
every ```sh / ```bash / ```console block of README.md and docs/client.md, in order, in the
clone, with the clone's .venv first on PATH, and fails on a non-zero exit or a traceback,
listing every failing block with its output (not only the first). Then `imgest --help` and
`imgest <command> --help` for every command of the Typer app.

What the test changes in a block, and nothing else:
- `127.0.0.1:8000` becomes the test's port (IMGEST_URL and IMGEST_PORT are set too);
- a line `make run &` is the step the test already took (it started `make run` itself);
- a block preceded by `<!-- journey: skip (reason) -->` is not run; the reasons are printed.
The example files the docs name (photos/, a.jpg, b.png) are made in the clone beforehand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.services.imgest_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
JOURNEY_DOCS = ("README.md", "docs/client.md")
SHELL_LANGS = {"sh", "bash", "shell", "console"}
SKIP_MARKER = re.compile(r"^<!--\s*journey:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*journey:")
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^`]*)$")
STARTED_BY_TEST = re.compile(r"^make run &.*$", re.MULTILINE)
BUILD_TIMEOUT_S = 900  # a fresh .venv: pip install of imgest and its dependencies
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    """One fenced shell block of a markdown file."""

    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None  # the reason of a preceding `<!-- journey: skip (...) -->`

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def script(self) -> str:
        """The shell text to run: console blocks keep only their `$ ` lines."""
        if self.lang != "console":
            return self.text
        return "\n".join(ln[2:] for ln in self.text.splitlines() if ln.startswith("$ "))


def shell_blocks(doc: str, markdown: str) -> list[Block]:
    """Every fenced sh/bash/shell/console block of `markdown`, with its skip marker if any.

    A journey marker that is malformed or not directly before a shell block is an error, so a
    skip can only be deliberate and visible.
    """
    blocks: list[Block] = []
    lines = markdown.splitlines()
    pending: tuple[int, str] | None = None  # (line, reason) of a skip marker awaiting its block
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = FENCE.match(line)
        if ANY_MARKER.search(line):
            marker = SKIP_MARKER.match(line.strip())
            if marker is None:
                raise ValueError(f"{doc}:{i + 1}: malformed journey marker: {line.strip()}")
            if pending is not None:
                raise ValueError(f"{doc}:{pending[0]}: journey marker without a block")
            pending = (i + 1, marker["reason"].strip())
        elif opening is not None:
            fence, lang = opening["fence"], opening["info"].strip().split(" ")[0].lower()
            end = i + 1
            while end < len(lines) and not lines[end].startswith(fence):
                end += 1
            if lang in SHELL_LANGS:
                reason = pending[1] if pending is not None else None
                text = "\n".join(lines[i + 1 : end])
                blocks.append(Block(doc, i + 1, lang, text, reason))
            elif pending is not None:
                raise ValueError(f"{doc}:{pending[0]}: journey marker before a {lang!r} block")
            pending = None
            i = end
        elif line.strip() and pending is not None:
            raise ValueError(f"{doc}:{pending[0]}: journey marker not directly before a block")
        i += 1
    if pending is not None:
        raise ValueError(f"{doc}:{pending[0]}: journey marker without a block")
    return blocks


def journey_blocks(root: Path) -> list[Block]:
    return [
        block
        for doc in JOURNEY_DOCS
        for block in shell_blocks(doc, (root / doc).read_text(encoding="utf-8"))
    ]


# --- fast checks of the parser and the markers (no clone, no server) ---------------------------


def test_markers_and_blocks_parse() -> None:
    sample = "\n".join(
        [
            "```sh",
            "echo one",
            "```",
            "<!-- journey: skip (needs a remote server) -->",
            "```bash",
            "curl https://img.example.com",
            "```",
            "```python",
            "print('not a shell block')",
            "```",
            "```console",
            "$ imgest version",
            "0.1.0",
            "```",
        ]
    )
    blocks = shell_blocks("x.md", sample)

    assert [(b.lang, b.skip) for b in blocks] == [
        ("sh", None),
        ("bash", "needs a remote server"),
        ("console", None),
    ]
    assert blocks[2].script() == "imgest version"
    with pytest.raises(ValueError, match="not directly before"):
        shell_blocks("x.md", "<!-- journey: skip (r) -->\ntext\n```sh\necho\n```")
    with pytest.raises(ValueError, match="malformed"):
        shell_blocks("x.md", "<!-- journey: skip -->\n```sh\necho\n```")
    with pytest.raises(ValueError, match="without a block"):
        shell_blocks("x.md", "```sh\necho\n```\n<!-- journey: skip (r) -->")


def test_docs_have_runnable_blocks_and_every_skip_says_why() -> None:
    blocks = journey_blocks(REPO_ROOT)

    runnable = [b for b in blocks if b.skip is None]
    assert len(runnable) >= 5, [b.where for b in blocks]
    assert all(b.skip is None or len(b.skip) >= 10 for b in blocks)
    # The README's first-try flow is run, not skipped.
    assert any("curl -F file=@tests/data/cat.jpg" in b.text for b in runnable)


# --- the journey itself -------------------------------------------------------------------------


def _clean_env(clone: Path, port: int) -> dict[str, str]:
    """The environment of a user in a fresh shell: none of the suite's IMGEST_* or PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IMGEST_") and k not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(clone / ".venv")
    env["IMGEST_PORT"] = str(port)
    env["IMGEST_URL"] = f"http://127.0.0.1:{port}"
    return env


def _make_example_files(clone: Path) -> None:
    """The files the docs' examples name: photos/ (a folder tree), a.jpg, b.png."""
    cat = REPO_ROOT / "tests" / "data" / "cat.jpg"
    for sub, name in (("batch1/cats", "001.jpg"), ("batch1/cats", "002.jpg"), ("dogs", "d.jpg")):
        (clone / "photos" / sub).mkdir(parents=True, exist_ok=True)
        with Image.open(cat) as im:
            im.rotate(90 * len(name + sub)).save(clone / "photos" / sub / name, quality=85)
    shutil.copy(cat, clone / "a.jpg")
    with Image.open(cat) as im:
        im.convert("RGB").resize((160, 120)).save(clone / "b.png")


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> float:
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() - started > BUILD_TIMEOUT_S:
            pytest.fail(f"`make run` did not serve /healthz:\n{log.read_text()[-6000:]}")
        time.sleep(1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    try:
        done = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return -1, f"timed out after {BLOCK_TIMEOUT_S} s\n{exc.stdout or ''}{exc.stderr or ''}"
    return done.returncode, done.stdout + done.stderr


def _failed(rc: int, output: str) -> bool:
    return rc != 0 or "Traceback (most recent call last)" in output


HELP_TREE = """
import json, typer.main
from imgest.cli import app
def walk(cmd, path):  # typer 0.29 vendors click: a group is what has commands
    yield path
    if getattr(cmd, "commands", None):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], [*path, name])
print(json.dumps(list(walk(typer.main.get_command(app), []))))
"""


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 1800)
def test_fresh_clone_make_run_and_every_doc_block(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("make") is None:
        pytest.fail("the journey needs git and make (README: prerequisites)")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = tmp_path / "imgest"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    _make_example_files(clone)

    port = free_port()
    env = _clean_env(clone, port)
    log = tmp_path / "make-run.log"
    timings: list[str] = []
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["make", "run"],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and imgest in one process group, stopped together
        )
    failures: list[str] = []
    skipped: list[str] = []
    try:
        timings.append(f"make run to /healthz: {_wait_healthy(server, port, log):.0f} s")
        started = time.monotonic()
        for block in journey_blocks(clone):
            if block.skip is not None:
                skipped.append(f"{block.where}: {block.skip}")
                continue
            script = block.script().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            script = STARTED_BY_TEST.sub(": make run is serving, started by the test", script)
            rc, output = _run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=clone, env=env)
            if _failed(rc, output):
                failures.append(f"{block.where} (exit {rc}):\n{block.text}\n--- output:\n{output}")
        timings.append(f"doc blocks: {time.monotonic() - started:.0f} s")

        started = time.monotonic()
        python = str(clone / ".venv" / "bin" / "python")
        rc, output = _run([python, "-c", HELP_TREE], cwd=clone, env=env)
        commands: list[list[str]] = json.loads(output.strip().splitlines()[-1]) if rc == 0 else []
        if len(commands) < 10:
            failures.append(f"the command tree of imgest.cli.app (exit {rc}): {output}")
        for path in commands:
            cmd = ["imgest", *path, "--help"]
            rc, output = _run(cmd, cwd=clone, env=env)
            if _failed(rc, output) or "Usage:" not in output:
                failures.append(f"`{' '.join(cmd)}` (exit {rc}):\n{output}")
        timings.append(f"{len(commands)} --help: {time.monotonic() - started:.0f} s")
    finally:
        _stop(server)
    server_log = log.read_text(errors="replace")
    if "Traceback (most recent call last)" in server_log:
        failures.append(f"the server logged a traceback:\n{server_log[-6000:]}")
    print("\n".join(timings + [f"skipped {s}" for s in skipped]))
    if failures:
        pytest.fail(f"{len(failures)} failing:\n\n" + "\n\n".join(failures), pytrace=False)

"""Dependencies: every import declared, the lock covering pyproject, the audit failing on CVEs."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _load_audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "scripts/audit_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_deps"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


audit_deps = _load_audit()
SNAPSHOT: dict[str, Any] = json.loads((ROOT / "scripts/advisories.json").read_text())


def _requirements(*groups: str) -> dict[str, Requirement]:
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    for group in groups:
        texts += project["optional-dependencies"][group]
    reqs = (Requirement(t) for t in texts)
    return {canonicalize_name(r.name): r for r in reqs if r.name != "imgest"}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by src/imgest (lazily too), with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src/imgest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "imgest" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.name)
    return found


# Imported lazily for a GPU the project's installs never provide: the user installs it on a GPU
# machine, and without it the command says so in one sentence (exit 2). Each is named, with the
# file that imports it, so a new undeclared import still fails below.
NOT_INSTALLED = {
    "nvidia": {"gpu.py"},  # nvImageCodec for `rescore --decode cuda` (docs/intermediate.md)
}


def test_every_import_is_declared() -> None:
    # h11 was imported by imgest.server without being declared: nothing kept it past
    # CVE-2025-43859. Each module must come from a distribution pyproject.toml names.
    declared = set(_requirements(*PYPROJECT["project"]["optional-dependencies"]))
    providers = packages_distributions()
    missing = {}
    for module, files in _third_party_imports().items():
        if module in NOT_INSTALLED and files <= NOT_INSTALLED[module]:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_lock_pins_every_requirement_within_its_specifier() -> None:
    pins = audit_deps.read_pins((ROOT / "constraints.txt").read_text())
    groups = PYPROJECT["project"]["optional-dependencies"]
    for name, req in _requirements(*groups).items():
        if req.marker is not None and not req.marker.evaluate(
            audit_deps.ENVIRONMENT | {"extra": ""}
        ):
            continue
        assert name in pins, f"{name} is not in constraints.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_runtime_install_has_no_gpl_heif_encoder() -> None:
    # pillow-heif's wheels bundle x265 (GPL); the server decodes with pi-heif, and only the
    # tests (dev extra) write HEIC with pillow-heif.
    assert "pi-heif" in _requirements("server")
    runtime = _requirements("server", "client", "azure", "s3", "postgres", "ray")
    assert "pillow-heif" not in runtime


def test_client_install_leaves_the_server_stack_out() -> None:
    base = set(_requirements())
    assert {"httpx", "tenacity", "typer", "rich"} <= base
    assert not base & {"fastapi", "starlette", "uvicorn", "onnxruntime", "numpy", "pillow"}


def test_the_lock_passes_the_offline_audit() -> None:
    pins = audit_deps.read_pins((ROOT / "constraints.txt").read_text())
    floors = audit_deps.read_floors(PYPROJECT)
    findings, source = audit_deps.audit(pins, floors, SNAPSHOT, online=False)
    assert findings == [] and "snapshot" in source


@pytest.mark.parametrize(
    ("package", "version", "cve"),
    [
        ("h11", "0.14.0", "CVE-2025-43859"),
        ("starlette", "0.48.0", "CVE-2025-62727"),
        ("jinja2", "3.1.4", "CVE-2024-56201"),
        ("urllib3", "2.4.0", "CVE-2025-50181"),
    ],
)
def test_a_vulnerable_pin_fails_the_offline_audit(package: str, version: str, cve: str) -> None:
    pins = audit_deps.read_pins((ROOT / "constraints.txt").read_text())
    assert package in pins
    pins[package] = version
    findings, _ = audit_deps.audit(pins, {}, SNAPSHOT, online=False)
    assert {(f.package, f.version) for f in findings} == {(package, version)}
    assert any(cve in str(f) for f in findings)


def test_a_floor_below_a_fix_fails_and_the_command_exits_1(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        (ROOT / "pyproject.toml").read_text().replace('"h11>=0.16.0"', '"h11>=0.14"')
    )
    argv = ["--offline", "--pyproject", str(pyproject)]
    assert audit_deps.main(argv) == 1
    assert audit_deps.main(["--offline"]) == 0


@pytest.mark.parametrize(
    ("version", "affected"),
    [("1.2.9", True), ("1.2.10", False), ("1.3.0", True), ("1.3.4", False), ("1.4", False)],
)
def test_an_advisory_fixed_on_two_lines_spares_each_fixed_line(
    version: str, affected: bool
) -> None:
    advisory = audit_deps.Advisory("X", (), ("1.2.10", "1.3.4"))
    assert advisory.affects(audit_deps.Version(version)) is affected


def test_unreachable_pypi_falls_back_to_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str) -> dict[str, Any]:
        raise audit_deps.Offline(url)

    monkeypatch.setattr(audit_deps, "_get", offline)
    findings, source = audit_deps.audit({"h11": "0.14.0"}, {}, SNAPSHOT, online=True)
    assert "snapshot" in source and "CVE-2025-43859" in str(findings[0])


def test_a_server_command_on_a_client_install_says_what_to_install() -> None:
    # A client-only install (`pip install imgest`) lacks the server stack: `imgest serve` must
    # say which extra to install, not end in a traceback; `imgest upload --help` still works.
    block = "import sys; sys.modules.update(dict.fromkeys(['uvicorn', 'fastapi', 'starlette']))"
    run = "from imgest.cli import main; sys.argv = ['imgest', *sys.argv[1:]]; main()"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")}
    served = subprocess.run(
        [sys.executable, "-c", f"{block}; {run}", "serve"], capture_output=True, text=True, env=env
    )
    assert served.returncode == 2, served.stderr
    assert "pip install 'imgest[server]'" in served.stderr and "Traceback" not in served.stderr
    helped = subprocess.run(
        [sys.executable, "-c", f"{block}; {run}", "upload", "--help"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert helped.returncode == 0, helped.stderr

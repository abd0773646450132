"""Fails when a pin of constraints.txt or a floor of pyproject.toml has a known vulnerability.

Advisories come from PyPI's JSON API (the PyPA advisory database with OSV and GitHub's, the
source pip-audit reads by default). When PyPI cannot be reached, they come from the snapshot
scripts/advisories.json, written by `--refresh` (scripts/lock.sh runs it after each lock):
for each pin, its own advisories; for each floor, those of the floor release and of the release
before it, so the advisory a floor was raised past is on record with the versions that fix it.

    python scripts/audit_deps.py              # online, the snapshot when offline
    python scripts/audit_deps.py --offline    # the snapshot only
    python scripts/audit_deps.py --refresh    # rewrite the snapshot from PyPI (online)

Offline, a version is vulnerable when the snapshot says so for that release, or when it is
below a fix of a recorded advisory and not on a release line fixed earlier. The snapshot only
knows what it records: an advisory published after its `refreshed` date is caught online only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
SNAPSHOT = ROOT / "scripts" / "advisories.json"
PYPI = "https://pypi.org/pypi"
# The platform the lock is made for (scripts/lock.sh): markers are judged for it.
ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


class Offline(Exception):
    """PyPI could not be reached."""


@dataclass(frozen=True)
class Advisory:
    """One advisory of one package: its id, aliases (CVE-...) and the releases that fix it."""

    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    link: str = ""

    def name(self) -> str:
        """The id and its CVE aliases, for a message."""
        cves = [a for a in self.aliases if a.startswith("CVE-")]
        return f"{self.id} ({', '.join(cves)})" if cves else self.id

    def affects(self, version: Version) -> bool:
        """Whether `version` is below a fix, and on no release line fixed at or before it."""
        fixes = sorted(_versions(self.fixed_in))
        if not fixes or version >= fixes[-1]:
            return not fixes  # no fix known: every version, as PyPI would list it
        return not any(f <= version and f.release[:2] == version.release[:2] for f in fixes)

    def to_json(self) -> dict[str, Any]:
        """The snapshot's form."""
        return {
            "id": self.id,
            "aliases": list(self.aliases),
            "fixed_in": list(self.fixed_in),
            "link": self.link,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Advisory:
        """From PyPI's `vulnerabilities` entries or the snapshot's."""
        return cls(
            id=str(raw["id"]),
            aliases=tuple(sorted(raw.get("aliases") or ())),
            fixed_in=tuple(raw.get("fixed_in") or ()),
            link=str(raw.get("link") or ""),
        )


@dataclass(frozen=True)
class Finding:
    """A pinned or floor version with its problem."""

    what: str  # "pin" or "floor"
    package: str
    version: str
    problem: str

    def __str__(self) -> str:
        return f"{self.what} {self.package}=={self.version}: {self.problem}"


def _versions(texts: Iterable[str]) -> list[Version]:
    out = []
    for text in texts:
        try:
            out.append(Version(text))
        except InvalidVersion:
            continue
    return out


def read_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a requirements/constraints file, by canonical name."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==" or "*" in spec[0].version:
            raise ValueError(f"not an exact pin: {line!r}")
        pins[canonicalize_name(req.name)] = spec[0].version
    return pins


def read_floors(pyproject: Mapping[str, Any]) -> dict[str, str]:
    """The lowest version each requirement of pyproject.toml admits (>=, ==, ~=), by name."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    floors: dict[str, str] = {}
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):
            continue
        if req.marker is not None and not req.marker.evaluate(ENVIRONMENT | {"extra": ""}):
            continue
        for spec in req.specifier:
            if spec.operator in (">=", "==", "~=", "==="):
                floor = floors.get(name)
                if floor is None or Version(spec.version) > Version(floor):
                    floors[name] = spec.version
    return floors


# --- PyPI --------------------------------------------------------------------------------------


def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return json.load(response)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        # 404 too: a mirror that serves the project pages but not the per-release ones (with
        # no `vulnerabilities`) cannot answer; a pin that is not on PyPI fails `pip install`.
        raise Offline(f"{url}: HTTP {exc.code}") from exc
    except (OSError, TimeoutError) as exc:
        raise Offline(f"{url}: {exc}") from exc


def pypi_advisories(package: str, version: str) -> list[Advisory]:
    """PyPI's advisories for one release."""
    data = _get(f"{PYPI}/{package}/{version}/json")
    return [
        Advisory.from_json(v) for v in data.get("vulnerabilities", []) if not v.get("withdrawn")
    ]


def pypi_releases(package: str) -> list[Version]:
    """Every final, not yanked release of a package, oldest first."""
    data = _get(f"{PYPI}/{package}/json")
    out = []
    for text, files in data["releases"].items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if not version.is_prerelease and files and not all(f.get("yanked") for f in files):
            out.append(version)
    return sorted(out)


def floor_releases(package: str, floor: str) -> list[str]:
    """The first release at or above `floor` and the one before it (the last one excluded)."""
    releases = pypi_releases(package)
    at = next((i for i, v in enumerate(releases) if v >= Version(floor)), len(releases))
    return [str(v) for v in releases[max(at - 1, 0) : at + 1]]


# --- snapshot ----------------------------------------------------------------------------------


def refresh(
    pins: Mapping[str, str], floors: Mapping[str, str], old: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The snapshot: advisories of every pin, every floor and the release before each floor,
    added to those of `old` (advisories recorded by hand or by an earlier refresh stay)."""
    wanted: set[tuple[str, str]] = set(pins.items())
    with ThreadPoolExecutor(8) as pool:
        for package, releases in zip(
            floors, pool.map(floor_releases, floors, floors.values()), strict=True
        ):
            wanted.update((package, r) for r in releases)
        ordered = sorted(wanted)
        found = list(pool.map(lambda pv: pypi_advisories(*pv), ordered))
    packages: dict[str, Any] = {}
    for package, entry in (old or {"packages": {}})["packages"].items():
        packages[package] = {
            "releases": dict(entry["releases"]),
            "advisories": {a["id"]: a for a in entry["advisories"]},
        }
    for (package, version), advisories in zip(ordered, found, strict=True):
        entry = packages.setdefault(package, {"releases": {}, "advisories": {}})
        entry["releases"][version] = sorted(a.id for a in advisories)
        for a in advisories:
            entry["advisories"][a.id] = a.to_json()
    for entry in packages.values():
        entry["advisories"] = sorted(entry["advisories"].values(), key=lambda a: a["id"])
    return {
        "source": PYPI + "/<package>/<version>/json (vulnerabilities)",
        "refreshed": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "packages": dict(sorted(packages.items())),
    }


def snapshot_findings(
    what: str, package: str, version: str, snapshot: Mapping[str, Any]
) -> list[Finding]:
    """Problems of one version according to the snapshot (offline)."""
    entry = snapshot["packages"].get(package, {"releases": {}, "advisories": []})
    advisories = [Advisory.from_json(a) for a in entry["advisories"]]
    known = {Version(v): ids for v, ids in entry["releases"].items()}
    v = Version(version)
    ids = set(known.get(v, ())) | {a.id for a in advisories if a.affects(v)}
    found = [
        Finding(
            what,
            package,
            version,
            f"vulnerable: {a.name()}, fixed in {', '.join(a.fixed_in) or 'no release'}",
        )
        for a in advisories
        if a.id in ids
    ]
    return found


def online_findings(pins: Mapping[str, str], floors: Mapping[str, str]) -> list[Finding]:
    """Problems of every pin and floor according to PyPI (raises Offline)."""
    checks = [("pin", p, v) for p, v in pins.items()]
    with ThreadPoolExecutor(8) as pool:
        firsts = pool.map(lambda pf: floor_releases(*pf)[-1:], floors.items())
        checks += [("floor", p, r[0]) for p, r in zip(floors, firsts, strict=True) if r]
        results = list(pool.map(lambda c: pypi_advisories(c[1], c[2]), checks))
    findings = []
    for (what, package, version), advisories in zip(checks, results, strict=True):
        for a in advisories:
            fixes = ", ".join(a.fixed_in) or "no release"
            findings.append(
                Finding(what, package, version, f"vulnerable: {a.name()}, fixed in {fixes}")
            )
    return findings


def audit(
    pins: Mapping[str, str],
    floors: Mapping[str, str],
    snapshot: Mapping[str, Any] | None,
    online: bool = True,
) -> tuple[list[Finding], str]:
    """Every problem found, and where the advisories came from."""
    if online:
        try:
            return online_findings(pins, floors), "PyPI"
        except Offline as exc:
            print(f"audit: PyPI unreachable ({exc}); using the snapshot", file=sys.stderr)
    if snapshot is None:
        raise SystemExit("audit: offline and no advisory snapshot (scripts/advisories.json)")
    findings = [f for p, v in pins.items() for f in snapshot_findings("pin", p, v, snapshot)]
    findings += [f for p, v in floors.items() for f in snapshot_findings("floor", p, v, snapshot)]
    return findings, f"the snapshot of {snapshot['refreshed']}"


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 1 on any finding."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", help="read the snapshot only")
    mode.add_argument("--refresh", action="store_true", help="rewrite the snapshot (online)")
    args = parser.parse_args(argv)
    pins = read_pins(args.lock.read_text())
    floors = read_floors(tomllib.loads(args.pyproject.read_text()))
    old = json.loads(args.snapshot.read_text()) if args.snapshot.exists() else None
    if args.refresh:
        try:
            data = refresh(pins, floors, old)
        except Offline as exc:
            print(f"audit: snapshot not refreshed, PyPI did not answer ({exc})", file=sys.stderr)
            return 2
        args.snapshot.write_text(json.dumps(data, indent=1) + "\n")
        print(f"audit: wrote {args.snapshot.name} ({len(data['packages'])} packages)")
        args.offline = True
        old = data
    findings, source = audit(pins, floors, old, online=not args.offline)
    for finding in findings:
        print(f"audit: {finding}", file=sys.stderr)
    print(
        f"audit: {len(pins)} pins and {len(floors)} floors checked against {source}: "
        f"{len(findings)} problem(s)"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

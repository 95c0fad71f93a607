"""The install is reproducible: constraints.txt pins every dependency, CI runs README's command."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _requirements() -> list[Requirement]:
    """Every dependency and extra, less the extras' references to the project itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    declared = [Requirement(text) for text in sum(extras, project["dependencies"])]
    return [r for r in declared if canonicalize_name(r.name) != project["name"]]


def _closure(requirements: list[Requirement]) -> set[str]:
    """Names of every distribution the requirements pull in, as installed here."""
    names: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in names:
            continue
        names.add(name)
        for text in importlib.metadata.requires(requirement.name) or []:
            nested = Requirement(text)
            extras = ["", *sorted(requirement.extras)]
            if nested.marker is None or any(nested.marker.evaluate({"extra": e}) for e in extras):
                pending.append(nested)
    return names


def test_constraints_pin_every_dependency_within_its_bounds() -> None:
    pins = _pins()
    for requirement in _requirements():
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} has no pin in constraints.txt"
        assert requirement.specifier.contains(pinned), (
            f"{requirement.name}=={pinned} vs {requirement}"
        )
    unpinned = _closure(_requirements()) - pins.keys()
    assert not unpinned, f"installed with the project but not pinned: {sorted(unpinned)}"


def test_ci_runs_the_readme_test_command_with_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text()
    test_command = re.search(r"```sh\n(pip install .*pytest.*)\n```", readme).group(1)
    assert "-c constraints.txt" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert compose.count("pip install") == compose.count("-c /tmp/lookalike/constraints.txt")


def test_package_data_ships_schema_sql_and_every_migration() -> None:
    """`pip install .` (not editable) copies only what package-data names into the wheel."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["lookalike.store"]
    package = ROOT / "lookalike" / "store"
    migrations = package / "migrations"
    shipped = [package / "schema.sql", *sorted(migrations.glob("*.sql")), *migrations.glob("*.py")]
    assert len(shipped) > 1
    for path in shipped:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatchcase(relative, glob) for glob in globs), relative


def test_docker_gets_its_schema_from_the_migrate_service() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert not any("schema.sql" in volume for volume in services["db"]["volumes"])
    assert services["migrate"]["command"].rstrip().endswith('&& exec lookalike migrate"')
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("web", "crawler"):
        waits_for = services[name]["depends_on"]["migrate"]
        assert waits_for == {"condition": "service_completed_successfully"}, name

"""What the image and the wheel must contain: every top-level package, and the nginx templates."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from ingress import render

ROOT = Path(__file__).resolve().parents[1]
# tests/ and fuzz/ (the fuzz targets) are development tools, shipped in neither the image nor the wheel.
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "fuzz"))


def test_dockerfile_copies_every_package_and_the_templates() -> None:
    copied = set(re.findall(r"^COPY (\S+) \1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(PACKAGES) | {"templates"} <= copied, sorted(set(PACKAGES) - copied)


def test_wheel_includes_every_package_and_the_templates() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = cfg["packages"]["find"]["include"]
    assert all(any(re.fullmatch(pat.replace("*", ".*"), p) for pat in include) for p in PACKAGES), include
    assert cfg["data-files"]["share/portolan/templates"] == ["templates/*.j2"]
    assert cfg["data-files"]["share/portolan/templates/lua"] == ["templates/lua/*.lua"]
    # Those patterns are every template and the Lua beside them, and the place they install to
    # is where the renderer looks.
    assert sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_file()) == sorted(
        p.name for p in (ROOT / "templates").glob("*.j2"))
    assert cfg["data-files"]["share/portolan/templates/njs"] == ["templates/njs/*.js"]
    assert sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir()) == ["lua", "njs"]
    assert [p.name for p in (ROOT / "templates/lua").iterdir()] == ["portolan.lua"]
    assert [p.name for p in (ROOT / "templates/njs").iterdir()] == ["portolan_l4.js"]
    assert Path(sys.prefix) / "share/portolan/templates" == render.INSTALLED_TEMPLATES

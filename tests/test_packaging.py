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
    # Every file under templates/ (each folder's) is matched by a data-files pattern of that
    # folder, and the place they install to is where the renderer looks.
    data = cfg["data-files"]
    for path in sorted((ROOT / "templates").rglob("*")):
        if path.is_file():
            folder = path.parent.relative_to(ROOT).as_posix()
            patterns = data.get("share/portolan/" + folder, [])
            assert any(path.match(ROOT.as_posix() + "/" + pat) for pat in patterns), (path, patterns)
    assert Path(sys.prefix) / "share/portolan/templates" == render.INSTALLED_TEMPLATES

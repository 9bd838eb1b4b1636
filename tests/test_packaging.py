"""A non-editable install ships every subpackage of ``bench`` and the report's template.

The wheel is built from this checkout and installed into a temporary folder; a fresh interpreter
whose working directory is elsewhere imports every module from there and loads the template, so
nothing is found through the checkout or the editable install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = """
import importlib, pathlib, pkgutil, sys
import bench, impls
target = pathlib.Path(sys.argv[1]).resolve()
for package in (bench, impls):
    assert pathlib.Path(package.__file__).resolve().is_relative_to(target), package.__file__
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
        print(module.name)
from bench.report.command import template
assert template().render is not None
"""


def test_a_built_wheel_installs_every_subpackage_and_the_template(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], check=True
    )
    (wheel,) = wheels.glob("rowfreeze-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    done = subprocess.run(
        [sys.executable, "-c", CHECK, target],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    in_checkout = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("bench", "impls")
        for path in (ROOT / package).rglob("*.py")
        if path.name not in ("__init__.py", "__main__.py")
    }
    assert in_checkout - imported == set(), "modules the wheel does not ship"

"""The wheel carries roles/, profiles/ and pxe/, and its `onehci` works from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    (found,) = out.glob("onehci-*.whl")
    return found


def test_wheel_contains_data_directories(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for profile in ("single-node", "three-node", "five-node", "lab"):
        assert f"installer/profiles/{profile}.yml" in names
    assert any(n.startswith("installer/roles/") for n in names)
    assert any(n.startswith("installer/pxe/") for n in names)
    assert "installer/cli/main.py" in names


def test_installed_wheel_works_from_any_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # dependencies come from the test environment's site-packages; the package itself only from the wheel
    site = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = lambda *args: subprocess.run([str(venv / "bin/onehci"), *args], cwd=elsewhere, env=env,  # noqa: E731
                                       capture_output=True, text=True)
    where = subprocess.run([str(venv / "bin/python"), "-c", "import installer; print(installer.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True).stdout
    assert where.startswith(site), where  # the installed copy, not the checkout
    listing = run("profiles")
    assert listing.returncode == 0 and "five-node" in listing.stdout
    assert run("init", "--profile", "lab", "mysite").returncode == 0
    checked = run("validate", "mysite/site.yml")
    assert checked.returncode == 0, checked.stderr

"""The top-level Vagrantfile, checked with Debian's vagrant and vagrant-libvirt (no VM is started here).

vagrant missing is a failure, not a skip: scripts/setup.sh installs it (scripts/apt-packages.txt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def vagrant(tmp_path):
    exe = shutil.which("vagrant")
    assert exe, "vagrant is missing: run scripts/setup.sh (apt-get install vagrant vagrant-libvirt)"

    def run(*args: str, site: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("ONEHCI_", "VAGRANT_"))}
        full.update(VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_HOME=str(tmp_path / "vagrant.d"),
                    VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"), NO_COLOR="1", **env)
        if site is not None:
            full["ONEHCI_SITE"] = str(site)
        return subprocess.run([exe, *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120)

    return run


def test_lab_profile_validates(vagrant):
    r = vagrant("validate")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout
    assert "warning" not in r.stderr  # the lab names its disks by serial: nothing to warn about


def test_five_node_profile_validates_and_warns_about_by_id_disks(vagrant):
    r = vagrant("validate", site=ROOT / "profiles" / "five-node.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout
    assert "nebula80: /dev/disk/by-id/ata-SAMSUNG_MZ7LH480HAHQ-00005_S45PNA0M100080, and 12 more" in r.stderr


def test_invalid_site_fails_with_onehcis_message(vagrant, tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("format: 1\ncluster: {name: x}\nnodes: 3\n")
    r = vagrant("validate", site=site)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert f"{site}:3 nodes: expected a list, got 3 (a number)" in out
    assert f"{site}:2 cluster.domain: required field is missing" in out
    assert "Traceback" not in out and "validated successfully" not in out


def test_missing_site_fails_with_onehcis_message(vagrant, tmp_path):
    r = vagrant("validate", site=tmp_path / "nowhere.yml")
    assert r.returncode != 0
    assert f"{tmp_path / 'nowhere.yml'} no such file" in r.stderr


def test_memory_check_shows_the_sum_before_anything_starts(vagrant):
    # 3 x 9,000,000 MiB: more than any machine has; the check runs while the Vagrantfile loads, before
    # vagrant-libvirt touches libvirt
    r = vagrant("up", site=ROOT / "profiles" / "lab.yml", ONEHCI_VM_MEMORY="9000000")
    assert r.returncode != 0
    assert "error: the nodes ask for 27000000 MiB (3 x 9000000 MiB)" in r.stderr
    r = vagrant("up", "lab2", ONEHCI_VM_MEMORY="9000000")
    assert "error: the nodes ask for 9000000 MiB (1 x 9000000 MiB)" in r.stderr


def test_missing_provider_plugin_is_named(vagrant):
    r = vagrant("validate", VAGRANT_NO_PLUGINS="1")
    assert r.returncode != 0
    assert "error: the libvirt provider needs the vagrant-libvirt plugin" in r.stderr

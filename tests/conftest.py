"""Shared fixtures: a small valid site as text, and helpers to mutate and load it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# the suite reads onehci's English messages whatever this machine's language (tests/unit/test_i18n.py
# sets French itself); LANGUAGE only picks message catalogs, nothing else about the locale
os.environ["LANGUAGE"] = "en"

# Ctrl-C stops the run (and its fixtures take down what they started) also when scripts/test.sh
# runs it as a background job, which the shell starts with SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINiF4oTcjawy7G+g8RyAK7x1JuWR6hHSoqSMJjVk51pU tech@academy.example"

BASE_SITE = f"""\
format: 1
cluster: {{name: test, domain: example.org, timezone: Europe/Paris, locale: fr_FR.UTF-8, keyboard: fr}}
networks:
  management:
    cidr: 192.168.10.0/24
    gateway: 192.168.10.1
    dns: [192.168.10.1]
    dhcp: own
  vms:
    bridge: br0
    cidr: 192.168.20.0/24
    first: 192.168.20.10
    size: 100
bootstrap:
  address: 192.168.10.5
  interface: eno1
access:
  ssh_authorized_keys:
    - {SSH_KEY}
storage:
  goal: 2
nodes:
  - hostname: n1
    mac: 52:54:00:00:00:01
    ip: 192.168.10.11
    roles: [frontend, mfs_master, kvm, mfs_chunkserver]
    os_disk: {{serial: OS1}}
    chunk_disks: [{{serial: C1}}]
  - hostname: n2
    mac: 52:54:00:00:00:02
    ip: 192.168.10.12
    roles: [kvm, mfs_chunkserver, mfs_metalogger]
    os_disk: {{serial: OS2}}
    chunk_disks: [{{serial: C2}}]
  - hostname: n3
    mac: 52:54:00:00:00:03
    roles: [kvm, mfs_chunkserver, mfs_metalogger]
    os_disk: /dev/disk/by-id/ata-DISK3
    chunk_disks: [/dev/disk/by-id/ata-CHUNK3]
"""

REPO = Path(__file__).resolve().parent.parent


def with_install(text: str, install: str) -> str:
    """Site text whose bootstrap section says `install: INSTALL` (image or debian-installer)."""
    at = text.index("\n", text.index("\nbootstrap:") + 1) + 1
    return text[:at] + f"  install: {install}\n" + text[at:]


@pytest.fixture(autouse=True)
def blocking_stdin():
    """Ansible refuses to start when its inherited stdin is non-blocking; a process a lab test
    ran may leave the shared stdin so (seen in a CI run of the whole suite): every test starts
    with it blocking again."""
    try:
        os.set_blocking(0, True)
    except OSError:
        pass  # no stdin at all


_prebuild = None  # OpenNebula's build for the labs, in the background (tests/prebuild.py)


def pytest_collection_finish(session):
    global _prebuild
    from tests import prebuild
    if not session.config.option.collectonly and prebuild.needed([str(item.path) for item in session.items]):
        _prebuild = prebuild.start()


def pytest_sessionfinish(session):
    if _prebuild is not None:
        from tests import prebuild
        prebuild.stop(_prebuild)


@pytest.fixture
def write_site(tmp_path):
    """Write site text to tmp_path/site.yml and return the path."""

    def write(text: str = BASE_SITE, name: str = "site.yml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def base_loaded(write_site, monkeypatch):
    """BASE_SITE loaded, its state directory next to it (not $ONEHCI_STATE_DIR)."""
    from installer import sitefile

    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    return sitefile.load(write_site())


def line_of(text: str, marker: str) -> int:
    """1-based number of the only line of `text` containing `marker`."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if marker in line]
    assert len(hits) == 1, f"marker {marker!r} found on lines {hits}"
    return hits[0]


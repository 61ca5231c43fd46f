"""What the unit tests of installer/ share beyond tests/conftest.py."""

from __future__ import annotations

import json

import pytest

from installer import pxe, sitefile, state
from installer.bootserver import BootServer
from installer.bootstate import INSTALL
from installer.resources import profiles
from tests.conftest import with_install


@pytest.fixture(scope="session")
def fake_image_dir(tmp_path_factory):
    """A stand-in for a built node image: the files `pxe build` serves and the facts it renders.
    The real image is built and installed in tests/bootchain/test_image_install.py."""
    directory = tmp_path_factory.mktemp("image")
    for name, data in (("root.tar.zst", b"root"), ("vmlinuz", b"kernel"), ("installer.initrd", b"initrd")):
        (directory / name).write_bytes(data)
    (directory / "image.json").write_text(json.dumps({
        "key": "0123456789abcdef", "kernel": "6.1.0-0-amd64", "packages": {"openssh-server": "1"},
        "unpacked_bytes": 1 << 30, "archive_bytes": 4, "sha256": "ab" * 32, "initrd_bytes": 6,
        "built": "2026-12-05T00:00:00Z", "build_seconds": 1}))
    return directory


@pytest.fixture(autouse=True)
def fake_image(fake_image_dir, monkeypatch):
    """pxe build of a site installing from an image finds this one (ONEHCI_IMAGE)."""
    monkeypatch.setenv("ONEHCI_IMAGE", str(fake_image_dir))
    return fake_image_dir


@pytest.fixture(params=["debian-installer"])
def boot_server(request, tmp_path, monkeypatch):
    """A BootServer on the lab profile's boot tree (built in TMP_PATH), every node to install with
    token-NODE as its token; the events it says are kept in its `events` list. Installs with the
    Debian installer unless a test parametrizes it indirectly with "image"."""
    install = request.param
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    # an interface no lab makes: the lab tests may have the profile's onehci-lab0 up meanwhile
    text = profiles()["lab"].read_text().replace("interface: onehci-lab0", "interface: onehci-unit0")
    (tmp_path / "site.yml").write_text(with_install(text, install))
    state.write_json(tmp_path / "state/boot.json", {h: {"state": INSTALL, "token": f"token-{h}", "changed": "x"}
                                                    for h in ("lab1", "lab2", "lab3")})
    loaded = sitefile.load(tmp_path / "site.yml")
    result = pxe.build(loaded, tmp_path / "pxe")
    events = []
    server = BootServer(loaded, result.out, events.append)
    server.events = events
    return server

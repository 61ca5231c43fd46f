"""The deployed 3-node cloud that tests/lab/test_opennebula.py and tests/lab/test_rebuild.py
share (one `lab up` and one first deploy for both, about 4 minutes saved): a private copy of
the lab profile, so its state directory, and the site file add-node extends, are the test's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from installer import lab, one, sitefile
from installer.plan import make_plan
from installer.siteinit import profile_site


def onehci(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Cloud:
    def __init__(self, path: Path, outputs: list[str]):
        self.path = path
        self.site = str(path)
        self.outputs = outputs  # everything onehci printed, for the secret check

    @property
    def loaded(self):
        return sitefile.load(self.path)  # read again: add-node extends the file

    @property
    def plan(self):
        return make_plan(self.loaded.site)

    def client(self):
        return one.client_for(self.loaded, self.plan)

    def down(self) -> None:
        assert lab.down(self.loaded) is not None


@pytest.fixture(scope="session")
def lab_cloud(tmp_path_factory) -> Cloud:
    path = tmp_path_factory.mktemp("cloud") / "site.yml"
    path.write_text(profile_site("lab").read_text())
    loaded = sitefile.load(path)
    lab.down(loaded)
    up = onehci("lab", "up", str(path))
    assert up.returncode == 0, up.stderr[-3000:]
    first = onehci("deploy", "--json", str(path))
    assert first.returncode == 0, first.stderr[-3000:]
    cloud = Cloud(path, [up.stdout, up.stderr, first.stdout, first.stderr])
    try:
        yield cloud
    finally:
        cloud.down()  # safe when test_rebuild.py already took it down

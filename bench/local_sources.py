"""What the rehearsals to a running cloud (bench/image_deploy.py, bench/vagrant_deploy.py) share: onehci run
on their site, and the local sources their nodes install from, in place of the internet: apt-cacher-ng and
OpenNebula's packages built from its source (the lab's build), both on the bootstrap address, named in the
site's STATE/environment.json (kind "site", as a site with a local mirror would write it)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from installer import aptcache, environment
from installer.lab import core, onerepo

MIRROR = "http://deb.debian.org/debian"


def end_on_signals() -> None:
    """SIGINT (ignored in a background job) and SIGTERM end the run through its cleanups."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def onehci(site: Path, *args: str) -> subprocess.CompletedProcess:
    """`onehci ARGS SITE`, its state beside SITE, stdout and stderr together."""
    return subprocess.run([sys.executable, "-m", "installer", *args, str(site)], timeout=5400,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def new_site(prefix: str, site_text: Callable[[str], str]) -> tuple[Path, Path, Path]:
    """A work directory under /var/tmp with an SSH key of its own and site.yml, SITE_TEXT of the key's
    public half: (workdir, key, site)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    os.chmod(workdir, 0o755)  # dnsmasq (nobody) reads the boot tree
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(key)], check=True)
    site = workdir / "site.yml"
    site.write_text(site_text(key.with_suffix(".pub").read_text().strip()))
    return workdir, key, site


def publish_opennebula(site: Path, key: Path, address: str, role_vars: dict | None = None) -> Path:
    """The lab's OpenNebula build in a repository beside SITE, and SITE's environment naming it, KEY
    and ROLE_VARS."""
    repo = site.parent / "opennebula-repo"
    onerepo.publish(core.opennebula_build(say=print).paths(), repo)
    environment.write(site, {"kind": "site", "ssh_key": str(key), "opennebula_repo": onerepo.record(address),
                             "role_vars": {"opennebula_frontend__fireedge": core.FIREEDGE, **(role_vars or {})}})
    return repo


def serve(stack: contextlib.ExitStack, repo: Path, address: str) -> None:
    """apt-cacher-ng and REPO's HTTP server on ADDRESS, stopped when STACK closes."""
    workdir = repo.parent
    cache = aptcache.start(address, MIRROR, workdir / "run")
    stack.callback(lambda: (cache.terminate(), cache.wait(30)))
    server = onerepo.serve(repo, address, workdir / "repo-http.log")
    stack.callback(lambda: os.kill(server.pid, signal.SIGTERM))

"""apt-cacher-ng on the bootstrap address: one download from the mirror, then every node
installs from the cache. onehci runs its own instance with a private configuration, so
the machine's own apt-cacher-ng (if any) is left alone.

Debian's package maps deb.debian.org to a list of mirrors; a `backends_debian` file with
the site's mirror makes it fetch from there instead (seen: without it, "503 Host not found"
where only deb.debian.org is reachable).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from installer.checks import APT_PROXY_PORT as PORT
from installer.errors import OnehciError
from installer.i18n import _
from installer.waiting import Pending, wait_until

PACKAGE_CONFIG = Path("/etc/apt-cacher-ng")
CACHE_DIR = Path("/var/cache/onehci/apt-cacher-ng")


def listening(address: str, port: int = PORT) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def start(address: str, mirror: str, workdir: Path, cache_dir: Path = CACHE_DIR,
          timeout: float = 15) -> subprocess.Popen:
    """Start apt-cacher-ng in the foreground on address:3142, caching `mirror`; wait until it
    answers. The caller stops it (terminate the returned process)."""
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    if not Path(binary).exists() or not PACKAGE_CONFIG.is_dir():
        raise OnehciError(_("apt-cacher-ng is missing: install it with `apt-get install apt-cacher-ng` "
                            "(or set bootstrap.apt_proxy: false)"))
    config = workdir / "apt-cacher-ng"
    if config.exists():
        shutil.rmtree(config)
    shutil.copytree(PACKAGE_CONFIG, config)
    (config / "backends_debian").write_text(mirror.rstrip("/") + "/\n")
    logs = workdir / "apt-cacher-ng-logs"
    for directory in (cache_dir, logs):
        directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "-c", str(config), "ForeGround=1", f"BindAddress={address}", f"Port={PORT}",
         f"CacheDir={cache_dir}", f"LogDir={logs}", f"PidFile={workdir / 'apt-cacher-ng.pid'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    def answers():
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise OnehciError(_("apt-cacher-ng did not start on {address}:{port}: {error}").format(
                address=address, port=PORT, error=err or f"exit {proc.returncode}"))
        return listening(address) or Pending("not listening")

    try:
        wait_until(answers, timeout=timeout, every=0.1, timed_out=lambda _pending: (
            _("apt-cacher-ng did not answer on {address}:{port} within {seconds} s").format(
                address=address, port=PORT, seconds=f"{timeout:.0f}")))
    except OnehciError:
        proc.terminate()
        raise
    return proc


def log_path(workdir: Path) -> Path:
    """apt-cacher-ng's transfer log: one line per file, `time|I or O|bytes|client|path`."""
    return workdir / "apt-cacher-ng-logs" / "apt-cacher.log"

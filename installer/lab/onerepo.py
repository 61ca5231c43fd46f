"""The lab's OpenNebula repository: the packages built from OpenNebula's source
(installer/lab/onebuild.py) in the layout of OpenNebula's own apt repository
(`dists/stable/opennebula/binary-amd64`, a signed Release), served over HTTP on the bootstrap
address by a small server that the lab records and `lab down` stops.

The roles install from it exactly as from downloads.opennebula.io: the signing key fetched
once into /etc/apt/keyrings, a `deb [signed-by=...]` line, `apt-get install opennebula...`.
What differs is data the inventory carries (`onehci_opennebula_repo`: the URL, the key's URL,
and `direct`, because apt-cacher-ng only passes port 80).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from email.utils import formatdate
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.lab import procs
from installer.waiting import Pending, wait_until

PORT = 8633  # the repository's HTTP port on the bootstrap address
SUITE, COMPONENT = "stable", "opennebula"  # as OpenNebula's own repository
KEY_FILE = "repo.key"  # the public signing key, at the top of the repository
START_TIMEOUT = 10.0
# the lab's signing key: made once per machine, kept (nodes keep the public key they fetched)
GNUPG_HOME = Path(os.environ.get("ONEHCI_REPO_GNUPG", "/var/lib/onehci/opennebula-repo-key"))
KEY_NAME = "onehci lab OpenNebula repository <root@localhost>"


def record(address: str, port: int = PORT) -> dict:
    """What the roles get as onehci_opennebula_repo (docs/roles/opennebula_repo.md)."""
    url = f"http://{address}:{port}/"
    return {"url": url, "suite": SUITE, "components": [COMPONENT], "key_url": url + KEY_FILE, "direct": True}


def _gpg(*args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["gpg", "--homedir", str(GNUPG_HOME), "--batch", "--quiet", "--no-tty", *args],
                          input=input, capture_output=True)
    if proc.returncode != 0:
        raise OnehciError(f"gpg {args[0]} failed for the lab's OpenNebula repository: "
                          f"{proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    return proc.stdout


def _stop_agent() -> None:
    # gpg starts an agent for the secret key; it is this command's to stop
    subprocess.run(["gpgconf", "--homedir", str(GNUPG_HOME), "--kill", "gpg-agent"], capture_output=True)


def signing_key() -> bytes:
    """The repository's public key (ASCII-armoured), made on first use."""
    if shutil.which("gpg") is None:
        raise OnehciError("gpg is missing: install it with `apt-get install gnupg` (the lab signs its repository)")
    with state.locked(state.ensure(GNUPG_HOME.parent), "repo-key-lock"):
        if not (GNUPG_HOME / "pubring.kbx").exists() or not _gpg("--list-secret-keys"):
            GNUPG_HOME.mkdir(mode=0o700, parents=True, exist_ok=True)
            GNUPG_HOME.chmod(0o700)
            try:
                _gpg("--passphrase", "", "--quick-generate-key", KEY_NAME, "ed25519", "sign", "never")
            finally:
                _stop_agent()
        return _gpg("--armor", "--export", KEY_NAME)


def publish(debs: list[Path], repo: Path) -> Path:
    """Make REPO hold exactly DEBS (several versions of a package may sit side by side, as in
    a real repository) with a signed index; returns REPO."""
    if shutil.which("dpkg-scanpackages") is None:
        raise OnehciError("dpkg-scanpackages is missing: install it with `apt-get install dpkg-dev`")
    key = signing_key()
    pool = repo / "pool" / COMPONENT
    pool.mkdir(parents=True, exist_ok=True)
    wanted = {deb.name for deb in debs}
    for old in pool.glob("*.deb"):
        if old.name not in wanted:
            old.unlink()
    for deb in debs:
        target = pool / deb.name
        if not target.exists() or target.stat().st_size != deb.stat().st_size:
            shutil.copyfile(deb, target)
    scan = subprocess.run(["dpkg-scanpackages", "--multiversion", f"pool/{COMPONENT}", "/dev/null"], cwd=repo,
                          capture_output=True)
    if scan.returncode != 0:
        raise OnehciError(f"dpkg-scanpackages failed: {scan.stderr.decode(errors='replace').strip()}")
    index = repo / "dists" / SUITE / COMPONENT / "binary-amd64"
    index.mkdir(parents=True, exist_ok=True)
    (index / "Packages").write_bytes(scan.stdout)
    (index / "Packages.gz").write_bytes(gzip.compress(scan.stdout, mtime=0))
    release = _release(repo / "dists" / SUITE)
    # one signer at a time: each stops the key's gpg-agent when done, which cut another lab's
    # signature short ("signing failed: Connection reset by peer") when two labs came up at once
    with state.locked(state.ensure(GNUPG_HOME.parent), "repo-key-lock"):
        try:
            (repo / "dists" / SUITE / "InRelease").write_bytes(_gpg("--local-user", KEY_NAME, "--clearsign",
                                                                    input=release))
            (repo / "dists" / SUITE / "Release.gpg").write_bytes(_gpg("--local-user", KEY_NAME, "--armor",
                                                                      "--detach-sign", input=release))
        finally:
            _stop_agent()
    (repo / "dists" / SUITE / "Release").write_bytes(release)
    (repo / KEY_FILE).write_bytes(key)
    return repo


def _release(suite_dir: Path) -> bytes:
    files = sorted(p for p in suite_dir.rglob("Packages*") if p.is_file())
    lines = ["Origin: onehci lab", "Label: OpenNebula (built from source by onehci)", f"Suite: {SUITE}",
             f"Codename: {SUITE}", f"Date: {formatdate(usegmt=True)}", "Architectures: amd64 all",
             f"Components: {COMPONENT}", "Acquire-By-Hash: no"]
    for field, algorithm in (("MD5Sum", hashlib.md5), ("SHA256", hashlib.sha256)):
        lines.append(f"{field}:")
        for path in files:
            data = path.read_bytes()
            lines.append(f" {algorithm(data).hexdigest()} {len(data):>10} {path.relative_to(suite_dir).as_posix()}")
    return ("\n".join(lines) + "\n").encode()


def _listening(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((address, port)) == 0


def serve(repo: Path, address: str, log: Path, port: int = PORT) -> procs.Proc:
    """Start an HTTP server for REPO on address:port in a session of its own (it outlives
    this command); return it once it answers."""
    if _listening(address, port):
        raise OnehciError(f"something already listens on {address}:{port}, where the lab serves its OpenNebula "
                          "repository: stop it and run `onehci lab up` again")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", address, "--directory", str(repo),
                                 str(port)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    def failed(_: str) -> str:
        proc.kill()
        proc.wait()
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        return (f"the lab's OpenNebula repository server did not start on {address}:{port}: "
                f"{tail[0] if tail else 'no output'} (log: {log})")

    def serving():
        if proc.poll() is not None:
            raise OnehciError(failed(""))
        return _listening(address, port) or Pending("not listening")

    wait_until(serving, timeout=START_TIMEOUT, every=0.1, timed_out=failed)
    found = procs.identify(proc.pid)
    if found is None:
        raise OnehciError("the lab's OpenNebula repository server exited right after starting")
    return found

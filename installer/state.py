"""The state directory of a site: what onehci remembers between runs.

By default `state/` next to site.yml (so a backup of the site directory keeps it),
or $ONEHCI_STATE_DIR. The directory is 0700 and every file in it 0600: it holds
install tokens now and passwords later. Writes are atomic and serialised by a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from installer.errors import OnehciError


def state_dir(site_path: str | Path) -> Path:
    override = os.environ.get("ONEHCI_STATE_DIR")
    return Path(override) if override else Path(site_path).resolve().parent / "state"


def ensure(directory: Path) -> Path:
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except PermissionError:
        raise OnehciError(f"cannot create the state directory {directory}: permission denied") from None
    return directory


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically."""
    ensure(path.parent)
    write_atomic(path, data, 0o600)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write PATH whole or not at all: a new file of a name nobody could have planted (a link
    left at a fixed temporary name is never followed), synced, then renamed over PATH."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except PermissionError:
        raise OnehciError(f"cannot write in {path.parent}: permission denied") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OnehciError(f"{path} is damaged ({exc}); restore it from a backup or remove it") from None


def write_json(path: Path, data: Any) -> None:
    write_private(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def locked(directory: Path, name: str = "lock") -> Iterator[None]:
    """Serialise read-modify-write of state files between processes."""
    ensure(directory)
    with open(directory / f".{name}", "a") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hold(directory: Path, name: str) -> IO | None:
    """An exclusive lock kept until the returned file is closed or the process ends (even by
    SIGKILL: the kernel drops it), or None at once when another process holds it. For long
    operations, which must refuse rather than wait."""
    ensure(directory)
    fh = open(directory / f".{name}", "a")
    os.fchmod(fh.fileno(), 0o600)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def secret_values(directory: Path) -> list[str]:
    """Contents of the secret files (state/secrets/*), for scans of served files."""
    base = directory / "secrets"
    if not base.is_dir():
        return []
    return [p.read_text(encoding="utf-8", errors="replace").strip() for p in sorted(base.iterdir()) if p.is_file()]


def oneadmin_password_file(site_path: str | Path) -> Path:
    """Where the cloud's oneadmin password is kept on this (the control) machine. Under
    secrets/ so that the scans of served files look for it too."""
    return state_dir(site_path) / "secrets" / "oneadmin_password"


def oneadmin_password(site_path: str | Path) -> str:
    """The oneadmin password of the site's OpenNebula, generated on first use and then kept:
    OpenNebula takes it from one_auth at its first start only, so it must never change behind
    its back. The file is 0600 and the value is never printed; the roles get only the path."""
    path = oneadmin_password_file(site_path)
    with locked(path.parent.parent, "oneadmin_password"):
        if not path.exists():
            # URL-safe letters only: one_auth is `oneadmin:PASSWORD` on one line
            write_private(path, (secrets.token_urlsafe(24) + "\n").encode())
        ensure(path.parent)
        os.chmod(path, 0o600)
        password = path.read_text(encoding="utf-8").strip()
    if not password:
        raise OnehciError(f"{path} is empty: restore it from a backup (OpenNebula keeps the password it "
                          "started with)")
    return password

"""Where the shipped data lives: inside the package in a wheel, at the top of a checkout."""

from __future__ import annotations

from pathlib import Path

from installer.errors import OnehciError

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory `roles`, `profiles` or `pxe`."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise OnehciError(f"the installation is incomplete: no '{name}' directory next to {_PACKAGE}; reinstall onehci")


def profiles() -> dict[str, Path]:
    """Profile name -> its site file."""
    return {p.stem: p for p in sorted(data_dir("profiles").glob("*.yml"))}

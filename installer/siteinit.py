"""Starting a site from a profile."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.resources import profiles


def summary_of(path: Path) -> str:
    """The profile's first comment line is its one-line summary."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def list_profiles() -> list[tuple[str, str]]:
    return [(name, summary_of(path)) for name, path in profiles().items()]


def init_site(profile: str, directory: str | Path, *, force: bool = False) -> Path:
    available = profiles()
    if profile not in available:
        close = difflib.get_close_matches(profile, list(available), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose one of: {', '.join(available)}"
        raise OnehciError(f"no profile named '{profile}'{hint}")
    target = Path(directory) / "site.yml"
    if target.exists() and not force:
        raise OnehciError(f"{target} already exists; nothing was written (use --force to overwrite it)")
    if Path(directory).exists() and not Path(directory).is_dir():
        raise OnehciError(f"{directory} exists and is not a directory")
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OnehciError(f"cannot create {directory}: permission denied") from None
    state.write_atomic(target, available[profile].read_bytes())
    return target


PROFILE_SITES = Path(os.environ.get("ONEHCI_PROFILE_SITES", "/var/lib/onehci/profiles"))


def profile_site(name: str) -> Path:
    """A shipped profile used as a site (`lab up --profile lab`): copied to
    /var/lib/onehci/profiles/NAME/site.yml so its state lives there, never inside the
    installed package or the checkout. The copy follows the shipped profile."""
    available = profiles()
    if name not in available:
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose one of: {', '.join(available)}"
        raise OnehciError(f"no profile named '{name}'{hint}")
    target = PROFILE_SITES / name / "site.yml"
    text = available[name].read_text(encoding="utf-8")
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        state.write_atomic(target, text.encode("utf-8"))
    return target

"""Starting a site from a profile."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.i18n import _
from installer.resources import profiles


def summary_of(path: Path) -> str:
    """The profile's first comment line is its one-line summary."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def no_such_profile(name: str, available: list[str]) -> OnehciError:
    """The refusal of an unknown profile NAME, with the closest one or the list of AVAILABLE."""
    close = difflib.get_close_matches(name, available, n=1)
    if close:
        return OnehciError(_("no profile named '{profile}'; did you mean '{close}'?").format(profile=name,
                                                                                            close=close[0]))
    return OnehciError(_("no profile named '{profile}'; choose one of: {profiles}").format(
        profile=name, profiles=", ".join(available)))


def list_profiles() -> list[tuple[str, str]]:
    return [(name, summary_of(path)) for name, path in profiles().items()]


def init_site(profile: str, directory: str | Path, *, force: bool = False) -> Path:
    available = profiles()
    if profile not in available:
        raise no_such_profile(profile, list(available))
    target = Path(directory) / "site.yml"
    if target.exists() and not force:
        raise OnehciError(_("{path} already exists; nothing was written (use --force to overwrite it)").format(
            path=target))
    if Path(directory).exists() and not Path(directory).is_dir():
        raise OnehciError(_("{path} exists and is not a directory").format(path=directory))
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise OnehciError(_("cannot create {path}: permission denied").format(path=directory)) from None
    state.write_atomic(target, available[profile].read_bytes())
    return target


PROFILE_SITES = Path(os.environ.get("ONEHCI_PROFILE_SITES", "/var/lib/onehci/profiles"))


def profile_site(name: str) -> Path:
    """A shipped profile used as a site (`lab up --profile lab`): copied to
    /var/lib/onehci/profiles/NAME/site.yml so its state lives there, never inside the
    installed package or the checkout. The copy follows the shipped profile."""
    available = profiles()
    if name not in available:
        raise no_such_profile(name, list(available))
    target = PROFILE_SITES / name / "site.yml"
    text = available[name].read_text(encoding="utf-8")
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        state.write_atomic(target, text.encode("utf-8"))
    return target

"""Pieces shared by several commands."""

from __future__ import annotations

import functools

import click

from installer.errors import Reported


def site_path_of(site_path: str | None, profile: str | None) -> str:
    """SITE, or the site file of a shipped profile (default: lab; its state under
    /var/lib/onehci/profiles)."""
    from installer.errors import OnehciError
    from installer.i18n import _

    if site_path and profile:
        raise OnehciError(_("give a SITE file or --profile, not both"))
    if site_path:
        return site_path
    from installer.siteinit import profile_site

    return str(profile_site(profile or "lab"))


def site_or_profile_options(func):
    """[SITE] and --profile, as every verb that takes a site has them."""
    func = click.option("--profile", help="Use a shipped profile's site file (default: lab).")(func)
    return click.argument("site_path", metavar="[SITE]", required=False, type=click.Path(dir_okay=False))(func)


def site_argument(func):
    """[SITE] and --profile, resolved into the site file's path before the command runs."""
    @functools.wraps(func)
    def resolved(*args, site_path: str | None = None, profile: str | None = None, **kwargs):
        return func(*args, site_path=site_path_of(site_path, profile), **kwargs)

    return site_or_profile_options(resolved)


def load_site_or_report(site_path: str, *, as_json: bool = False, strict: bool = False):
    """Load a site. Returns (LoadedSite or None, problems). Without --json, problems are
    printed to stderr here; with --json the caller prints them. Warnings fail with --strict."""
    from installer import sitefile
    from installer.cli.main import report_site_invalid
    from installer.errors import OnehciError, Problem, SiteInvalid

    try:
        loaded = sitefile.load(site_path)
    except SiteInvalid as exc:
        if not as_json:
            report_site_invalid(exc)
        return None, exc.problems
    except OnehciError as exc:
        if not as_json:
            raise
        # a script reading --json gets JSON even when the file cannot be read
        return None, [Problem(site_path, None, "", str(exc).removeprefix(f"{site_path}: "))]
    problems = loaded.warnings
    if strict and problems:
        strict_problems = [p.__class__(p.file, p.line, p.field, p.message, "error") for p in problems]
        if not as_json:
            report_site_invalid(SiteInvalid(strict_problems))
        return None, strict_problems
    if not as_json:
        for p in problems:
            click.echo(p.render(), err=True)
    return loaded, problems


def load_site_or_profile(site_path: str | None, profile: str | None):
    """SITE, or a shipped profile used as a site (its state under /var/lib/onehci/profiles)."""
    loaded, _problems = load_site_or_report(site_path_of(site_path, profile))  # already shown
    if loaded is None:
        raise Reported()
    return loaded


# --- the day-2 verbs: the technician's word about an interrupted destructive step ---

def check_output_directories(*files: str | None) -> None:
    """Refuse, before anything is read or made, a FILE to write whose directory does not exist."""
    from pathlib import Path

    from installer.errors import OnehciError
    from installer.i18n import _

    for name in filter(None, files):
        if not Path(name).parent.is_dir():
            raise OnehciError(_("cannot write {file}: the directory {directory} does not exist").format(
                file=name, directory=Path(name).parent))


def step_answers(took_effect: tuple[str, ...], did_not: tuple[str, ...]) -> dict[str, bool]:
    from installer.i18n import _

    both = set(took_effect) & set(did_not)
    if both:
        raise click.UsageError(_("--took-effect and --did-not-take-effect both name {steps}").format(
            steps=", ".join(sorted(both))))
    return {**{s: True for s in took_effect}, **{s: False for s in did_not}}


answer_options = [
    click.option("--took-effect", "took_effect", multiple=True, metavar="STEP",
                 help="An interrupted destructive STEP did take effect (after you checked): record it done."),
    click.option("--did-not-take-effect", "did_not", multiple=True, metavar="STEP",
                 help="An interrupted destructive STEP did not take effect: run it again."),
]


def with_answer_options(func):
    for option in reversed(answer_options):
        func = option(func)
    return func


def reinstaller(loaded):
    """How the site's nodes are reinstalled by day-2 verbs: None (they boot from the network and
    call back), or the lab's `lab reinstall` when the site runs as the rehearsal lab. Only the
    CLI may import the lab; the operations get this as a parameter."""
    from installer import environment

    if not environment.is_lab(loaded.path):
        return None
    from installer.lab.reinstall import reinstall

    return reinstall

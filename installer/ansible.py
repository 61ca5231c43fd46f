"""The one wrapper around ansible-runner: a private data directory per run under the
site's state directory, the inventory from the plan, live progress on stderr from
Ansible's events, a per-host recap, and a clear error naming host, task and message.

Nothing secret is handed to ansible-runner in a way it would write to its artifacts:
the SSH key goes by path (ansible_ssh_private_key_file), never by content.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.i18n import _, ngettext
from installer.inventory import to_yaml
from installer.resources import data_dir


@dataclass
class HostRecap:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class RunResult:
    playbook: str
    run_dir: Path
    status: str
    rc: int
    recap: dict[str, HostRecap] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)  # {host, task, message}
    seconds: float = 0.0
    registration: dict | None = None  # OpenNebula objects after a deploy (installer/one.py)

    @property
    def changed(self) -> int:
        return sum(r.changed for r in self.recap.values())


class Progress:
    """Turns Ansible's events into short lines: play, task, and each host's result."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.failures: list[dict] = []
        self.task = ""

    def __call__(self, event: dict) -> bool:
        kind, data = event.get("event", ""), event.get("event_data", {})
        host = data.get("host", "")
        if kind == "playbook_on_play_start":
            self.say(f"PLAY {data.get('play', '')}")
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
            self.say(f"  TASK {self.task}")
        elif kind == "runner_on_ok":
            if data.get("res", {}).get("changed"):
                self.say(f"    changed: {host}")
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res", {})
            message = res.get("msg") or res.get("stderr") or res.get("reason") or "failed"
            if isinstance(message, list):
                message = " ".join(map(str, message))
            message = " ".join(str(message).split())[:500]
            what = "UNREACHABLE" if kind == "runner_on_unreachable" else "FAILED"
            self.failures.append({"host": host, "task": data.get("task", self.task), "message": message})
            self.say(f"    {what}: {host}: {message}")
        return True  # keep every event in the artifacts


def strategy_env() -> dict[str, str]:
    """Mitogen's strategy by default: one Python per host kept across tasks instead of one per
    task, which makes a deploy several times faster (docs/performance.md).
    ONEHCI_ANSIBLE_STRATEGY=linear runs plain Ansible instead."""
    if os.environ.get("ONEHCI_ANSIBLE_STRATEGY", "mitogen") == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    import importlib.util

    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        raise OnehciError(_("the installation is incomplete: the mitogen package is missing "
                            "(pip install mitogen, or ONEHCI_ANSIBLE_STRATEGY=linear to run without it)"))
    plugins = Path(spec.submodule_search_locations[0]) / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def run_playbook(site_path: Path, inventory: dict, playbook: str, *, limit: list[str] | None = None,
                 check: bool = False, extravars: dict | None = None,
                 say: Callable[[str], None] = print, forks: int | None = None) -> RunResult:
    """Run playbooks/<playbook> with ansible-runner; return the recap. Never raises on a failed
    play: the caller decides (see `raise_for_failure`)."""
    import time

    import ansible_runner

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = state.ensure(state.state_dir(site_path) / "runs" / f"{stamp}-{Path(playbook).stem}")
    playbook_path = Path(playbook) if Path(playbook).is_absolute() else data_dir("playbooks") / playbook
    if not playbook_path.exists():
        raise OnehciError(_("the installation is incomplete: no playbook {playbook}").format(playbook=playbook_path))
    hosts = len(inventory["all"]["hosts"])
    progress = Progress(say)
    say(_("ansible run in {run_dir}").format(run_dir=run_dir))
    started = time.monotonic()
    cmdline = "--check --diff" if check else None
    # the ansible-playbook installed next to this Python (a venv need not be on PATH)
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    # written here, not handed to ansible-runner as a dict: it would dump it as JSON, and the
    # !unsafe marks (values from site.yml are never templated) would be lost
    hosts_file = run_dir / "inventory" / "hosts.yml"
    state.write_private(hosts_file, to_yaml(inventory).encode())
    runner = ansible_runner.run(
        private_data_dir=str(run_dir),
        playbook=str(playbook_path),
        inventory=str(hosts_file),
        extravars=extravars or {},
        limit=",".join(limit) if limit else None,
        forks=forks or max(hosts, 5),
        cmdline=cmdline,
        roles_path=[str(data_dir("roles"))],
        # host keys are checked (ansible-runner turns that off by default): the inventory's
        # ssh options accept a new node once and refuse a changed key
        envvars={"PATH": path, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
                 "ANSIBLE_FORCE_COLOR": "False", "ANSIBLE_NOCOLOR": "True",
                 "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_STDOUT_CALLBACK": "default",
                 **strategy_env()},
        event_handler=progress,
        quiet=True,
    )
    stats = runner.stats or {}
    recap: dict[str, HostRecap] = {}
    for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                      ("skipped", "skipped")):
        for host, count in (stats.get(key) or {}).items():
            setattr(recap.setdefault(host, HostRecap()), attr, count)
    return RunResult(playbook, run_dir, runner.status, runner.rc, recap, progress.failures,
                     time.monotonic() - started)


def recap_lines(result: RunResult) -> list[str]:
    lines = [f"{'host':16} {'ok':>4} {'changed':>8} {'failed':>7} {'unreachable':>12} {'skipped':>8}"]
    for host, r in sorted(result.recap.items()):
        lines.append(f"{host:16} {r.ok:>4} {r.changed:>8} {r.failed:>7} {r.unreachable:>12} {r.skipped:>8}")
    return lines


def raise_for_failure(result: RunResult) -> None:
    if result.status == "successful" and result.rc == 0:
        return
    if result.failures:
        first, more = result.failures[0], len(result.failures) - 1
        message = (ngettext("{host}: task '{task}' failed: {message} (and {count} more failure(s)); details in {run_dir}",
                            "{host}: task '{task}' failed: {message} (and {count} more failure(s)); details in {run_dir}",
                            more) if more else _("{host}: task '{task}' failed: {message}; details in {run_dir}"))
        raise OnehciError(message.format(host=first["host"], task=first["task"], message=first["message"], count=more,
                                         run_dir=result.run_dir))
    raise OnehciError(_("ansible-playbook {playbook} ended {status} (exit {rc}); details in {run_dir}").format(
        playbook=result.playbook, status=result.status, rc=result.rc, run_dir=result.run_dir))

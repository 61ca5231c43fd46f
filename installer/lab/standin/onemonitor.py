"""Real monitoring for the onehci stand-in: every N seconds, as oneadmin, SSH to each
host, run `virsh -c qemu:///system list` there and check that the datastores path is a
mount point; and read the datastores' sizes on the frontend with statvfs.

A host is MONITORED only when the three checks pass; otherwise it is in ERROR with the
reason. Standard library only: this module ships in the stand-in package.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger("onehci-standin")

DEFAULT_SSH = ("ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5")
CHECKS_FAILED = 65  # the probe script's exit status when a check failed
_TAG = "onehci-probe: "
_STEP = "onehci-probe-step: "  # where the script is, so that a probe that hangs can say where


def probe_script(datastores_path: str) -> str:
    """The shell script run on the host; it reports every failed check on stderr."""
    path = shlex.quote(datastores_path)
    return f"""fail=0
echo '{_STEP}virsh' >&2
if ! err=$(virsh -c qemu:///system list 2>&1 >/dev/null); then
  printf '{_TAG}virsh -c qemu:///system list failed: %s\\n' "$(printf '%s' "$err" | tr '\\n' ' ')" >&2
  fail=1
fi
echo '{_STEP}mountpoint' >&2
if ! mountpoint -q {path}; then
  printf '{_TAG}%s is not a mount point\\n' {path} >&2
  fail=1
fi
[ "$fail" = 0 ] || exit {CHECKS_FAILED}
printf 'HOSTNAME=%s\\nARCH=%s\\nCPUS=%s\\n' "$(uname -n)" "$(uname -m)" "$(nproc)"
sed -n 's/^MemTotal: *\\([0-9]*\\).*/MEMTOTAL=\\1/p; s/^MemAvailable: *\\([0-9]*\\).*/MEMFREE=\\1/p' /proc/meminfo
"""


def probe_argv(ssh_command: list[str], host: str, script: str, probe_user: str) -> list[str]:
    """ssh ... HOST SCRIPT, under runuser when root must act as PROBE_USER."""
    argv = [*ssh_command, host, script]
    if probe_user and probe_user != current_user() and os.geteuid() == 0:
        argv = ["runuser", "-u", probe_user, "--", *argv]
    return argv


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _probe_env(probe_user: str) -> dict[str, str]:
    try:
        home = pwd.getpwnam(probe_user).pw_dir if probe_user else os.path.expanduser("~")
    except KeyError:
        home = "/"
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": home, "LANG": "C.UTF-8"}


def _trim(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]


@dataclass
class ProbeResult:
    ok: bool
    reason: str = ""
    facts: dict[str, str] = field(default_factory=dict)


def run_probe(ssh_command: list[str], host: str, datastores_path: str, probe_user: str,
              timeout: float) -> ProbeResult:
    argv = probe_argv(ssh_command, host, probe_script(datastores_path), probe_user)
    who = probe_user if probe_user and os.geteuid() == 0 else current_user()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=_probe_env(probe_user))
    except subprocess.TimeoutExpired as expired:
        return ProbeResult(False, f"no answer within {timeout:g} s to ssh {host} as {who} "
                                  f"({_stuck_at(expired.stderr)})")
    except OSError as err:
        return ProbeResult(False, f"cannot run {argv[0]}: {err.strerror}")
    if done.returncode == 0:
        facts = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return ProbeResult(True, facts=facts)
    if done.returncode == 255:  # ssh's own failure: connection, authentication, host key
        return ProbeResult(False, f"cannot SSH to {host} as {who} without a password: "
                                  f"{_trim(done.stderr) or 'ssh exited with 255'}")
    if done.returncode == CHECKS_FAILED:
        reasons = [line[len(_TAG):] for line in done.stderr.splitlines() if line.startswith(_TAG)]
        return ProbeResult(False, _trim("; ".join(reasons)) + f" (on {host}, as {who})")
    return ProbeResult(False, f"the probe exited with {done.returncode} on {host}: {_trim(done.stderr)}")


def _stuck_at(stderr: str | bytes | None) -> str:
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    steps = [line[len(_STEP):] for line in (stderr or "").splitlines() if line.startswith(_STEP)]
    if not steps:
        return "stuck before the probe started: SSH connection or login"
    return {"virsh": "stuck in `virsh -c qemu:///system list`",
            "mountpoint": "stuck in `mountpoint` of the datastores"}.get(steps[-1], f"stuck at {steps[-1]}")


def _statvfs_mb(path: str) -> tuple[int, int, int] | None:
    """Sizes of the datastore's filesystem. The datastore's directory is made first when its
    parent exists (a datastore just registered has none yet, and no VM or image ever came to
    create it in the lab); a missing parent (no mount at all) reports nothing."""
    try:
        if os.path.isdir(os.path.dirname(os.path.normpath(path))):
            os.makedirs(path, exist_ok=True)
        st = os.statvfs(path)
    except OSError:
        return None
    mb = 1024 * 1024
    return (st.f_blocks * st.f_frsize // mb, st.f_bavail * st.f_frsize // mb,
            (st.f_blocks - st.f_bfree) * st.f_frsize // mb)


class Monitor(threading.Thread):
    """Probes every host that is not offline, then sizes the datastores; again every
    INTERVAL seconds, or at once when woken (a host added or enabled)."""

    def __init__(self, store, interval: float, ssh_command: list[str], probe_user: str,
                 datastores_path: str, timeout: float) -> None:
        super().__init__(name="monitor", daemon=True)
        self.store = store
        self.interval = interval
        self.ssh_command = ssh_command
        self.probe_user = probe_user
        self.datastores_path = datastores_path
        self.timeout = timeout
        self._wake = threading.Event()
        self._stop = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.cycle()
            except Exception:  # a bug here must not end monitoring for good
                log.exception("monitoring cycle failed")
            self._wake.wait(self.interval)

    def cycle(self) -> None:
        hosts = self.store.hosts_to_probe()
        if hosts:
            with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
                futures = {pool.submit(run_probe, self.ssh_command, name, self.datastores_path,
                                       self.probe_user, self.timeout): (oid, name)
                           for oid, name in hosts}
                for future, (oid, name) in futures.items():
                    result = future.result()
                    log.debug("probe %s: %s", name, "ok" if result.ok else result.reason)
                    self.store.apply_probe(oid, name, result.ok, result.reason, result.facts)
        self._size_datastores()

    def _size_datastores(self) -> None:
        with self.store.lock:
            paths = {oid: self.store.base_path(oid) for oid in self.store.pools["datastore"]}
        figures: dict[int, tuple[int, int, int] | None] = {}
        # a hung FUSE mount blocks statvfs: give up on it rather than on the whole loop
        worker = threading.Thread(target=lambda: figures.update(
            {oid: _statvfs_mb(path) for oid, path in paths.items()}), daemon=True)
        worker.start()
        worker.join(timeout=self.timeout)
        if worker.is_alive():
            log.warning("statvfs of the datastores did not answer within %g s", self.timeout)
            return
        for oid, values in figures.items():
            self.store.set_capacity(oid, values)

"""MooseFS health from `mfscli`.

Debian 12's mfscli (3.0.117) has no JSON output (`-j` is refused as a usage error, seen on
these machines); its plain mode with a field separator is stable and machine-readable:
`mfscli -p -n -s '|' -S<section>` prints one `section title:|field|field…` line per row.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from installer.errors import OnehciError
from installer.i18n import _

SEP = "|"


@dataclass(frozen=True)
class Chunkserver:
    ip: str
    port: int
    version: str
    maintenance: bool
    chunks: int
    used: int
    total: int


@dataclass
class Health:
    master: str
    version: str = ""
    reachable: bool = False
    error: str = ""
    chunkservers: list[Chunkserver] = field(default_factory=list)
    metaloggers: list[str] = field(default_factory=list)
    chunks: dict[str, int] = field(default_factory=dict)  # missing, endangered, undergoal, stable, ...
    total_space: int = 0
    avail_space: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def rows(text: str) -> list[list[str]]:
    """`title:|a|b|c` lines -> [[a, b, c], ...] (lines without the separator are messages)."""
    return [line.split(SEP)[1:] for line in text.splitlines() if SEP in line]


def mfscli(master: str, section: str, *extra: str, timeout: float = 10) -> str:
    binary = shutil.which("mfscli")
    if not binary:
        raise OnehciError(_("{name} is missing: install it with `apt-get install {package}`").format(
            name="mfscli", package="moosefs-cli"))
    proc = subprocess.run([binary, "-p", "-n", "-s", SEP, "-H", master, f"-S{section}", *extra],
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if "master servers not found" in out or proc.returncode != 0:
        raise OnehciError(_("MooseFS master {master} does not answer on port 9421").format(master=master))
    return proc.stdout


def parse_health(master: str, info: str, servers: str, loggers: str, matrix: str) -> Health:
    health = Health(master=master, reachable=True)
    for key, value, *_rest in (r for r in rows(info) if len(r) >= 2):
        if key == "master version":
            health.version = value
        elif key == "total space":
            health.total_space = int(value)
        elif key == "avail space":
            health.avail_space = int(value)
    for row in rows(servers):
        if len(row) >= 10:
            health.chunkservers.append(Chunkserver(ip=row[0], port=int(row[1]), version=row[4],
                                                   maintenance=row[6] != "maintenance_off", chunks=int(row[7]),
                                                   used=int(row[8]), total=int(row[9])))
    health.metaloggers = [row[0] for row in rows(loggers) if row]
    for row in rows(matrix):
        if len(row) >= 2 and row[0].startswith("chunkclass "):
            health.chunks[row[0].removeprefix("chunkclass ").rstrip(":")] = int(row[1])
    return health


def health(master: str, timeout: float = 10) -> Health:
    """Everything `status` needs from the master, in four short queries of TIMEOUT seconds at most."""
    try:
        return parse_health(master, mfscli(master, "IG", timeout=timeout), mfscli(master, "CS", timeout=timeout),
                            mfscli(master, "MB", timeout=timeout),
                            mfscli(master, "IC", "-m", "1", timeout=timeout))  # regular chunks: what goal asks for
    except (OnehciError, subprocess.TimeoutExpired) as exc:
        return Health(master=master, reachable=False, error=str(exc))


def master_time(master: str, timeout: float = 10) -> float:
    """The master's own clock, seconds since the epoch (`mfscli -SIM`: ip, version, state, local time...)."""
    for row in rows(mfscli(master, "IM", timeout=timeout)):
        if len(row) > 3 and row[0] == master:
            try:
                return float(row[3])
            except ValueError:
                break
    raise OnehciError(_("the MooseFS master {master} gave no local time (mfscli -SIM)").format(master=master))


def chunk_count(master: str, timeout: float = 10) -> int:
    """How many chunks the filesystem holds (`mfscli -SIN`)."""
    for row in rows(mfscli(master, "IN", timeout=timeout)):
        if len(row) == 2 and row[0] == "chunks":
            return int(row[1])
    raise OnehciError(_("the MooseFS master {master} gave no chunk count (mfscli -SIN)").format(master=master))


def chunk_loop(master: str, timeout: float = 10) -> tuple[int, int]:
    """(start, end) of the master's last complete chunk loop, on its own clock; (0, 0) before its
    first and while the filesystem holds no chunk (`mfscli -SIL` says "no data"). The chunk matrix
    is recomputed by that loop: what it shows is the state at the loop's start at the earliest."""
    found = {}
    for line in mfscli(master, "IL", timeout=timeout).splitlines():
        parts = [p.strip() for p in line.split(SEP)]
        for key in ("start", "end"):
            if f"{key}:" in parts and "chunk loop" in parts[:parts.index(f"{key}:")]:
                found[key] = int(parts[parts.index(f"{key}:") + 1])
    return found.get("start", 0), found.get("end", 0)

"""OpenNebula's Debian packages for the lab, built on this machine from OpenNebula's published
source (the release tarball in ../shared/vendor), under the names of OpenNebula's own packages.

On a real site OpenNebula comes from OpenNebula's apt repository; these machines cannot reach
it, so the lab builds the same daemon from the same release and serves it from a local
repository (installer/lab/onerepo.py). The roles install it exactly as on a site.

    source tarball --sha256--> extract --patches/*.patch--> scons --install.sh DESTDIR-->
    staged tree --split by path--> opennebula-common, -libs, -tools, opennebula, -node-kvm
    (, -fireedge) --dpkg-deb--> /var/cache/onehci/opennebula/<version>-<key>/

The result is cached by the source's checksum, the patch set and RECIPE: only a change to
one of them builds again. A failed build leaves the cache as it was (work happens in a
`.partial` directory that only a complete build renames).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from installer import state
from installer.errors import OnehciError
from installer.image import file_sha256 as sha256  # the source tarball's checksum
from installer.lab import fireedge as fireedge_build

VERSION = "7.0.2"
SOURCE_NAME = f"opennebula-{VERSION}.tar.gz"
# the release tarball's checksum, pinned here: a tarball that differs is refused before anything
SOURCE_SHA256 = "2a2e1451d5c626d816dc1dc8fb403d866ec3c307bc85850ba8d90fd1c983d00c"
REVISION = "1~onehci1"  # `~`: OpenNebula's own 7.0.2-1 sorts above it and wins an upgrade
RECIPE = 4  # bump when this module changes how the staged tree is split and packaged
STAGE_RECIPE = 1  # bump when it changes how the source is compiled and staged
CACHE = Path(os.environ.get("ONEHCI_OPENNEBULA_CACHE", "/var/cache/onehci/opennebula"))
DATA = Path(__file__).resolve().parent / "opennebula"  # patches/ and debian/ (maintainer scripts)
SCONS_OPTIONS = ("sqlite=yes", "mysql=no", "systemd=yes", "parsers=no", "fireedge=no", "svncterm=no",
                 "context=no")
MAINTAINER = "onehci lab build <root@localhost>"

# Debian package -> why the build needs it
BUILD_DEPENDS = {
    "g++": "the C++ compiler", "scons": "OpenNebula's build tool", "pkg-config": "library flags",
    "libxmlrpc-c++8-dev": "XML-RPC (API)", "libxmlrpc-core-c3-dev": "XML-RPC (API)",
    "libsqlite3-dev": "the SQLite database", "libxml2-dev": "XML", "libssl-dev": "TLS and hashes",
    "zlib1g-dev": "compression", "libcurl4-openssl-dev": "HTTP client", "libsystemd-dev": "sd_notify",
    "dpkg-dev": "dpkg-shlibdeps", "binutils": "strip", "patch": "the source patches",
}

Say = Callable[[str], None]

RUBY = ("ruby", "ruby-nokogiri", "ruby-xmlrpc", "ruby-sqlite3")


@dataclass(frozen=True)
class Package:
    name: str
    summary: str
    description: str
    depends: tuple[str, ...]
    claims: tuple[str, ...]  # staged files, or directories (ending in /), this package takes
    architecture: str = "all"
    shlibs: bool = False  # add dpkg-shlibdeps' dependencies of its ELF files


PACKAGES = (
    Package("opennebula-common", "OpenNebula common files: the oneadmin account and its SSH settings",
            "Creates the oneadmin user and group (9869) with home /var/lib/one, its SSH client settings, "
            "the sudo command aliases and the Ruby load path helper used by frontend and hosts.",
            ("openssh-client", "sudo", "passwd"),
            ("usr/share/one/ssh/", "etc/sudoers.d/opennebula", "usr/lib/tmpfiles.d/opennebula-common.conf",
             "usr/lib/ruby/vendor_ruby/")),
    Package("opennebula-tools", "OpenNebula command-line tools",
            "onehost, onevm, onedatastore and the other command-line clients of the OpenNebula API.",
            (f"opennebula-libs (= {VERSION}-{REVISION})", f"opennebula-common (= {VERSION}-{REVISION})", *RUBY,
             "ruby-activesupport"),  # the clients' --json output
            tuple(f"usr/bin/one{tool}" for tool in (
                "acct", "acl", "backupjob", "cluster", "datastore", "group", "hook", "host", "image", "irb",
                "log", "market", "marketapp", "secgroup", "showback", "template", "user", "vdc", "vm",
                "vmgroup", "vnet", "vntemplate", "vrouter", "zone"))
            + ("usr/lib/one/ruby/cli/", "etc/one/cli/")),
    Package("opennebula-node-kvm", "OpenNebula KVM host: what a hypervisor host needs",
            "Depends on libvirt, QEMU and what OpenNebula's monitoring probes and drivers run on a host; "
            "adds oneadmin to the libvirt and kvm groups; sudo rules for the network drivers.",
            (f"opennebula-common (= {VERSION}-{REVISION})", "libvirt-daemon-system", "libvirt-clients",
             "qemu-system-x86", "qemu-utils", *RUBY, "pciutils", "libxml2-utils", "genisoimage", "rsync",
             "iproute2", "iptables", "ipset", "jq", "bc", "gawk", "uuid-runtime", "cron", "procps", "file"),
            ("etc/sudoers.d/opennebula-node-kvm", "usr/lib/tmpfiles.d/opennebula-node.conf",
             "usr/bin/qemu-kvm-one-gen")),
    Package("opennebula-fireedge", "OpenNebula FireEdge: the web UI",
            "FireEdge, OpenNebula's web interface (Sunstone), served by Node.js on port 2616.",
            (f"opennebula-common (= {VERSION}-{REVISION})", "nodejs (>= 18)", "nodejs (<< 19)", "libzmq5"),
            ("usr/lib/one/fireedge/", "etc/one/fireedge/", "etc/one/fireedge-server.conf", "usr/bin/fireedge-server",
             "lib/systemd/system/opennebula-fireedge.service", "etc/logrotate.d/opennebula-fireedge"),
            architecture="amd64", shlibs=True),  # zeromq's native module
    Package("opennebula-libs", "OpenNebula Ruby libraries",
            "The Ruby bindings of the OpenNebula API and the libraries of its drivers.",
            (f"opennebula-common (= {VERSION}-{REVISION})", *RUBY),
            ("usr/lib/one/ruby/",)),
    Package("opennebula", "OpenNebula: the cloud controller daemon, its scheduler and drivers",
            "oned, the monitoring daemon, the rank scheduler, the drivers and the remote scripts copied to "
            "every host, with their configuration in /etc/one. No service is enabled or started by the "
            "package.",
            (f"opennebula-common (= {VERSION}-{REVISION})", f"opennebula-libs (= {VERSION}-{REVISION})",
             f"opennebula-tools (= {VERSION}-{REVISION})", *RUBY, "ruby-sequel", "ruby-ffi-rzmq", "libzmq5",
             "ruby-treetop", "ruby-parse-cron", "ruby-ipaddress", "openssh-client", "qemu-utils", "genisoimage",
             "sqlite3", "logrotate", "rsync", "file", "curl", "jq", "libxml2-utils", "bc", "gawk", "uuid-runtime"),
            ("usr/bin/oned", "usr/bin/onedb", "usr/bin/one", "usr/lib/one/mads/", "usr/lib/one/sh/",
             "usr/lib/one/ruby/onedb/", "var/lib/one/remotes/", "var/lib/one/vms", "etc/one/", "usr/share/one/",
             "lib/systemd/system/opennebula.service", "lib/systemd/system/opennebula-ssh-agent.service",
             "lib/systemd/system/opennebula-ssh-socks-cleaner.service",
             "lib/systemd/system/opennebula-ssh-socks-cleaner.timer", "etc/logrotate.d/opennebula",
             "etc/sudoers.d/opennebula-server",
             "usr/share/doc/one/"),
            architecture="amd64", shlibs=True),
)

# staged paths no package takes: services onehci does not deploy (gate, flow, the hook manager,
# Prometheus), bundled third-party binaries absent from the tarball, and the datastores, which
# are the MooseFS mount on a node and must never be package content
LEFT_OUT = ("var/lib/one/datastores", "var/lib/alertmanager", "var/lib/prometheus",
            "usr/lib/one/alertmanager", "usr/lib/one/prometheus", "usr/lib/one/node_exporter",
            "usr/lib/one/libvirt_exporter", "usr/lib/one/opennebula_exporter", "usr/lib/one/oneflow",
            "usr/lib/one/onegate", "usr/lib/one/onehem", "usr/lib/one/onecfg", "usr/lib/one/python",
            "etc/one/alertmanager", "etc/one/prometheus", "etc/one/oneflow-server.conf",
            "etc/one/onegate-server.conf", "etc/one/onehem-server.conf", "etc/one/guacd",
            "usr/bin/oneflow", "usr/bin/oneflow-server", "usr/bin/oneflow-template", "usr/bin/onegate-server",
            "usr/bin/onehem-server", "usr/bin/onecfg", "lib/systemd/system/opennebula-alertmanager",
            "lib/systemd/system/opennebula-exporter", "lib/systemd/system/opennebula-libvirt-exporter",
            "lib/systemd/system/opennebula-node-exporter", "lib/systemd/system/opennebula-prometheus",
            "usr/share/one/grafana", "usr/share/one/prometheus", "usr/share/one/onecfg",
            "usr/share/one/install_gems", "usr/share/one/Gemfile", "usr/share/man/", "usr/include/",
            "var/lock/", "var/run/", "var/log/")

# files the packages take from the source tree besides what install.sh stages: systemd units,
# sudo rules, tmpfiles and logrotate settings from share/pkgs, and the Ruby load path helper
# where every Ruby entry point finds it (upstream issue 7608)
EXTRAS = {
    "lib/systemd/system/opennebula.service": ("share/pkgs/services/systemd/opennebula.service", 0o644),
    "lib/systemd/system/opennebula-ssh-agent.service": ("share/pkgs/services/systemd/opennebula-ssh-agent.service", 0o644),
    "lib/systemd/system/opennebula-ssh-socks-cleaner.service":
        ("share/pkgs/services/systemd/opennebula-ssh-socks-cleaner.service", 0o644),
    "lib/systemd/system/opennebula-ssh-socks-cleaner.timer":
        ("share/pkgs/services/systemd/opennebula-ssh-socks-cleaner.timer", 0o644),
    "lib/systemd/system/opennebula-fireedge.service": ("share/pkgs/services/systemd/opennebula-fireedge.service", 0o644),
    "etc/sudoers.d/opennebula": ("share/pkgs/sudoers/debian/opennebula", 0o440),
    "etc/sudoers.d/opennebula-server": ("share/pkgs/sudoers/opennebula-server", 0o440),
    "etc/sudoers.d/opennebula-node-kvm": ("share/pkgs/sudoers/opennebula-node-kvm", 0o440),
    "usr/lib/tmpfiles.d/opennebula-common.conf": ("share/pkgs/tmpfiles/opennebula-common.conf", 0o644),
    "usr/lib/tmpfiles.d/opennebula-node.conf": ("share/pkgs/tmpfiles/opennebula-node.conf", 0o644),
    "etc/logrotate.d/opennebula": ("share/pkgs/logrotate/opennebula", 0o644),
    "etc/logrotate.d/opennebula-fireedge": ("share/pkgs/logrotate/opennebula-fireedge", 0o644),
    "usr/lib/ruby/vendor_ruby/load_opennebula_paths.rb": ("share/misc/load_opennebula_paths.rb", 0o644),
}


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    file: str  # name of the .deb in the build directory
    size: int  # bytes of the .deb
    installed_kib: int


@dataclass
class Build:
    key: str
    directory: Path
    debs: list[Deb]
    cached: bool
    seconds: float = 0.0  # of this build; 0 when it came from the cache
    left_out: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "directory": str(self.directory)}

    def paths(self) -> list[Path]:
        return [self.directory / d.file for d in self.debs]


# --- inputs ----------------------------------------------------------------------------------


SHARED_VENDOR = Path("/work/shared/vendor")  # where the development and CI machines keep third-party sources


def default_source() -> Path:
    """Where the release tarball is: $ONEHCI_OPENNEBULA_SOURCE, else ../shared/vendor next to
    this checkout or the current directory, else the machines' shared vendor directory (the
    project's own tree never holds third-party sources)."""
    if os.environ.get("ONEHCI_OPENNEBULA_SOURCE"):
        return Path(os.environ["ONEHCI_OPENNEBULA_SOURCE"])
    top = Path(__file__).resolve().parents[2]
    candidates = [top.parent / "shared/vendor", Path.cwd().parent / "shared/vendor", SHARED_VENDOR]
    return next((c / SOURCE_NAME for c in candidates if (c / SOURCE_NAME).exists()), candidates[0] / SOURCE_NAME)


def patches() -> list[Path]:
    return sorted((DATA / "patches").glob("*.patch"))


def build_key(source_sha256: str = SOURCE_SHA256, patch_files: list[Path] | None = None, recipe: int = RECIPE,
              fireedge: bool = False) -> str:
    """What the packages are cached by: the source, the patch set, the recipes, the packages'
    definitions (names, dependencies, contents) and maintainer scripts, and whether FireEdge is
    part of the build."""
    digest = hashlib.sha256(f"{source_sha256}\n{recipe}\n{stage_key(fireedge, patch_files)}\n{PACKAGES!r}\n".encode())
    for path in sorted((DATA / "debian").iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def check_source(source: Path) -> None:
    if not source.is_file():
        raise OnehciError(f"OpenNebula's source {source} is missing: the lab builds OpenNebula from it "
                          f"(set ONEHCI_OPENNEBULA_SOURCE to the path of {SOURCE_NAME})")
    found = sha256(source)
    if found != SOURCE_SHA256:
        raise OnehciError(f"{source} has sha256 {found}, not {SOURCE_SHA256} (OpenNebula {VERSION}'s release "
                          "tarball): refusing to build from it; nothing was built or published")


def missing_build_depends(installed: Callable[[str], bool] | None = None) -> list[str]:
    installed = installed or _installed
    return [p for p in BUILD_DEPENDS if not installed(p)]


def _installed(package: str) -> bool:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "installed"


# --- the build ---------------------------------------------------------------------------------


def cached(fireedge: bool = False) -> Build | None:
    """The cached build of the current inputs, if there is one."""
    directory = CACHE / f"{VERSION}-{build_key(fireedge=fireedge)}"
    manifest = directory / "manifest.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    return Build(data["key"], directory, [Deb(**d) for d in data["debs"]], cached=True,
                 left_out=data.get("left_out", []))


def ensure(source: Path | None = None, *, fireedge: bool = False, say: Say = lambda _m: None) -> Build:
    """The packages of the current inputs: from the cache, or built now (a few minutes)."""
    source = Path(source) if source else default_source()
    check_source(source)
    found = cached(fireedge)
    if found:
        return found
    missing = missing_build_depends()
    if missing:
        raise OnehciError(f"missing build dependencies of OpenNebula: {', '.join(missing)} "
                          f"(install with `apt-get install {' '.join(missing)}`, or run scripts/setup.sh); "
                          "nothing was built or published")
    CACHE.mkdir(parents=True, exist_ok=True)
    with state.locked(CACHE, "build-lock"):  # two `lab up` at once build once
        found = cached(fireedge)
        return found or _build(source, fireedge, say)


def _build(source: Path, fireedge: bool, say: Say) -> Build:
    key = build_key(fireedge=fireedge)
    final = CACHE / f"{VERSION}-{key}"
    started = time.monotonic()
    stage = _staged(source, fireedge, say)
    work = final.with_name(final.name + ".partial")
    if work.exists():  # an interrupted build: start over
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "package.log"
    say("  splitting the staged tree into packages")
    debs_dir = work / "debs"
    debs_dir.mkdir()
    roots, left_out = split(stage, work / "pkg", PACKAGES)
    if not fireedge:  # its configuration is staged anyway; without the web UI it goes nowhere
        roots.pop("opennebula-fireedge", None)
        left_out.append("opennebula-fireedge (FireEdge not built)")
    debs = [_deb(package, roots[package.name], debs_dir, log) for package in PACKAGES if package.name in roots]
    seconds = time.monotonic() - started
    manifest = {"key": key, "version": f"{VERSION}-{REVISION}", "source": str(source), "source_sha256": SOURCE_SHA256,
                "patches": [p.name for p in patches()], "recipe": RECIPE, "fireedge": fireedge, "stage": str(stage),
                "seconds": round(seconds, 1), "debs": [asdict(d) for d in debs], "left_out": left_out}
    (debs_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.copyfile(log, debs_dir / "package.log")
    debs_dir.rename(final)  # only a complete build ever has the cache's name
    shutil.rmtree(work)
    say(f"OpenNebula packages ready in {seconds:.0f} s: {final}")
    return Build(key, final, debs, cached=False, seconds=seconds, left_out=left_out)


def stage_key(fireedge: bool = False, patch_files: list[Path] | None = None) -> str:
    """What the compiled, staged tree depends on: the source, the patches, the build options."""
    digest = hashlib.sha256(f"{SOURCE_SHA256}\n{STAGE_RECIPE}\n{SCONS_OPTIONS}\nfireedge={fireedge}\n".encode())
    for path in patches() if patch_files is None else patch_files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _staged(source: Path, fireedge: bool, say: Say) -> Path:
    """OpenNebula compiled and installed into a staging tree (cached apart from the packages,
    so that a change to the packaging alone repackages in seconds instead of compiling again)."""
    final = CACHE / f"stage-{VERSION}-{stage_key(fireedge)}"
    if (final / "usr/bin/oned").exists():
        say(f"  compiled tree from the cache: {final}")
        return final
    work = final.with_name(final.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "build.log"
    say(f"building OpenNebula {VERSION} from {source} (once per source and patch set: a few minutes; "
        f"log: {log})")
    say("  unpacking the source")
    tree = _unpack(source, work / "src")
    for patch in patches():
        say(f"  applying {patch.name}")
        _run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], tree, log, f"the patch {patch.name}")
    say(f"  compiling (scons -j{os.cpu_count() or 1})")
    _run(["scons", f"-j{os.cpu_count() or 1}", *SCONS_OPTIONS], tree, log, "the compilation (scons)")
    if fireedge:
        say("  building FireEdge (npm ci, then webpack: about 6 minutes)")
        fireedge_build.build(tree / "src/fireedge", log, _run, installed=_installed)
    say("  staging the installation (install.sh)")
    stage = work / "stage"
    # its "cannot stat" lines are optional parts the tarball does not hold (man pages, bundled tools)
    _run(["./install.sh", "-u", "root", "-g", "root"], tree, log, "install.sh", env={"DESTDIR": str(stage)})
    if not (stage / "usr/bin/oned").exists():
        raise OnehciError(f"install.sh staged no oned; see {log}")
    if fireedge:
        kept = fireedge_build.prune(stage / "usr/lib/one/fireedge")
        say(f"  FireEdge: the {len(kept)} npm packages its server loads kept, build tools and source maps left out")
    for target, (origin, mode) in EXTRAS.items():
        if "fireedge" in target and not fireedge:
            continue
        dest = stage / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / origin, dest)
        dest.chmod(mode)
    _strip(stage, log)
    shutil.move(log, stage / ".build.log")
    stage.rename(final)  # only a complete tree ever has the cache's name
    shutil.rmtree(work)
    return final


def _unpack(source: Path, into: Path) -> Path:
    into.mkdir()
    with tarfile.open(source) as tar:
        tar.extractall(into, filter="data")  # no absolute paths, links out or device files
    tops = list(into.iterdir())
    if len(tops) != 1 or not (tops[0] / "SConstruct").exists():
        raise OnehciError(f"the source tarball does not hold one OpenNebula tree with a SConstruct: {tops}")
    return tops[0]


def _run(argv: list[str], cwd: Path, log: Path, what: str, env: dict | None = None) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "LANG": "C.UTF-8", **(env or {})})
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        # the line that says what broke, rather than a tool's closing "see the log" line
        errors = [ln for ln in lines if re.search(r"(fatal )?error:|ERR!|No such file", ln)]
        shown = (errors or lines or ["no output"])[-1].strip()
        raise OnehciError(f"{what} failed (exit {proc.returncode}): {shown}; full log: {log}; nothing was "
                          "published and an earlier build is kept")


def _elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _strip(stage: Path, log: Path) -> None:
    """Debug symbols out of the binaries (oned is 60 MB with them, a few without)."""
    elves = [p for p in stage.rglob("*") if p.is_file() and not p.is_symlink() and _elf(p)]
    if elves:
        _run(["strip", "--strip-unneeded", *map(str, elves)], stage, log, "strip")


def _covers(claim: str, relative: str) -> bool:
    return relative == claim.rstrip("/") or relative.startswith(claim.rstrip("/") + "/")


def owner(relative: str, packages) -> str | None:
    """The package that takes a staged path: the most precise claim wins (opennebula's
    usr/lib/one/ruby/onedb/ over opennebula-libs' usr/lib/one/ruby/); None: left out."""
    if any(_covers(p, relative) for p in LEFT_OUT):
        return None
    matches = [(len(claim), package.name) for package in packages for claim in package.claims if _covers(claim, relative)]
    return max(matches)[1] if matches else None


def split(stage: Path, into: Path, packages) -> tuple[dict[str, Path], list[str]]:
    """Copy every staged file into the root of the package that takes it; returns the roots and
    the top directories of what no package took."""
    roots: dict[str, Path] = {}
    left: set[str] = set()
    for path in sorted(stage.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(stage).as_posix()
        name = owner(relative, packages)
        if name is None:
            left.add("/".join(relative.split("/")[:4]))
            continue
        root = roots.setdefault(name, into / name)
        dest = root / relative
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            dest.symlink_to(os.readlink(path))
        else:
            shutil.copy2(path, dest)
    return roots, sorted(left)


def _depends(package: Package, root: Path, log: Path) -> list[str]:
    depends = list(package.depends)
    if package.shlibs:
        elves = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and _elf(p)]
        scratch = root.parent / f".shlibs-{package.name}"
        (scratch / "debian").mkdir(parents=True, exist_ok=True)
        (scratch / "debian/control").write_text(f"Source: opennebula\n\nPackage: {package.name}\nArchitecture: any\n")
        proc = subprocess.run(["dpkg-shlibdeps", "-O", *(f"-e{p}" for p in elves)], cwd=scratch,
                              capture_output=True, text=True)
        with open(log, "a") as out:
            out.write(proc.stderr)
        if proc.returncode != 0:
            raise OnehciError(f"dpkg-shlibdeps failed for {package.name}: {proc.stderr.strip().splitlines()[-1:]}")
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("shlibs:Depends=")), "")
        depends += [d.strip() for d in line.partition("=")[2].split(",") if d.strip()]
        shutil.rmtree(scratch)
    return depends


def _deb(package: Package, root: Path, out: Path, log: Path) -> Deb:
    version = f"{VERSION}-{REVISION}"
    control_dir = root / "DEBIAN"
    control_dir.mkdir()
    files = [p for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and control_dir not in p.parents]
    installed_kib = max(1, sum(p.lstat().st_size for p in files) // 1024)
    description = "\n".join(f" {line}" for line in textwrap.wrap(package.description, 78))
    (control_dir / "control").write_text(
        f"Package: {package.name}\nVersion: {version}\nArchitecture: {package.architecture}\n"
        f"Maintainer: {MAINTAINER}\nInstalled-Size: {installed_kib}\n"
        f"Depends: {', '.join(_depends(package, root, log))}\nSection: admin\nPriority: optional\n"
        "Homepage: https://opennebula.io\n"
        f"Description: {package.summary}\n{description}\n .\n Built by onehci from OpenNebula {VERSION}'s "
        "release source for its rehearsal lab.\n")
    # /etc, and the drivers' settings under remotes/etc that a site edits (an upgrade keeps them)
    conffiles = sorted("/" + p.relative_to(root).as_posix() for p in files if not p.is_symlink()
                       and p.relative_to(root).as_posix().startswith(("etc/", "var/lib/one/remotes/etc/")))
    if conffiles:
        (control_dir / "conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    for script in ("preinst", "postinst", "prerm", "postrm"):
        origin = DATA / "debian" / f"{package.name}.{script}"
        if origin.exists():
            shutil.copyfile(origin, control_dir / script)
            (control_dir / script).chmod(0o755)
    name = f"{package.name}_{version}_{package.architecture}.deb"
    with open(log, "a") as f:
        proc = subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z6", "--build", str(root), str(out / name)],
                              stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise OnehciError(f"dpkg-deb could not build {package.name}; see {log}")
    return Deb(package.name, version, name, (out / name).stat().st_size, installed_kib)


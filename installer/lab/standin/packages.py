"""Stand-in .deb packages with the names of OpenNebula 7.0's, and a flat apt repository
holding them, for labs that cannot reach OpenNebula's repository (docs/standin.md).

    from installer.lab.standin.packages import build_repo, apt_source
    repo = build_repo(Path("/var/cache/onehci/standin-repo"))   # rebuilt only when inputs change
    apt_source("http://10.71.0.1:8080/standin")                 # the sources.list line

Built with dpkg-deb and dpkg-scanpackages (Debian's dpkg-dev), offline. Every package
says "onehci stand-in" in its version and description.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ONE_VERSION = "7.0.0"
VERSION = f"{ONE_VERSION}-1~onehci.standin"  # '~': sorts before OpenNebula's own 7.0.0-1
_HERE = Path(__file__).resolve().parent
LIBDIR = "usr/lib/one/onehci-standin"
DAEMON_MODULES = ("oned.py", "onestore.py", "onerules.py", "onedocs.py", "onetemplate.py",
                  "onemonitor.py")
_STAMP = ".onehci-standin-inputs"
_BUILDER = 1  # bump when the way packages are laid out changes


@dataclass
class Package:
    name: str
    summary: str  # after "onehci stand-in: "
    body: str  # long description
    depends: list[str] = field(default_factory=list)
    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path -> content, mode
    conffiles: list[str] = field(default_factory=list)
    postinst: str = ""
    prerm: str = ""
    version: str = VERSION  # another only for publish(): a newer build to rehearse an upgrade

    def control(self) -> str:
        size_kib = sum(len(content) for content, _ in self.files.values()) // 1024 + 1
        body = "\n".join(" " + (line or ".") for line in self.body.strip().splitlines())
        lines = [f"Package: {self.name}", f"Version: {self.version}", "Architecture: all",
                 "Maintainer: onehci <onehci@localhost>", f"Installed-Size: {size_kib}",
                 "Section: admin", "Priority: optional"]
        if self.depends:
            lines.append("Depends: " + ", ".join(self.depends))
        lines.append(f"Description: onehci stand-in: {self.summary}\n{body}")
        return "\n".join(lines) + "\n"


# --- what the packages hold ----------------------------------------------------------

_NOT_OPENNEBULA = """\
This package is NOT OpenNebula. It is a stand-in built by onehci for its rehearsal
lab, where OpenNebula's own repository cannot be reached. It has the name of the
OpenNebula 7.0 package so that onehci's Ansible roles install it unchanged.
See onehci's docs/standin.md."""

# the same lines in every package that needs oneadmin, as opennebula-common makes it
_ONEADMIN = """\
getent group oneadmin >/dev/null || groupadd --gid 9869 oneadmin
getent passwd oneadmin >/dev/null || useradd --uid 9869 --gid oneadmin \\
    --home-dir /var/lib/one --no-create-home --shell /bin/bash \\
    --comment "OpenNebula (onehci stand-in)" oneadmin
[ -d /var/lib/one ] || mkdir -m 0755 /var/lib/one
chown oneadmin:oneadmin /var/lib/one
install -d -o oneadmin -g oneadmin -m 0700 /var/lib/one/.one
install -d -o oneadmin -g oneadmin -m 0750 /var/log/one
"""

# a password in one_auth only when there is none: the roles may have written theirs
_ONE_AUTH = """\
if [ ! -e /var/lib/one/.one/one_auth ]; then
    (umask 077; printf 'oneadmin:%s\\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')" \\
        > /var/lib/one/.one/one_auth)
    chown oneadmin:oneadmin /var/lib/one/.one/one_auth
    chmod 0600 /var/lib/one/.one/one_auth
fi
"""


def _postinst(body: str, unit: str = "") -> str:
    reload = ""
    if unit:
        # like OpenNebula's packages: units are installed, not enabled nor started;
        # an upgrade restarts a running service so that it runs the new code
        reload = (f'if [ -d /run/systemd/system ]; then\n    systemctl daemon-reload || true\n'
                  f'    [ -z "$2" ] || systemctl try-restart {unit} || true\nfi\n')
    return f'#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n{body}{reload}fi\nexit 0\n'


def _prerm(unit: str) -> str:
    return (f'#!/bin/sh\nset -e\nif [ "$1" = remove ] && [ -d /run/systemd/system ]; then\n'
            f'    systemctl stop {unit} || true\nfi\nexit 0\n')


def _unit(description: str, exec_start: str) -> bytes:
    return f"""[Unit]
Description={description} (onehci stand-in, not OpenNebula)
After=network.target
# keep retrying: the management address may come up after the service
StartLimitIntervalSec=0

[Service]
Type=simple
User=oneadmin
Group=oneadmin
ExecStart={exec_start}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
""".encode()


def _text(text: str) -> tuple[bytes, int]:
    return text.encode(), 0o644


def _source(name: str, mode: int = 0o644) -> tuple[bytes, int]:
    return (_HERE / name).read_bytes(), mode


def _doc(name: str, extra: str = "") -> dict[str, tuple[bytes, int]]:
    return {f"usr/share/doc/{name}/README.standin": _text(_NOT_OPENNEBULA + "\n" + extra)}


def _web_service(name: str, service: str, config: str, port: int, conf_text: str) -> Package:
    exec_start = (f"/usr/bin/python3 /{LIBDIR}/httpstub.py --service {service} "
                  f"--config /etc/one/{config} --port {port}")
    return Package(
        name=name, summary=f"{service} web service placeholder on port {port}",
        body=f"Answers HTTP on {service}'s port with a page saying it is a stand-in.\n\n"
             + _NOT_OPENNEBULA,
        depends=[f"opennebula-common (= {VERSION})", "python3"],
        files={f"lib/systemd/system/{name}.service": (_unit(f"OpenNebula {service}", exec_start), 0o644),
               f"etc/one/{config}": _text(conf_text), **_doc(name)},
        conffiles=[f"/etc/one/{config}"],
        postinst=_postinst(_ONEADMIN, f"{name}.service"), prerm=_prerm(f"{name}.service"))


_ONED_CONF = """\
# onehci stand-in for /etc/one/oned.conf. The stand-in daemon reads only these keys
# (OpenNebula's names and defaults); everything else in this file is ignored.
LISTEN_ADDRESS = "0.0.0.0"
PORT = 2633
# DATASTORE_LOCATION = /var/lib/one//datastores
"""


def packages() -> list[Package]:
    daemon_files = {f"{LIBDIR}/{name}": _source(name, 0o755 if name == "oned.py" else 0o644)
                    for name in DAEMON_MODULES}
    wrapper = f'#!/bin/sh\n# onehci stand-in for oned\nexec /usr/bin/python3 /{LIBDIR}/oned.py "$@"\n'
    return [
        Package(
            name="opennebula-common", summary="the oneadmin account (9869:9869) and shared files",
            body="Creates the oneadmin user and group with OpenNebula's IDs, home /var/lib/one.\n\n"
                 + _NOT_OPENNEBULA,
            depends=["passwd", "coreutils"],
            files={f"{LIBDIR}/httpstub.py": _source("httpstub.py", 0o755), **_doc("opennebula-common")},
            postinst=_postinst(_ONEADMIN)),
        Package(
            name="opennebula", summary="OpenNebula daemon (oned) serving the XML-RPC subset onehci uses",
            body="Serves on port 2633 the part of OpenNebula 7.0's XML-RPC API that onehci calls,\n"
                 "keeps its objects in /var/lib/one/standin-state.json, and marks a host\n"
                 "monitored only when oneadmin can SSH to it, run virsh there and see the\n"
                 "datastores mount.\n\n" + _NOT_OPENNEBULA,
            depends=[f"opennebula-common (= {VERSION})", f"opennebula-tools (= {VERSION})",
                     "python3 (>= 3.11)", "openssh-client"],
            files={**daemon_files,
                   "usr/bin/oned": (wrapper.encode(), 0o755),
                   "lib/systemd/system/opennebula.service": (_unit(
                       "OpenNebula Cloud Controller Daemon",
                       f"/usr/bin/python3 /{LIBDIR}/oned.py --config /etc/one/oned.conf"), 0o644),
                   "etc/one/oned.conf": _text(_ONED_CONF), **_doc("opennebula")},
            conffiles=["/etc/one/oned.conf"],
            postinst=_postinst(_ONEADMIN + _ONE_AUTH, "opennebula.service"),
            prerm=_prerm("opennebula.service")),
        Package(
            name="opennebula-tools", summary="empty placeholder for the command-line tools",
            body="Holds no commands: onehci talks to the API with pyone.\n\n" + _NOT_OPENNEBULA,
            depends=[f"opennebula-common (= {VERSION})"], files=_doc("opennebula-tools")),
        _web_service("opennebula-fireedge", "FireEdge", "fireedge-server.conf", 2616,
                     "# onehci stand-in: only host and port are read\nhost: '0.0.0.0'\nport: 2616\n"),
        _web_service("opennebula-gate", "OneGate", "onegate-server.conf", 5030,
                     "# onehci stand-in: only :host: and :port: are read\n:host: 127.0.0.1\n:port: 5030\n"),
        _web_service("opennebula-flow", "OneFlow", "oneflow-server.conf", 2474,
                     "# onehci stand-in: only :host: and :port: are read\n:host: 127.0.0.1\n:port: 2474\n"),
        Package(
            name="opennebula-node-kvm", summary="KVM host: Debian's libvirt and QEMU, and oneadmin",
            body="Pulls in libvirt and QEMU from Debian and puts oneadmin in the libvirt and kvm\n"
                 "groups, so that the frontend's oneadmin can run virsh here.\n\n" + _NOT_OPENNEBULA,
            depends=[f"opennebula-common (= {VERSION})", "libvirt-daemon-system", "libvirt-clients",
                     "qemu-system-x86"],
            files=_doc("opennebula-node-kvm"),
            postinst=_postinst(_ONEADMIN + "for group in libvirt kvm; do\n"
                               "    if getent group $group >/dev/null; then usermod -a -G $group oneadmin; fi\n"
                               "done\n")),
    ]


def daemon_files() -> list[Path]:
    """The files the stand-in daemon runs from, as shipped (for tests and for a lab that
    runs the daemon without installing the package)."""
    return [_HERE / name for name in DAEMON_MODULES]


# --- building ------------------------------------------------------------------------


def _inputs_digest(pkgs: list[Package]) -> str:
    digest = hashlib.sha256(f"builder {_BUILDER}\n".encode())
    for pkg in pkgs:
        digest.update(json.dumps([pkg.control(), pkg.conffiles, pkg.postinst, pkg.prerm]).encode())
        for path, (content, mode) in sorted(pkg.files.items()):
            digest.update(f"{path} {mode:o} {len(content)}\n".encode() + content)
    return digest.hexdigest()


def deb_name(pkg: Package) -> str:
    return f"{pkg.name}_{pkg.version}_all.deb"


def _build_deb(pkg: Package, out: Path, work: Path) -> None:
    root = work / pkg.name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(pkg.control())
    if pkg.conffiles:
        (root / "DEBIAN/conffiles").write_text("\n".join(pkg.conffiles) + "\n")
    for script, text in (("postinst", pkg.postinst), ("prerm", pkg.prerm)):
        if text:
            (root / "DEBIAN" / script).write_text(text)
            (root / "DEBIAN" / script).chmod(0o755)
    for rel, (content, mode) in pkg.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
                   check=True, capture_output=True, text=True)


def _release(dest: Path) -> str:
    lines = ["Origin: onehci", "Label: onehci stand-in for OpenNebula " + ONE_VERSION,
             "Suite: standin", "Codename: standin",
             "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime()),
             "Description: onehci stand-in packages (not OpenNebula) for rehearsal labs"]
    for field_name, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        lines.append(f"{field_name}:")
        for name in ("Packages", "Packages.gz"):
            data = (dest / name).read_bytes()
            lines.append(f" {hashlib.new(algo, data).hexdigest()} {len(data)} {name}")
    return "\n".join(lines) + "\n"


def build_repo(dest: Path) -> Path:
    """Build the stand-in packages and a flat apt repository (Packages, Packages.gz,
    Release) in DEST, unless DEST already holds a build of the same inputs. Returns DEST."""
    pkgs = packages()
    digest = _inputs_digest(pkgs)
    wanted = [deb_name(pkg) for pkg in pkgs] + ["Packages", "Packages.gz", "Release"]
    stamp = dest / _STAMP
    if stamp.exists() and stamp.read_text().strip() == digest and all((dest / n).exists() for n in wanted):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    names = {pkg.name for pkg in pkgs}
    for old in dest.glob("*.deb"):  # earlier builds of ours, whatever their version
        if old.name.split("_", 1)[0] in names:
            old.unlink()
    stamp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="onehci-standin-") as work:
        for pkg in pkgs:
            _build_deb(pkg, dest / deb_name(pkg), Path(work))
    _index(dest)
    stamp.write_text(digest + "\n")
    return dest


def _index(dest: Path) -> None:
    """Packages, Packages.gz and Release for every .deb in DEST (every version of a package)."""
    scan = subprocess.run(["dpkg-scanpackages", "--multiversion", ".", "/dev/null"], cwd=dest,
                          check=True, capture_output=True, text=True)
    (dest / "Packages").write_text(scan.stdout)
    with open(dest / "Packages.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(scan.stdout.encode())
    (dest / "Release").write_text(_release(dest))


def publish(dest: Path, names: list[str], version: str) -> list[Path]:
    """Add to the repository in DEST (made by build_repo) the packages NAMES built again under
    VERSION, beside the versions already there, and index them all: a newer version published
    in the lab's repository, for rehearsing `onehci upgrade`. The stand-in's dependencies pin
    opennebula-common to its own version, so publish packages that nothing else pins
    (opennebula-node-kvm, say) or publish them together. Returns the new .deb files."""
    found = {pkg.name: pkg for pkg in packages()}
    unknown = sorted(set(names) - set(found))
    if unknown:
        raise ValueError(f"no stand-in package named {', '.join(unknown)}")
    if not (dest / "Packages").exists():
        raise ValueError(f"{dest} holds no repository: build it with build_repo first")
    made = []
    with tempfile.TemporaryDirectory(prefix="onehci-standin-") as work:
        for name in names:
            pkg = dataclasses.replace(found[name], version=version)
            _build_deb(pkg, dest / deb_name(pkg), Path(work))
            made.append(dest / deb_name(pkg))
    _index(dest)
    return made


def apt_source(uri: str) -> str:
    """The sources.list line for the repository served at URI (http://... or file:/...);
    the repository is unsigned, hence trusted=yes."""
    return f"deb [trusted=yes] {uri} ./"


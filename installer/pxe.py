"""`onehci pxe build`: the boot tree for a plan, from the templates in pxe/.

    DIR/dnsmasq.conf                  DHCP (own or proxy) + TFTP, site MACs only
    DIR/tftp/...                      Debian's netboot files, plus:
    DIR/tftp/pxelinux.cfg/default     BIOS: local boot for anything without an entry
    DIR/tftp/pxelinux.cfg/01-<mac>    BIOS: install or local boot, per node
    DIR/tftp/grubx64.efi              UEFI: the signed shim fetches GRUB from the TFTP root
    DIR/tftp/debian-installer/amd64/grub/grub.cfg   UEFI: per-node entries chosen by MAC
    DIR/http/preseed/<host>.cfg       one preseed per node
    DIR/http/onehci/*.sh              disk selection and install-complete scripts for d-i
    install: image (the default) adds the node image and its installer environment (installer/image.py):
    DIR/tftp/onehci/vmlinuz, installer.initrd   the installer environment's kernel and initramfs
    DIR/http/image/root.tar.zst       the node image, the same bytes for every node
    DIR/http/install/<host>.conf      one node's install settings (served like its preseed)

Rendering is pure (files in memory); writing touches only files whose bytes change, so
building twice changes nothing and `--diff` can show what a build would do.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import os
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from installer import node_packages
from installer.errors import CONTROL, OnehciError, printable
from installer.i18n import _
from installer.resources import data_dir

DEFAULT_NETBOOT = Path("/usr/lib/debian-installer/images/12/amd64/text")
NETBOOT_PACKAGE = "debian-installer-12-netboot-amd64"
# Files of the netboot tree that onehci replaces with its own.
_REPLACED = {"pxelinux.cfg", "debian-installer/amd64/pxelinux.cfg", "debian-installer/amd64/grub/grub.cfg"}
# Directories whose files onehci manages: anything there that a build does not produce is removed.
_MANAGED_DIRS = ("tftp/pxelinux.cfg", "http/preseed", "http/onehci", "http/install", "http/image", "tftp/onehci")
# the chunkserver role's filesystem label: an image install never writes to a disk carrying it
CHUNK_LABEL = "onehci-mfs"


@dataclass(frozen=True)
class CopyOf:
    """A file taken unchanged from the netboot tree."""

    source: Path


def _country(locale: str) -> str:
    return locale.split("_", 1)[1][:2] if "_" in locale else "US"


def kernel_cmdline(site, node, base_url: str) -> str:
    """What the installer needs before it can fetch its preseed: a static address from the
    plan (so it works behind proxy DHCP too), where the preseed is, where to send its log."""
    mgmt = site.networks.management
    boot = site.bootstrap
    parts = [
        "auto=true", "priority=critical", f"url={base_url}/preseed/{node.hostname}.cfg",
        "interface=auto", "netcfg/disable_autoconfig=true", f"netcfg/get_ipaddress={node.ip}",
        f"netcfg/get_netmask={mgmt.cidr.netmask}", f"netcfg/get_gateway={mgmt.gateway}",
        f"netcfg/get_nameservers={mgmt.dns[0]}", "netcfg/confirm_static=true",
        f"hostname={node.hostname}", f"domain={site.cluster.domain}",
        "language=en", f"country={_country(site.cluster.locale)}", "locale=en_US.UTF-8",
        f"keymap={site.cluster.keyboard}",
        f"log_host={boot.address}", f"log_port={boot.syslog_port}",
    ]
    console = [f"console={boot.console}"] if boot.console else []
    # options after '---' are also given to the installed system's kernel; on a serial console
    # the kernel's own messages are wanted (they show, for one, whether Secure Boot is on)
    return " ".join(parts + console + ["---"] + (console or ["quiet"]))


def image_cmdline(site, node, base_url: str) -> str:
    """The installer environment's command line (installenv/scripts/onehci): the static address
    for initramfs-tools (ip=, on the card with the node's MAC), where its settings and its log go."""
    mgmt = site.networks.management
    boot = site.bootstrap
    parts = [
        "boot=onehci", f"ip={node.ip}::{mgmt.gateway}:{mgmt.cidr.netmask}:{node.hostname}::off",
        "BOOTIF=01-" + node.mac.replace(":", "-"), f"onehci.config={base_url}/install/{node.hostname}.conf",
        f"onehci.log={boot.address}:{boot.syslog_port}", "panic=0",
    ]
    return " ".join(parts + ([f"console={boot.console}"] if boot.console else ["quiet"]))


def shell_quote(value) -> str:
    """VALUE as one single-quoted shell word, whatever it holds (the site's values are checked
    already: this is the second line of defence)."""
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


def _one_line(value):
    """Jinja's finalize: nothing rendered into a boot file (preseed, GRUB, pxelinux, dnsmasq,
    shell) may split a line or carry a terminal escape."""
    found = CONTROL.search(value) if isinstance(value, str) else None
    if found:
        around = printable(value[max(0, found.start() - 40):found.end() + 20])
        raise OnehciError(_("'...{text}...' would break a line of the boot files (it holds a control "
                            "character); nothing was written").format(text=around))
    return value


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("pxe"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_one_line,
    )
    env.filters["shell_quote"] = shell_quote
    return env


def netboot_files(netboot: Path) -> dict[str, CopyOf]:
    """Relative path -> source for every netboot file onehci serves unchanged."""
    if not (netboot / "pxelinux.0").exists() or not (netboot / "debian-installer/amd64/linux").exists():
        raise OnehciError(_("no Debian netboot tree at {netboot}: install it with "
                            "`apt-get install {package}` or give --netboot PATH").format(
                                netboot=netboot, package=NETBOOT_PACKAGE))
    files: dict[str, CopyOf] = {}
    root = netboot.resolve()
    for path in sorted(netboot.rglob("*")):
        rel = path.relative_to(netboot).as_posix()
        if any(rel == r or rel.startswith(r + "/") for r in _REPLACED) or path.is_dir():
            continue
        source = path.resolve()
        if root not in source.parents:
            raise OnehciError(_("{path} leads out of the netboot tree {root} (to {target}): nothing was written; "
                                "give Debian's netboot tree as it is packaged").format(
                                    path=printable(str(path)), root=root, target=printable(str(source))))
        if not source.stat().st_mode & 0o004:
            raise OnehciError(_("{path} is not readable by everyone, as every file of a netboot tree is (served "
                                "to the whole LAN over TFTP): nothing was written").format(path=printable(str(path))))
        files[f"tftp/{rel}"] = CopyOf(source)
    # The signed shim asks for grubx64.efi at the TFTP root, not next to itself.
    files["tftp/grubx64.efi"] = CopyOf((netboot / "debian-installer/amd64/grubx64.efi").resolve())
    files["tftp/bootnetx64.efi"] = CopyOf((netboot / "debian-installer/amd64/bootnetx64.efi").resolve())
    return files


def render(site, plan, boots: dict, tokens: dict[str, str], out: Path, netboot: Path,
           image=None) -> dict[str, bytes | CopyOf]:
    """Every file of the boot tree, in memory. IMAGE: the node image (installer.image.Image) when the
    site installs from one."""
    env = _environment()
    boot = site.bootstrap
    base_url = f"http://{boot.address}:{boot.http_port}"
    mirror = urllib.parse.urlsplit(site.bootstrap.mirror)
    mgmt = site.networks.management
    from_image = site.bootstrap.install == "image"
    make_cmdline = image_cmdline if from_image else kernel_cmdline
    cmdline = {n.hostname: make_cmdline(site, n, base_url) for n in plan.nodes}
    console_unit, console_speed = 0, 115200
    if boot.console:
        name, _sep, speed = boot.console.partition(",")
        console_unit = int("".join(c for c in name if c.isdigit()) or 0)
        console_speed = int("".join(c for c in speed if c.isdigit())[:6] or 115200) if speed else 115200
    kernel, initrd = ("onehci/vmlinuz", "onehci/installer.initrd") if from_image else \
        ("debian-installer/amd64/linux", "debian-installer/amd64/initrd.gz")
    common = dict(site=site, plan=plan, nodes=plan.nodes, boots=boots, cmdline=cmdline, kernel=kernel, initrd=initrd,
                  installs="Debian 12 from the site's image" if from_image else "Debian 12")

    files: dict[str, bytes | CopyOf] = dict(netboot_files(netboot))
    if from_image:
        files["tftp/onehci/vmlinuz"] = CopyOf(image.file("vmlinuz"))
        files["tftp/onehci/installer.initrd"] = CopyOf(image.file("installer.initrd"))
        files["http/image/root.tar.zst"] = CopyOf(image.file("root.tar.zst"))

    def put(rel: str, template: str, **extra) -> None:
        files[rel] = env.get_template(template).render(**common, **extra).encode()

    put("dnsmasq.conf", "dnsmasq.conf.j2", iface=boot.interface, tftp_root=str((out / "tftp").resolve()),
        mode=mgmt.dhcp, network=mgmt.cidr, gateway=mgmt.gateway, dns=[str(d) for d in mgmt.dns],
        domain=site.cluster.domain, server=str(boot.address))
    put("tftp/pxelinux.cfg/default", "tftp/pxelinux.cfg/default.j2")
    put("tftp/debian-installer/amd64/grub/grub.cfg", "tftp/debian-installer/amd64/grub/grub.cfg.j2",
        console=boot.console, console_unit=console_unit, console_speed=console_speed)
    if not from_image:  # the Debian installer's scripts
        put("http/onehci/select-disk.sh", "http/onehci/select-disk.sh.j2")
        put("http/onehci/finish.sh", "http/onehci/finish.sh.j2", base_url=base_url)
    for node, model in zip(plan.nodes, site.nodes):
        put(f"tftp/pxelinux.cfg/01-{node.mac.replace(':', '-')}", "tftp/pxelinux.cfg/01-MAC.j2",
            node=node, boot=boots[node.hostname])
        disk = model.os_disk
        if not from_image:
            put(f"http/preseed/{node.hostname}.cfg", "http/preseed/HOST.cfg.j2", node=model_with_ip(model, node),
                token=tokens[node.hostname], base_url=base_url, country=_country(site.cluster.locale),
                netmask=mgmt.cidr.netmask, gateway=mgmt.gateway, dns=[str(d) for d in mgmt.dns],
                mirror={"scheme": mirror.scheme, "host": mirror.netloc, "path": mirror.path or "/"},
                proxy=f"http://{boot.address}:3142/" if boot.apt_proxy else "",
                disk_kind="serial" if disk.serial else "by-id", disk_value=disk.serial or disk.by_id,
                packages=node_packages.for_node(model))
        else:
            put(f"http/install/{node.hostname}.conf", "http/install/HOST.conf.j2", node=model_with_ip(model, node),
                address=f"{node.ip}/{mgmt.cidr.prefixlen}", gateway=mgmt.gateway, dns=[str(d) for d in mgmt.dns],
                disk_kind="serial" if disk.serial else "by-id", disk_value=disk.serial or disk.by_id,
                chunk_label=CHUNK_LABEL, image=image.info, image_url=f"{base_url}/image/root.tar.zst",
                needed_mb=needed_mb(image.info), console_unit=console_unit, console_speed=console_speed,
                callback_url=f"{base_url}/installed/{node.hostname}?token={tokens[node.hostname]}")
    return files


def needed_mb(info: dict) -> int:
    """The smallest OS disk an image install takes: the system, its EFI partition, and 2 GiB to
    grow (logs, packages the roles add)."""
    return info["unpacked_bytes"] // (1 << 20) + 512 + 2048


def model_with_ip(model, planned):
    """The site's node with the plan's address (allocated or not)."""
    return model.model_copy(update={"ip": planned.ip})


def _current(out: Path) -> set[str]:
    found = set()
    for managed in _MANAGED_DIRS:
        base = out / managed
        if base.is_dir():
            _inside(out, base)  # never list, nor delete, through a link to somewhere else
            for top, dirs, names in os.walk(base):  # links to directories are not followed
                found.update((Path(top) / n).relative_to(out).as_posix() for n in names)
    return found


def _inside(out: Path, target: Path) -> None:
    """TARGET must be in OUT through real directories: a symbolic link planted in the tree
    (http/onehci -> /etc) would have a build write or delete elsewhere."""
    parent = target.parent.resolve()
    if parent != out.resolve() / target.parent.relative_to(out) or target.is_symlink():
        link = next((p for p in [target, *target.parents] if p.is_symlink() and out in p.parents), target)
        raise OnehciError(_("{path} is a symbolic link: onehci writes its boot tree only into real directories; "
                            "remove the link and build again (nothing was written)").format(path=printable(str(link))))


def _same(target: Path, content: bytes | CopyOf) -> bool:
    try:
        if isinstance(content, CopyOf):
            src, dst = content.source.stat(), target.stat()
            return src.st_size == dst.st_size and int(src.st_mtime) == int(dst.st_mtime)
        return target.read_bytes() == content
    except FileNotFoundError:
        return False


def write_tree(out: Path, files: dict[str, bytes | CopyOf]) -> tuple[list[str], list[str]]:
    """Write what changed; remove managed files no longer produced. Returns (written, removed).

    Every changed file is first written beside its place under a temporary name; only when all
    are written do they take their places (renames, which need no room): a full disk or an
    error leaves the tree as it was, never half of a new one."""
    pending: list[tuple[str, str, Path]] = []  # (relative name, temporary file, target)
    try:
        for rel, content in sorted(files.items(), key=lambda kv: kv[0]):
            target = out / rel
            if _same(target, content):
                continue
            _make_dirs(out, target.parent)
            _inside(out, target)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            pending.append((rel, tmp, target))
            os.close(fd)
            if isinstance(content, CopyOf):
                shutil.copy2(content.source, tmp)
            else:
                Path(tmp).write_bytes(content)
            os.chmod(tmp, 0o644)
    except BaseException as exc:
        for _rel, tmp, _target in pending:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OnehciError(_("cannot write the boot tree in {out}: {error}; the tree was left as it was").format(
                out=out, error=exc.strerror)) from None
        raise
    for _rel, tmp, target in pending:
        os.replace(tmp, target)
    removed = sorted(_current(out) - set(files))
    for rel in removed:
        (out / rel).unlink()
    return [rel for rel, _tmp, _target in pending], removed


def _make_dirs(out: Path, directory: Path) -> None:
    """The directories of the tree, made readable by everyone (dnsmasq's TFTP server runs as
    nobody); only those made here get a mode, never one that was there."""
    missing = [d for d in [directory, *directory.parents] if out in d.parents and not d.exists()]
    for made in reversed(missing):
        made.mkdir()
        os.chmod(made, 0o755)


# where a boot tree must never be built: the system's own directories
_SYSTEM_DIRS = {Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media",
                                  "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
                                  "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var",
                                  "/var/lib", "/var/tmp", "/var/log", "/var/cache")}
MARKER = ".onehci-boot-tree"  # in a boot tree: the site file it was built for


def claim_out(out: Path, site_path: Path) -> None:
    """OUT may hold this site's boot tree: new, empty, or built for this same site before.
    Refused: a system directory, a directory holding anything else, another site's tree, a
    name dnsmasq.conf could not carry. Made (mode 0755) when missing."""
    shown = printable(str(out))
    if CONTROL.search(str(out)) or "," in str(out):
        raise OnehciError(_("{path}: a boot tree's path goes into dnsmasq.conf (tftp-root=), where a comma or a "
                            "control character breaks the line; choose another --out").format(path=shown))
    resolved = out.resolve()
    if resolved in _SYSTEM_DIRS:
        raise OnehciError(_("{path} is a system directory: give the boot tree a directory of its own, e.g. "
                            "/srv/onehci/pxe").format(path=shown))
    site = str(Path(site_path).resolve())
    if out.exists():
        if not out.is_dir():
            raise OnehciError(_("{path} exists and is not a directory").format(path=shown))
        marker = out / MARKER
        legacy = (out / "dnsmasq.conf").is_file() and \
            (out / "dnsmasq.conf").read_text(errors="replace").startswith("# Generated by onehci")
        if marker.is_file() and not marker.is_symlink():
            owner = marker.read_text(errors="replace").strip()
            if owner != site:
                raise OnehciError(_("{path} holds the boot tree of {site}: one tree per site (each build removes "
                                    "the other site's files); give this one another --out").format(
                                        path=shown, site=printable(owner)))
        elif not legacy and any(out.iterdir()):
            raise OnehciError(_("{path} is not empty and holds no onehci boot tree: give an empty or a new "
                                "directory (a build removes files there it did not make)").format(path=shown))
    else:
        resolved.parent.mkdir(parents=True, exist_ok=True)
        _make_dirs(resolved.parent, resolved)
    if not (out / MARKER).is_file() or (out / MARKER).read_text(errors="replace").strip() != site:
        (out / MARKER).unlink(missing_ok=True)
        (out / MARKER).write_text(site + "\n")


def diff_tree(out: Path, files: dict[str, bytes | CopyOf]) -> list[str]:
    """Unified diff lines between the tree on disk and what a build would write."""
    lines: list[str] = []
    for rel, content in sorted(files.items()):
        target = out / rel
        if _same(target, content):
            continue
        if isinstance(content, CopyOf):
            lines.append(f"{'changed' if target.exists() else 'new'}: {rel} (from {content.source})")
            continue
        old = target.read_text(errors="replace").splitlines(keepends=True) if target.exists() else []
        lines.extend(difflib.unified_diff(old, content.decode().splitlines(keepends=True),
                                          f"a/{rel}" if old else "/dev/null", f"b/{rel}"))
    lines.extend(f"removed: {rel}" for rel in sorted(_current(out) - set(files)))
    return lines


@contextlib.contextmanager
def _tree_lock(out: Path):
    """One build at a time per boot tree, whichever site or state directory asks (the tree's
    own directory keeps its mode: dnsmasq reads it as nobody)."""
    with open(out / ".onehci-build.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class BuildResult:
    out: Path
    files: int
    written: list[str]
    removed: list[str]
    diff: list[str] | None = None


def _recorded(site_path: Path) -> dict:
    from installer import state

    return state.read_json(state.state_dir(site_path) / "pxe.json", {})


def tree_of(site_path: Path) -> Path:
    """Where the boot tree of a site was last built (default: pxe/ next to site.yml)."""
    recorded = _recorded(site_path).get("tree")
    return Path(recorded) if recorded else Path(site_path).resolve().parent / "pxe"


def build(loaded, out: Path | None = None, netboot: Path | None = None, *, diff: bool = False,
          check: bool = True, states: dict | None = None) -> BuildResult:
    """Render, check, then write the boot tree of a loaded site (or only diff it).
    `check=False` is for re-renders that only change boot states (the install callback);
    STATES, boot states about to be recorded (pxe arm, the callback), instead of the recorded ones."""
    from installer import state
    from installer.bootstate import BootStates
    from installer.plan import make_plan
    from installer.pxecheck import check_files

    out = Path(out) if out else tree_of(loaded.path)
    netboot = Path(netboot or _recorded(loaded.path).get("netboot") or DEFAULT_NETBOOT).resolve()
    plan = make_plan(loaded.site)
    states_dir = state.state_dir(loaded.path)
    boots = BootStates(states_dir)
    hostnames = [n.hostname for n in plan.nodes]
    current = boots.preview(hostnames) if diff else states or boots.ensure(hostnames)
    tokens = {h: b.token for h, b in current.items()}
    image = None
    if loaded.site.bootstrap.install == "image":
        from installer import image as image_mod

        image = image_mod.require(loaded.site, loaded.path)
    files = render(loaded.site, plan, current, tokens, out, netboot, image)
    problems = check_files(files, state.secret_values(states_dir)) if check else []
    if problems:
        raise OnehciError(_("the boot tree failed its checks; nothing was written:") + "\n  " + "\n  ".join(problems))
    if diff:
        return BuildResult(out, len(files), [], [], diff_tree(out, files))
    claim_out(out, loaded.path)
    with _tree_lock(out), state.locked(states_dir, "pxe-tree"):
        written, removed = write_tree(out, files)
        state.write_json(states_dir / "pxe.json", {"tree": str(out.resolve()), "netboot": str(netboot)})
    return BuildResult(out, len(files), written, removed)


def arm(loaded, hostname: str) -> str:
    """Put HOSTNAME back to `install` (a new one-shot token) and bring a built boot tree up to
    date; what was done, for the technician."""
    from installer import state
    from installer.bootstate import BootStates

    tree = tree_of(loaded.path)
    built = (tree / "dnsmasq.conf").exists()
    # the tree first, then the state: a failed build leaves the node as it was
    BootStates(state.state_dir(loaded.path)).arm(
        hostname, lambda states: build(loaded, tree, states=states) if built else None)
    return (_("{tree} updated").format(tree=tree) if built
            else _("run `onehci pxe build {site}` before serving").format(site=loaded.path))

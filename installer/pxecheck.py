"""Checks of a built boot tree, on top of the real validators, which miss a lot:
`dnsmasq --test` only checks syntax (a missing tftp-root passes) and
`debconf-set-selections -c` accepts a misspelt question name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from installer.errors import OnehciError
from installer.i18n import _

# Every preseed question onehci writes, with its type. A name or type outside this list is a
# bug in a template, caught here before a node stops at a question nobody answers.
PRESEED_QUESTIONS = {
    "debian-installer/language": "string", "debian-installer/country": "string",
    "debian-installer/locale": "string", "localechooser/supported-locales": "multiselect",
    "keyboard-configuration/xkb-keymap": "select",
    "netcfg/choose_interface": "select", "netcfg/disable_autoconfig": "boolean",
    "netcfg/get_ipaddress": "string", "netcfg/get_netmask": "string", "netcfg/get_gateway": "string",
    "netcfg/get_nameservers": "string", "netcfg/confirm_static": "boolean", "netcfg/get_hostname": "string",
    "netcfg/get_domain": "string", "netcfg/hostname": "string", "hw-detect/load_firmware": "boolean",
    "mirror/country": "string", "mirror/protocol": "string", "mirror/http/hostname": "string",
    "mirror/http/directory": "string", "mirror/http/proxy": "string", "mirror/https/hostname": "string",
    "mirror/https/directory": "string", "mirror/https/proxy": "string", "mirror/suite": "string",
    "passwd/root-login": "boolean", "passwd/make-user": "boolean", "passwd/root-password-crypted": "password",
    "clock-setup/utc": "boolean", "time/zone": "string", "clock-setup/ntp": "boolean",
    "partman/early_command": "string", "partman-auto/method": "string", "partman-auto/choose_recipe": "select",
    "partman-lvm/device_remove_lvm": "boolean", "partman-md/device_remove_md": "boolean",
    "partman-partitioning/confirm_write_new_label": "boolean", "partman/choose_partition": "select",
    "partman/confirm": "boolean", "partman/confirm_nooverwrite": "boolean",
    "partman-efi/non_efi_system": "boolean", "grub-installer/force-efi-extra-removable": "boolean",
    "grub-installer/only_debian": "boolean", "grub-installer/with_other_os": "boolean",
    "apt-setup/non-free-firmware": "boolean", "apt-setup/cdrom/set-first": "boolean",
    "tasksel/first": "multiselect", "pkgsel/include": "string", "popularity-contest/participate": "boolean",
    "preseed/late_command": "string", "finish-install/reboot_in_progress": "note",
}
# Never in a served file: plaintext password questions and private keys.
_FORBIDDEN = [re.compile(p) for p in (r"passwd/root-password\s", r"passwd/user-password\s",
                                      r"passwd/root-password-again", r"PRIVATE KEY-----")]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if Path(p).exists()), None)
    if not path:
        raise OnehciError(_("{name} is missing: install it with `apt-get install {package}`").format(
            name=name, package=package))
    return path


def check_preseed_questions(text: str, name: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 3:
            problems.append(_("{file}:{line}: not 'owner question type value'").format(file=name, line=number))
            continue
        question, kind = fields[1], fields[2]
        expected = PRESEED_QUESTIONS.get(question)
        if expected is None:
            problems.append(_("{file}:{line}: unknown preseed question {question}").format(
                file=name, line=number, question=question))
        elif expected != kind:
            problems.append(_("{file}:{line}: {question} is a {expected}, not a {kind}").format(
                file=name, line=number, question=question, expected=expected, kind=kind))
    return problems


def _referenced_files(files: dict) -> list[tuple[str, str]]:
    """(file that references, TFTP-relative path referenced)."""
    text = lambda rel: files[rel].decode() if isinstance(files.get(rel), bytes) else ""  # noqa: E731
    refs: list[tuple[str, str]] = []
    for line in text("dnsmasq.conf").splitlines():
        if line.startswith("dhcp-boot="):
            refs.append(("dnsmasq.conf", line.split("=", 1)[1].split(",")[1]))
        elif line.startswith("pxe-service="):
            name = line.split(",")[3]
            refs.append(("dnsmasq.conf", name if name.endswith(".efi") else name + ".0"))
    # pxelinux loads ldlinux.c32 from its own directory; the shim loads grubx64.efi from the root
    refs += [("pxelinux.0", "ldlinux.c32"), ("bootnetx64.efi", "grubx64.efi"),
             ("grubx64.efi", "debian-installer/amd64/grub/grub.cfg"), ("pxelinux.0", "pxelinux.cfg/default")]
    for rel in sorted(r for r in files if r.startswith("tftp/pxelinux.cfg/")):
        for line in text(rel).splitlines():
            words = line.split()
            if words and words[0] in ("KERNEL", "INITRD"):
                refs.append((rel.removeprefix("tftp/"), words[1]))
    for line in text(GRUB_CFG).splitlines():
        words = line.split()
        if words and words[0] in ("linux", "initrd"):
            refs.append(("grub.cfg", words[1].lstrip("/")))
    return refs


GRUB_CFG = "tftp/debian-installer/amd64/grub/grub.cfg"


def check_files(files: dict, secrets: list[str] = ()) -> list[str]:
    """Every problem in a boot tree given as {relative path: bytes or a copied file};
    an empty list means it is fit to serve. The real tools run on a scratch copy of the
    generated text files, so nothing is written where the tree goes until it passes."""
    problems: list[str] = []
    preseeds = {rel: c for rel, c in files.items() if rel.startswith("http/preseed/") and isinstance(c, bytes)}
    for rel, content in sorted(preseeds.items()):
        problems += check_preseed_questions(content.decode(errors="replace"), rel.rsplit("/", 1)[-1])
    with tempfile.TemporaryDirectory(prefix="onehci-check-") as scratch:
        root = Path(scratch)
        # the real tools read files: give them the configs and one preseed of each shape
        for rel in ["dnsmasq.conf", GRUB_CFG, *_one_of_each_shape(preseeds)]:
            if isinstance(files.get(rel), bytes):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(files[rel])
        conf = root / "dnsmasq.conf"
        if conf.exists():
            proc = subprocess.run([_tool("dnsmasq", "dnsmasq-base"), "--test", f"--conf-file={conf}"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"dnsmasq --test: {(proc.stderr or proc.stdout).strip()}")
        else:
            problems.append(_("dnsmasq.conf is missing"))
        for source, rel in _referenced_files(files):
            if f"tftp/{rel}" not in files:
                problems.append(_("{source} refers to {file}, which is not in the TFTP tree").format(
                    source=source, file=rel))
        if (root / GRUB_CFG).exists():
            proc = subprocess.run([_tool("grub-script-check", "grub-common"), str(root / GRUB_CFG)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"grub-script-check grub.cfg: {(proc.stderr or proc.stdout).strip()}")
        problems += _debconf_check(root / "http/preseed")
        problems += _settings_check(files, root)
    problems += scan_secrets(files, secrets)
    return problems


SETTINGS = ("HOSTNAME", "DOMAIN", "MAC", "ADDRESS", "GATEWAY", "FIRMWARE", "DISK_KIND", "DISK_VALUE", "IMAGE_URL",
            "IMAGE_SHA256", "CALLBACK_URL")


_QUOTED = r"(?:'[^']*'|\"'\")+"  # one word as pxe.shell_quote writes it
_SETTING_LINE = re.compile(rf"#.*|([A-Z][A-Z0-9_]*)={_QUOTED}|authorized_keys\(\) \{{|\tprintf '%s\\n' {_QUOTED}|\}}|")


def _settings_check(files: dict, root: Path) -> list[str]:
    """Each node's install settings (http/install/*.conf), which the install script sources: only
    comments, quoted assignments and the keys' function (never run here: read), every setting the
    script needs, and sh's own syntax check."""
    problems: list[str] = []
    settings = {rel: c for rel, c in files.items() if rel.startswith("http/install/") and isinstance(c, bytes)}
    for rel, content in sorted(settings.items()):
        assigned = set()
        for number, line in enumerate(content.decode(errors="replace").split("\n"), 1):
            match = _SETTING_LINE.fullmatch(line)
            if not match:
                problems.append(_("{file}:{line}: not a comment, a quoted setting or a key line").format(
                    file=rel, line=number))
            elif match.group(1):
                assigned.add(match.group(1))
        problems += [_("{file}: {name} is not set").format(file=rel, name=name) for name in SETTINGS
                     if name not in assigned]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
        proc = subprocess.run(["sh", "-n", str(root / rel)], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"{rel}: sh -n: {proc.stderr.strip()}")
    return problems


def _one_of_each_shape(preseeds: dict[str, bytes]) -> list[str]:
    """One preseed per distinct sequence of (owner, question, type) lines. debconf's check
    looks at each line's structure, not at node values, so one of each shape tells the same;
    onehci's own check above still reads every line of every preseed."""
    chosen: dict[tuple, str] = {}
    for rel, content in sorted(preseeds.items()):
        shape = tuple(tuple(line.split(None, 3)[:3]) for line in content.decode(errors="replace").splitlines()
                      if line.strip() and not line.startswith("#"))
        chosen.setdefault(shape, rel)
    return list(chosen.values())


def _debconf_check(directory: Path) -> list[str]:
    """`debconf-set-selections -c` once over the given preseeds (one Perl start for all),
    its complaints mapped back to file:line."""
    problems: list[str] = []
    preseeds = sorted(directory.glob("*.cfg"))
    if not preseeds:
        return problems
    spans, lines = [], []
    for preseed in preseeds:
        text = preseed.read_text().splitlines()
        spans.append((len(lines), preseed.name))
        lines.extend(text)
    combined = directory.parent / "all-preseeds.check"
    combined.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([_tool("debconf-set-selections", "debconf"), "-c", str(combined)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.strip():
        for complaint in (proc.stderr or proc.stdout).strip().splitlines():
            found = re.search(r"line (\d+)", complaint)
            where = "preseeds"
            if found:
                number = int(found.group(1))
                start, name = max((span for span in spans if span[0] < number), default=(0, "?"))
                where = f"{name}:{number - start}"
            problems.append(f"debconf-set-selections -c {where}: {complaint}")
    return problems


def read_tree(tree: Path) -> dict:
    """A built tree on disk as {relative path: bytes} (binaries as their path)."""
    files: dict = {}
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(tree).as_posix()
        files[rel] = path.read_bytes() if _is_text(rel) else path
    return files


def _is_text(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return rel == "dnsmasq.conf" or (rel.startswith(("http/", "tftp/pxelinux.cfg/")) and not rel.startswith("http/image/")) or name == "grub.cfg" or (
        rel.startswith("tftp/") and name.endswith((".cfg", ".txt")))


def scan_secrets(files: dict, secrets: list[str] = ()) -> list[str]:
    """Generated files must hold no secret: no plaintext password question, no private key,
    nothing from the state directory's secrets."""
    problems = []
    for rel, content in sorted(files.items()):
        if not isinstance(content, bytes):
            continue
        text = content.decode(errors="replace")
        for pattern in _FORBIDDEN:
            if pattern.search(text):
                problems.append(_("{file}: holds a secret ({pattern})").format(
                    file=rel, pattern=pattern.pattern.replace(chr(92) + "s", "")))
        problems += [_("{file}: holds a secret from the state directory").format(file=rel)
                     for s in secrets if s and s in text]
    return problems

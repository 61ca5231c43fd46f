"""Hostile or odd input, class by class (docs/security.md): nothing from a site file reaches a
shell, a boot file's line or a template; files are read as the data they are; writes never go
through a link the user did not name nor leave half a tree. The boot server's side is
tests/unit/test_bootserver_http.py; Ansible's side tests/unit/test_inventory.py and tests/unit/cli/test_inventory.py."""

from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from installer import pxe, sitefile, siteinit, state
from installer.cli.main import cli
from installer.errors import OnehciError, SiteInvalid
from installer.resources import profiles
from tests.conftest import BASE_SITE, with_install


def errors_of(write_site, text: str) -> list[str]:
    with pytest.raises(SiteInvalid) as caught:
        sitefile.load(write_site(text))
    return [p.render() for p in caught.value.errors]


# --- 1. shell: a disk name is a name udev makes, and goes to the installer's shell as one word --


@pytest.mark.parametrize("hostile", ["x';touch pwned;'", "x$(id)", "a b", "x`id`", "{{lookup('pipe','id')}}",
                                     "..", "-rf", "x\\u001b[2J"])
def test_a_by_id_name_udev_would_never_make_is_refused(write_site, hostile):
    found = errors_of(write_site, BASE_SITE.replace("/dev/disk/by-id/ata-DISK3", f'"/dev/disk/by-id/{hostile}"'))
    assert any("is not a name udev makes under /dev/disk/by-id/" in e for e in found), found


def test_an_odd_but_real_by_id_name_reaches_the_installer_as_one_word(write_site, tmp_path):
    odd = "/dev/disk/by-id/nvme-eui.0025#38+b2:c1=4@5_a-b.c"
    text = BASE_SITE.replace("/dev/disk/by-id/ata-DISK3", odd)
    loaded = sitefile.load(write_site(with_install(text, "debian-installer")))
    pxe.build(loaded, tmp_path / "pxe")
    preseed = (tmp_path / "pxe/http/preseed/n3.cfg").read_text()
    command = next(ln for ln in preseed.splitlines() if "partman/early_command" in ln).split(" string ", 1)[1]
    words = shlex.split(command.split("&&")[1])  # sh's own splitting of the second command
    assert words == ["sh", "/tmp/onehci-select-disk.sh", "by-id", odd]
    # the image install's settings: one assignment of that one word
    loaded = sitefile.load(write_site(text))
    pxe.build(loaded, tmp_path / "pxe-image")
    settings = (tmp_path / "pxe-image/http/install/n3.conf").read_text()
    assert shlex.split(next(ln for ln in settings.splitlines() if ln.startswith("DISK_VALUE="))) == [f"DISK_VALUE={odd}"]


def test_a_value_with_a_quote_is_still_one_shell_word():
    value = "it's a; $(trap) `x` \"y\""
    assert shlex.split(pxe.shell_quote(value)) == [value]


# --- 3. lines: a trailing newline or a control character never reaches a boot file --------


@pytest.mark.parametrize("field,text,hostile", [
    ("cluster.keyboard", "keyboard: fr", 'keyboard: "fr\\n"'),
    ("cluster.locale", "locale: fr_FR.UTF-8", 'locale: "fr_FR\\n"'),
    ("bootstrap.interface", "interface: eno1", 'interface: "eno1\\n"'),
    ("networks.vms.bridge", "bridge: br0", 'bridge: "br0\\n"'),
    ("bootstrap.mirror", "interface: eno1", 'interface: eno1\n  mirror: "http://deb.debian.org/debian\\n"'),
    ("bootstrap.console", "interface: eno1", 'interface: eno1\n  console: "ttyS0\\n"'),
])
def test_a_trailing_newline_is_refused(write_site, field, text, hostile):
    found = errors_of(write_site, BASE_SITE.replace(text, hostile))
    assert any(f" {field}: " in e for e in found), found
    assert all("\n" not in e for e in found)  # shown escaped, on one line


@pytest.mark.parametrize("install,shown", [("debian-installer", r"keymap=fr\\x0a log_host="), ("image", r"'fr\\x0a'")])
def test_a_control_character_that_got_into_a_value_stops_the_build(write_site, tmp_path, monkeypatch, install, shown):
    loaded = sitefile.load(write_site(with_install(BASE_SITE, install)))
    bad = loaded.site.model_copy(update={"cluster": loaded.site.cluster.model_copy(update={"keyboard": "fr\n"})})
    monkeypatch.setattr(loaded, "site", bad)
    with pytest.raises(OnehciError, match=shown + r".*' would break a line of the boot files"):
        pxe.build(loaded, tmp_path / "pxe")
    assert not (tmp_path / "pxe/dnsmasq.conf").exists()


# --- 4. reading: a site file is a regular file of a sane size, parsed with bounds ------------


def test_an_alias_bomb_is_refused_quickly_and_small(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for name, prev in zip("bcdefgh", "abcdefg"):
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "bomb.yml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 400
    # the peak of this process alone: VmHWM starts again at exec, where ru_maxrss keeps the parent's
    # (pytest's own size, hundreds of MB late in a run)
    code = ("import re, sys, time\nfrom installer import sitefile\nfrom installer.errors import SiteInvalid\n"
            "start = time.monotonic()\ntry:\n    sitefile.load(sys.argv[1])\nexcept SiteInvalid as e:\n"
            "    print(e.problems[0].render())\nprint(time.monotonic() - start)\n"
            "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))")
    run = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=60)
    message, seconds, max_kib = run.stdout.splitlines()
    assert "expands to more than 50,000 values" in message, run.stdout + run.stderr
    assert float(seconds) < 5 and int(max_kib) < 150 * 1024


@pytest.mark.parametrize("kind", ["fifo", "zero", "loop", "directory"])
def test_a_site_path_that_is_no_regular_file_is_one_line(tmp_path, kind):
    path = tmp_path / "site.yml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "loop":
        path.symlink_to(tmp_path / "other.yml")
        (tmp_path / "other.yml").symlink_to(path)
    else:
        path.mkdir()
    started = time.monotonic()
    with pytest.raises(OnehciError) as caught:
        sitefile.load(path)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)


def test_another_kind_of_file_is_named_in_one_line_without_its_content(tmp_path):
    secret = "root:$y$j9T$Saltsaltsalt$HASHhashHASHhashHASHhashHASHhashHASHhash123:19000:0:99999:7:::"
    (tmp_path / "shadow").write_text(secret + "\ndaemon:*:19000:0:99999:7:::\n")
    (tmp_path / "site.yml").symlink_to(tmp_path / "shadow")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "site.yml")])
    assert result.exit_code == 1
    assert "not a site file" in result.output and "HASHhash" not in result.output and "root:" not in result.output
    assert len(result.output.strip().splitlines()) == 2  # the problem, then "1 error; nothing was written."


def test_a_file_larger_than_any_site_is_refused_unread(tmp_path):
    big = tmp_path / "site.yml"
    with open(big, "wb") as fh:
        fh.truncate(sitefile.MAX_SIZE + 1)
    with pytest.raises(OnehciError, match="larger than 4 MiB: not a site file"):
        sitefile.load(big)


# --- 5. plan --write keeps the file what it was, plus the ip lines -----------------------------


@pytest.mark.parametrize("shape", ["next line", "block scalar", "crlf", "symlink"])
def test_plan_write_adds_only_ip_lines_whatever_the_layout(tmp_path, shape):
    text = profiles()["three-node"].read_text()
    if shape == "next line":
        text = text.replace("    mac: 52:54:00:20:00:02", "    mac:\n      52:54:00:20:00:02")
    elif shape == "block scalar":
        text = text.replace("    mac: 52:54:00:20:00:02", "    mac: >-\n      52:54:00:20:00:02")
    elif shape == "crlf":
        text = text.replace("\n", "\r\n")
    real = tmp_path / "real.yml"
    real.write_bytes(text.encode())
    site = tmp_path / "site.yml"
    if shape == "symlink":
        site.symlink_to(real)
    else:
        site = real
    result = CliRunner().invoke(cli, ["plan", "--write", str(site)])
    assert result.exit_code == 0, result.output
    after = real.read_bytes().decode()
    assert site.is_symlink() == (shape == "symlink")
    added = [ln for ln in after.splitlines() if ln not in text.splitlines()]
    assert added == ["    ip: 10.20.0.40", "    ip: 10.20.0.41", "    ip: 10.20.0.42"]
    assert len(after.splitlines()) == len(text.splitlines()) + 3
    if shape == "crlf":
        assert "\n" not in after.replace("\r\n", "")
    assert all(n.ip is not None for n in sitefile.load(site).site.nodes)


# --- 6. init never follows a planted temporary name ---------------------------------------------


def test_init_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site/.site.yml.tmp").symlink_to(victim)
    written = siteinit.init_site("lab", tmp_path / "site")
    assert victim.read_text() == "keep\n" and not written.is_symlink()


def test_init_in_a_directory_it_cannot_write_is_one_line(tmp_path, monkeypatch):
    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(state.tempfile, "mkstemp", denied)
    with pytest.raises(OnehciError, match=r"^cannot write in .*: permission denied$"):
        siteinit.init_site("lab", tmp_path / "site")


# --- 7. pxe build --out ----------------------------------------------------------------------


@pytest.fixture
def lab_site(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    (tmp_path / "site.yml").write_text(with_install(profiles()["lab"].read_text(), "debian-installer"))
    return sitefile.load(tmp_path / "site.yml")


@pytest.mark.parametrize("out,message", [("/", "is a system directory"), ("/etc", "is a system directory"),
                                         ("a,b", "a comma or a control character"),
                                         ("notempty", "is not empty and holds no onehci boot tree")])
def test_pxe_build_refuses_an_output_directory_that_is_not_its_own(lab_site, tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notempty").mkdir()
    (tmp_path / "notempty/precious").write_text("x")
    with pytest.raises(OnehciError, match=message):
        pxe.build(lab_site, Path(out))
    assert (tmp_path / "notempty/precious").exists() and not Path("/dnsmasq.conf").exists()


def test_pxe_build_leaves_the_mode_of_a_directory_it_did_not_make(lab_site, tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o1777)
    pxe.build(lab_site, out)
    assert oct(out.stat().st_mode & 0o7777) == "0o1777"
    assert oct((out / "tftp").stat().st_mode & 0o777) == "0o755"  # made here: readable by dnsmasq's nobody


def test_pxe_build_never_writes_nor_deletes_through_a_link_in_its_tree(lab_site, tmp_path):
    out = tmp_path / "pxe"
    pxe.build(lab_site, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.sh").write_text("x")
    for item in (out / "http/onehci").iterdir():
        item.unlink()
    (out / "http/onehci").rmdir()
    (out / "http/onehci").symlink_to(elsewhere)
    with pytest.raises(OnehciError, match="is a symbolic link"):
        pxe.build(lab_site, out)
    assert [p.name for p in elsewhere.iterdir()] == ["keep.sh"]


def test_a_full_disk_leaves_the_tree_as_it_was(lab_site, tmp_path, monkeypatch):
    out = tmp_path / "pxe"
    pxe.build(lab_site, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".onehci")}
    edited = lab_site.path.read_text().replace("keyboard: fr", "keyboard: de")
    lab_site.path.write_text(edited)
    loaded = sitefile.load(lab_site.path)
    real_write = Path.write_bytes
    calls = {"n": 0}

    def fill(self, data):
        if out not in self.parents:  # the checks' own scratch copy is not the tree
            return real_write(self, data)
        calls["n"] += 1
        if calls["n"] == 3:  # the third changed file finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", fill)
    with pytest.raises(OnehciError, match="No space left on device; the tree was left as it was"):
        pxe.build(loaded, out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and not p.name.startswith(".onehci")}
    assert after == before  # no file of the new build took its place, no temporary left


def test_one_tree_per_site(lab_site, tmp_path):
    out = tmp_path / "pxe"
    pxe.build(lab_site, out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "site.yml").write_text(lab_site.path.read_text())
    with pytest.raises(OnehciError, match="holds the boot tree of .*one tree per site"):
        pxe.build(sitefile.load(other / "site.yml"), out)
    assert len(list((out / "http/preseed").iterdir())) == 3


def test_a_netboot_link_out_of_its_tree_or_a_private_file_is_refused(lab_site, tmp_path):
    netboot = tmp_path / "netboot"
    (netboot / "debian-installer/amd64").mkdir(parents=True)
    for name in ("debian-installer/amd64/linux", "debian-installer/amd64/grubx64.efi",
                 "debian-installer/amd64/bootnetx64.efi", "pxelinux.0"):
        (netboot / name).write_text("x")
    secret = tmp_path / "secret"
    secret.write_text("private")
    secret.chmod(0o600)
    (netboot / "extra").symlink_to(secret)
    with pytest.raises(OnehciError, match="leads out of the netboot tree"):
        pxe.build(lab_site, tmp_path / "pxe", netboot)
    (netboot / "extra").unlink()
    (netboot / "private").write_text("x")
    (netboot / "private").chmod(0o600)
    with pytest.raises(OnehciError, match="is not readable by everyone"):
        pxe.build(lab_site, tmp_path / "pxe", netboot)


def test_a_relative_netboot_is_recorded_absolute(lab_site, tmp_path, monkeypatch):
    netboot = Path(pxe.DEFAULT_NETBOOT)
    monkeypatch.chdir(netboot.parent)
    pxe.build(lab_site, tmp_path / "pxe", Path(netboot.name))
    recorded = state.read_json(state.state_dir(lab_site.path) / "pxe.json", {})
    assert recorded["netboot"] == str(netboot.resolve())


# --- 9. hash-password --stdin ----------------------------------------------------------------


@pytest.mark.parametrize("given,hashed", [(b"abc\r\n", "abc"), (b"abc\n", "abc"), (b"abc", "abc")])
def test_hash_password_takes_the_line_without_its_ending(given, hashed):
    from installer.passwords import verify

    result = CliRunner().invoke(cli, ["hash-password", "--stdin"], input=given)
    assert result.exit_code == 0 and verify(hashed, result.stdout.strip())


@pytest.mark.parametrize("given,message", [(b"a\x00b\n", "NUL byte"), (b"\xff\xfe\n", "not UTF-8")])
def test_hash_password_refuses_what_crypt_would_cut(given, message):
    result = CliRunner().invoke(cli, ["hash-password", "--stdin"], input=given)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


# --- 10. smaller gaps ---------------------------------------------------------------------------


@pytest.mark.parametrize("old,new,message", [
    ("mac: 52:54:00:00:00:01", "mac: 00:00:00:00:00:00", "is no network card's address"),
    ("interface: eno1", 'interface: ".."', "is not a Linux interface name"),
    ("cidr: 192.168.20.0/24", "cidr: 224.0.0.0/24", "is multicast"),
    ("cidr: 192.168.20.0/24", "cidr: 0.0.0.0/24", "'this network'"),
    ("cidr: 192.168.20.0/24", "cidr: 127.0.0.0/24", "is loopback"),
    ("interface: eno1", "interface: eno1\n  mirror: http://m.example:99999/debian", "port 1-65535"),
    ("interface: eno1", "interface: eno1\n  http_port: 3142", "3142 is apt-cacher-ng's port"),
])
def test_values_the_real_thing_would_not_take_are_refused(write_site, old, new, message):
    found = errors_of(write_site, BASE_SITE.replace(old, new, 1))
    assert any(message in e for e in found), found


def test_credentials_in_a_mirror_url_are_refused_and_never_shown(write_site):
    found = errors_of(write_site, BASE_SITE.replace(
        "interface: eno1", "interface: eno1\n  mirror: http://tech:S3cret-pw@mirror.example/debian"))
    assert any("a mirror URL with a user name or password is not accepted" in e for e in found)
    assert not any("S3cret" in e for e in found)

"""`onehci pxe build`: golden files, identical rebuilds, --diff, one-shot states, own checks.

Golden files live in tests/golden/pxe/; after an intended template change, refresh them with
ONEHCI_UPDATE_GOLDEN=1 pytest tests/unit/test_pxe.py and review the diff.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from installer import pxe, pxecheck, sitefile, state
from installer.bootstate import INSTALL, INSTALLED, BootStates
from installer.cli.main import cli
from installer.errors import OnehciError
from installer.resources import profiles
from tests.conftest import REPO, with_install

GOLDEN = REPO / "tests/golden/pxe"
TEXT_FILES = ["dnsmasq.conf", "tftp/pxelinux.cfg/default", "tftp/debian-installer/amd64/grub/grub.cfg",
              "http/onehci/select-disk.sh", "http/onehci/finish.sh"]


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    """A copy of a profile in its own directory, with known tokens in its state."""
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)

    def make(profile: str, edit=lambda text: text, install: str = "debian-installer") -> Path:
        """INSTALL: the tests here about preseeds take the Debian installer; "image" for the default."""
        directory = tmp_path / f"{profile}-{install}"
        directory.mkdir()
        text = profiles()[profile].read_text()
        if install != "image":
            text = with_install(text, install)
        (directory / "site.yml").write_text(edit(text))
        hosts = [n.hostname for n in sitefile.load(directory / "site.yml").site.nodes]
        state.write_json(directory / "state/boot.json",
                         {h: {"state": INSTALL, "token": f"token-{h}", "changed": "2026-01-01T00:00:00+00:00"}
                          for h in hosts})
        return directory

    return make


def _normalised(path: Path, out: Path) -> str:
    return path.read_text().replace(str(out.resolve()), "OUT")


@pytest.mark.parametrize("profile,install", [("lab", "debian-installer"), ("five-node", "debian-installer"),
                                             ("three-node", "debian-installer"), ("lab", "image")])
def test_golden_files(site_dir, profile, install):
    directory = site_dir(profile, install=install)
    out = directory / "pxe"
    loaded = sitefile.load(directory / "site.yml")
    pxe.build(loaded, out)
    produced = [f for f in TEXT_FILES if (out / f).exists() or install != "image"]
    produced += sorted(p.relative_to(out).as_posix() for p in (out / "tftp/pxelinux.cfg").glob("01-*"))
    produced += sorted(p.relative_to(out).as_posix() for p in (out / "http/preseed").glob("*.cfg"))
    produced += sorted(p.relative_to(out).as_posix() for p in (out / "http/install").glob("*.conf"))
    for rel in produced:
        golden = GOLDEN / (profile if install == "debian-installer" else f"{profile}-{install}") / rel
        if os.environ.get("ONEHCI_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(_normalised(out / rel, out))
        assert _normalised(out / rel, out) == golden.read_text(), rel


def test_build_twice_is_identical_and_writes_nothing(site_dir):
    directory = site_dir("lab")
    loaded = sitefile.load(directory / "site.yml")
    first = pxe.build(loaded, directory / "pxe")
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (directory / "pxe").rglob("*") if p.is_file()}
    second = pxe.build(loaded, directory / "pxe")
    assert first.written and second.written == [] and second.removed == []
    assert snapshot == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (directory / "pxe").rglob("*") if p.is_file()}


def test_tree_contents_and_permissions(site_dir):
    directory = site_dir("lab")
    out = directory / "pxe"
    pxe.build(sitefile.load(directory / "site.yml"), out)
    for rel in ("tftp/pxelinux.0", "tftp/ldlinux.c32", "tftp/bootnetx64.efi", "tftp/grubx64.efi",
                "tftp/debian-installer/amd64/linux", "tftp/debian-installer/amd64/initrd.gz",
                "tftp/pxelinux.cfg/01-52-54-00-71-00-11", "http/preseed/lab3.cfg"):
        assert (out / rel).is_file(), rel
    assert not (out / "tftp/pxelinux.cfg").is_symlink()
    assert stat.S_IMODE((out / "http/preseed/lab1.cfg").stat().st_mode) == 0o644
    assert stat.S_IMODE((directory / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "state/boot.json").stat().st_mode) == 0o600


def test_diff_shows_a_change_and_writes_nothing(site_dir):
    directory = site_dir("lab")
    loaded = sitefile.load(directory / "site.yml")
    pxe.build(loaded, directory / "pxe")
    assert pxe.build(loaded, directory / "pxe", diff=True).diff == []
    site = directory / "site.yml"
    site.write_text(site.read_text().replace("keyboard: fr", "keyboard: us"))
    before = (directory / "pxe/http/preseed/lab1.cfg").read_text()
    result = pxe.build(sitefile.load(site), directory / "pxe", diff=True)
    assert "-d-i keyboard-configuration/xkb-keymap select fr\n" in result.diff
    assert "+d-i keyboard-configuration/xkb-keymap select us\n" in result.diff
    assert (directory / "pxe/http/preseed/lab1.cfg").read_text() == before


def test_removed_node_loses_its_files(site_dir):
    directory = site_dir("five-node")
    out = directory / "pxe"
    pxe.build(sitefile.load(directory / "site.yml"), out)
    text = (directory / "site.yml").read_text()
    cut = text[text.index("  - hostname: nebula84"):]
    (directory / "site.yml").write_text(text.replace(cut, ""))
    result = pxe.build(sitefile.load(directory / "site.yml"), out)
    assert set(result.removed) == {"http/preseed/nebula84.cfg", "tftp/pxelinux.cfg/01-52-54-00-00-00-84"}
    assert "52:54:00:00:00:84" not in (out / "dnsmasq.conf").read_text()


def test_proxy_mode_gives_no_leases(site_dir):
    directory = site_dir("three-node")
    pxe.build(sitefile.load(directory / "site.yml"), directory / "pxe")
    conf = (directory / "pxe/dnsmasq.conf").read_text()
    assert "dhcp-range=set:onehci,10.20.0.0,proxy,255.255.255.0" in conf
    assert "dhcp-host=52:54:00:20:00:01,set:onehci" in conf and "10.20.0.40," not in conf
    assert "pxe-service=tag:!efi64,x86PC" in conf


def test_callback_switches_entries_to_local_boot_and_arm_switches_back(site_dir):
    directory = site_dir("lab")
    loaded = sitefile.load(directory / "site.yml")
    out = directory / "pxe"
    pxe.build(loaded, out)
    boots = BootStates(directory / "state")
    with pytest.raises(OnehciError, match="wrong or spent token"):
        boots.complete("lab2", "not-the-token")
    assert boots.get("lab2").state == INSTALL
    boots.complete("lab2", "token-lab2")
    assert boots.get("lab2").token != "token-lab2"  # spent: a second callback with it is refused
    with pytest.raises(OnehciError, match="wrong or spent token"):
        boots.complete("lab2", "token-lab2")
    pxe.build(loaded, out)
    entry = (out / "tftp/pxelinux.cfg/01-52-54-00-71-00-12").read_text()
    assert "LOCALBOOT 0" in entry and "KERNEL" not in entry
    grub = (out / "tftp/debian-installer/amd64/grub/grub.cfg").read_text()
    assert "lab2 is installed: boot the local disk" in grub and "Install Debian 12 on lab2" not in grub
    assert "Install Debian 12 on lab1" in grub
    result = CliRunner().invoke(cli, ["pxe", "arm", "lab2", str(directory / "site.yml")])
    assert result.exit_code == 0, result.output
    assert "KERNEL debian-installer/amd64/linux" in (out / "tftp/pxelinux.cfg/01-52-54-00-71-00-12").read_text()
    armed = BootStates(directory / "state").get("lab2")
    assert armed.state == INSTALL and armed.token != "token-lab2"  # a new install needs a new token
    assert armed.token in (out / "http/preseed/lab2.cfg").read_text()


def test_state_survives_and_is_listed(site_dir):
    directory = site_dir("lab")
    BootStates(directory / "state").complete("lab1", "token-lab1")
    result = CliRunner().invoke(cli, ["pxe", "state", "--json", str(directory / "site.yml")])
    rows = {r["hostname"]: r["state"] for r in json.loads(result.stdout)}
    assert rows == {"lab1": INSTALLED, "lab2": INSTALL, "lab3": INSTALL}
    assert "token" not in result.stdout


def test_arm_unknown_node_is_refused(site_dir):
    directory = site_dir("lab")
    result = CliRunner().invoke(cli, ["pxe", "arm", "lab9", str(directory / "site.yml")])
    assert result.exit_code == 1 and "no node named lab9" in result.stderr


def test_missing_netboot_tree_says_which_package(site_dir, tmp_path):
    directory = site_dir("lab")
    result = CliRunner().invoke(cli, ["pxe", "build", "--netboot", str(tmp_path / "none"), str(directory / "site.yml")])
    assert result.exit_code == 1
    assert "apt-get install debian-installer-12-netboot-amd64" in result.stderr
    assert not (directory / "pxe").exists()


def test_preseed_follows_the_site(site_dir):
    hashed = "$6$abcdefgh12345678$" + "a" * 86
    directory = site_dir("five-node", lambda t: t.replace('  # root_password_hash: "$6$..."',
                                                          f'  root_password_hash: "{hashed}"'))
    pxe.build(sitefile.load(directory / "site.yml"), directory / "pxe")
    preseed = (directory / "pxe/http/preseed/nebula83.cfg").read_text()
    assert f"d-i passwd/root-password-crypted password {hashed}\n" in preseed
    assert "d-i netcfg/get_ipaddress string 192.168.10.83\n" in preseed
    assert "d-i time/zone string Europe/Paris\n" in preseed
    assert "d-i localechooser/supported-locales multiselect fr_FR.UTF-8\n" in preseed
    assert "sh /tmp/onehci-select-disk.sh 'by-id' '/dev/disk/by-id/ata-SAMSUNG_MZ7LH480HAHQ-00005_S45PNA0M100083'" in preseed
    assert "partman-efi" not in preseed  # nebula83 boots BIOS
    assert "d-i mirror/http/proxy string http://192.168.10.5:3142/\n" in preseed
    finish = (directory / "pxe/http/onehci/finish.sh").read_text()
    assert "tech@academy.example" in finish


# --- own checks: they catch what the real tools let through -------------------------------

def test_checks_pass_on_a_built_tree(site_dir):
    directory = site_dir("five-node")
    pxe.build(sitefile.load(directory / "site.yml"), directory / "pxe")
    assert pxecheck.check_files(pxecheck.read_tree(directory / "pxe")) == []


def test_misspelt_question_is_caught_though_debconf_accepts_it(tmp_path):
    import subprocess

    bad = "d-i netcfg/get_hostnam string x\nd-i partman/confirm string true\n"
    (tmp_path / "p.cfg").write_text(bad)
    assert subprocess.run(["debconf-set-selections", "-c", str(tmp_path / "p.cfg")]).returncode == 0
    problems = pxecheck.check_preseed_questions(bad, "p.cfg")
    assert problems == ["p.cfg:1: unknown preseed question netcfg/get_hostnam",
                        "p.cfg:2: partman/confirm is a boolean, not a string"]


@pytest.fixture
def lab_files(site_dir) -> dict:
    """The lab profile's built tree, read back as {relative path: bytes or path}."""
    directory = site_dir("lab")
    pxe.build(sitefile.load(directory / "site.yml"), directory / "pxe")
    return pxecheck.read_tree(directory / "pxe")


def test_missing_referenced_file_is_caught(lab_files):
    files = lab_files
    del files["tftp/ldlinux.c32"]
    del files["tftp/debian-installer/amd64/initrd.gz"]
    problems = pxecheck.check_files(files)
    assert "pxelinux.0 refers to ldlinux.c32, which is not in the TFTP tree" in problems
    assert any("initrd.gz" in p and "pxelinux.cfg/01-52-54-00-71-00-11" in p for p in problems)
    assert any("initrd.gz" in p and p.startswith("grub.cfg") for p in problems)


def test_secrets_are_caught(lab_files):
    files = lab_files
    files["http/preseed/lab1.cfg"] += b"d-i passwd/root-password password hunter2\n"
    files["http/onehci/finish.sh"] += b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
    files["dnsmasq.conf"] += b"# oneadmin:Sup3rSecret\n"
    problems = pxecheck.check_files(files, secrets=["oneadmin:Sup3rSecret"])
    assert any(p.startswith("http/preseed/lab1.cfg: holds a secret") for p in problems)
    assert any(p.startswith("http/onehci/finish.sh: holds a secret") for p in problems)
    assert "dnsmasq.conf: holds a secret from the state directory" in problems


def test_failed_checks_write_nothing(site_dir, monkeypatch):
    directory = site_dir("lab")
    monkeypatch.setattr(pxecheck, "PRESEED_QUESTIONS", {})  # every question now unknown
    result = CliRunner().invoke(cli, ["pxe", "build", str(directory / "site.yml")])
    assert result.exit_code == 1 and "failed its checks; nothing was written" in result.stderr
    assert not (directory / "pxe").exists()


def test_dnsmasq_test_catches_a_broken_line(lab_files):
    files = lab_files
    files["dnsmasq.conf"] += b"dhcp-range=not-an-address\n"
    assert any(p.startswith("dnsmasq --test:") for p in pxecheck.check_files(files))


def test_grub_script_check_catches_a_broken_grub_cfg(lab_files):
    files = lab_files
    files["tftp/debian-installer/amd64/grub/grub.cfg"] += b"if [ x = y ]; then\n"
    assert any(p.startswith("grub-script-check") for p in pxecheck.check_files(files))


def test_kvm_hosts_install_the_hypervisor_packages_the_role_would_install():
    import yaml

    from installer import node_packages

    role = yaml.safe_load((REPO / "roles/opennebula_node/defaults/main.yml").read_text())
    assert set(node_packages.KVM_HOST) <= set(role["opennebula_node__packages"])
    five = sitefile.load(profiles()["five-node"]).site
    by_role = {n.hostname: node_packages.for_node(n) for n in five.nodes}
    assert "qemu-system-x86" not in by_role["nebula80"]  # the frontend alone: no hypervisor
    assert "qemu-system-x86" in by_role["nebula81"]

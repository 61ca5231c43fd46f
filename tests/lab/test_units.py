"""The lab's pieces that need no containers: host checks, names, process identity,
the files written into a node, the CLI's site selection."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from installer.cli.main import cli
from installer.errors import OnehciError
from installer.lab import base, core, disks, procs, rootfs


def test_not_root_is_refused_with_one_line():
    with pytest.raises(OnehciError, match=r"^the lab needs root .*run it with sudo$"):
        core.check_host(euid=1000, system="Linux", which=lambda _t: "/usr/bin/x")


def test_not_linux_is_refused():
    with pytest.raises(OnehciError, match="the lab needs Linux .* this is Darwin"):
        core.check_host(euid=0, system="Darwin")


def test_missing_tools_name_the_apt_command():
    have = {"losetup", "nsenter", "ip", "ssh", "ssh-keygen"}
    with pytest.raises(OnehciError) as err:
        core.check_host(euid=0, system="Linux", which=lambda t: f"/usr/bin/{t}" if t in have else None)
    assert str(err.value) == ("missing systemd-nspawn, debootstrap: install with "
                              "`apt-get install systemd-container debootstrap`")


def test_interface_names_fit_linux_limits_and_are_stable():
    assert core.veth_name("lab1") == "vl-lab1"
    long = core.veth_name("a-very-long-hostname-indeed")
    assert len(long) <= 15 and long == core.veth_name("a-very-long-hostname-indeed")
    assert long != core.veth_name("a-very-long-hostname-indeed2")
    assert core.netns_name("lab2") == "onehci-lab2"


def test_disk_names_as_the_site_gives_them():
    assert disks.by_id_path({"serial": "lab1-chunk1"}) == "/dev/disk/by-id/virtio-lab1-chunk1"
    assert disks.by_id_path("/dev/disk/by-id/ata-X_1") == "/dev/disk/by-id/ata-X_1"


def test_base_image_key_follows_suite_and_packages():
    assert base.key() == base.key(packages=tuple(reversed(base.PACKAGES)))  # order does not matter
    assert base.key() != base.key(packages=(*base.PACKAGES, "vim"))
    assert base.key() != base.key(suite="trixie")


def test_a_process_is_known_by_pid_and_start_time():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    me = procs.identify(child.pid)
    assert procs.alive(me)
    assert not procs.alive(procs.Proc(me.pid, me.start + 1))  # a recycled PID is not ours
    procs.stop([me], timeout=5)
    assert not procs.alive(me)  # reaped, not left as a zombie that looks alive
    assert procs.Proc.from_dict(me.as_dict()) == me


def _node_files(**overrides) -> rootfs.NodeFiles:
    values = dict(hostname="lab1", fqdn="lab1.lab.test", hosts=[("10.71.0.11", "lab1.lab.test", "lab1")],
                  authorized_keys=["ssh-ed25519 AAAA tech"], mirror="http://deb.debian.org/debian",
                  proxy="http://10.71.0.1:3142", dns=["10.71.0.1"],
                  disks={"/dev/disk/by-id/virtio-lab1-chunk1": "/dev/loop7"})
    return rootfs.NodeFiles(**{**values, **overrides})


def test_node_files(tmp_path):
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/machine-id").write_text("")
    rootfs.configure(tmp_path, _node_files())
    etc = tmp_path / "etc"
    assert (etc / "hostname").read_text() == "lab1\n"
    assert "10.71.0.11\tlab1.lab.test lab1\n" in (etc / "hosts").read_text()
    assert len((etc / "machine-id").read_text().strip()) == 32
    assert (etc / "apt/apt.conf.d/00onehci-proxy").read_text() == 'Acquire::http::Proxy "http://10.71.0.1:3142/";\n'
    assert (etc / "apt/sources.list").read_text().startswith("deb http://deb.debian.org/debian bookworm main")
    assert (etc / "ssh/ssh_host_ed25519_key").exists()
    keys = tmp_path / "root/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA tech\n" and keys.stat().st_mode & 0o777 == 0o600
    unit = (etc / "systemd/system" / rootfs.DISK_UNIT).read_text()
    assert "ExecStart=/bin/ln -sfn /dev/loop7 /dev/disk/by-id/virtio-lab1-chunk1\n" in unit
    assert "ExecStart=/bin/mount -a -O no_netdev\n" in unit  # systemd skips fstab devices in containers
    assert (etc / "systemd/system/sysinit.target.wants" / rootfs.DISK_UNIT).is_symlink()

    # a second pass over a running node rewrites nothing; without a proxy the setting goes
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    rootfs.configure(tmp_path, _node_files())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rootfs.configure(tmp_path, _node_files(proxy=None))
    assert not (etc / "apt/apt.conf.d/00onehci-proxy").exists()


def test_site_or_profile_not_both(tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("format: 1\n")
    result = CliRunner().invoke(cli, ["lab", "status", str(site), "--profile", "lab"])
    assert (result.exit_code, result.output) == (1, "error: give a SITE file or --profile, not both\n")
    result = CliRunner().invoke(cli, ["lab", "status", "--profile", "nosuch"])
    assert result.exit_code == 1 and result.output.startswith("error: no profile named 'nosuch'; choose one of: ")

"""installer/image.py without building one (tests/bootchain/test_image_install.py builds and installs the
real image): what it is keyed by, and the one-line refusals of `image show` and `pxe build`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from installer import image, pxe, sitefile
from installer.cli.main import cli
from installer.errors import OnehciError
from installer.resources import profiles


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEHCI_IMAGE", raising=False)
    monkeypatch.setattr(image, "CACHE", tmp_path / "cache")
    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    (tmp_path / "site.yml").write_text(profiles()["lab"].read_text())
    return sitefile.load(tmp_path / "site.yml")


def test_the_image_holds_the_union_of_the_nodes_packages_and_a_bootable_system(lab):
    wanted = image.packages_for(lab.site)
    for package in ("openssh-server", "python3", "qemu-system-x86", "linux-image-amd64", "grub-pc-bin",
                    "grub-efi-amd64-signed", "shim-signed", "fdisk", "zstd"):
        assert package in wanted
    without_kvm = lab.site.model_copy(update={"nodes": [n.model_copy(update={"roles": ["mfs_chunkserver"]})
                                                        for n in lab.site.nodes]})
    assert "qemu-system-x86" not in image.packages_for(without_kvm)
    assert image.system_key(without_kvm) != image.system_key(lab.site)


def test_the_key_follows_the_locale_and_the_installer_environment(lab, monkeypatch, tmp_path):
    other = lab.site.model_copy(update={"cluster": lab.site.cluster.model_copy(update={"locale": "de_DE.UTF-8"})})
    assert image.system_key(other) != image.system_key(lab.site)
    before = image.key(lab.site)
    fake = tmp_path / "installenv"
    (fake / "scripts").mkdir(parents=True)
    (fake / "scripts/onehci").write_text("changed\n")
    monkeypatch.setattr(image, "data_dir", lambda name: fake)
    assert image.key(lab.site) != before and image.system_key(lab.site) == image.system_key(lab.site)


def test_a_missing_image_is_one_line_and_pxe_build_writes_nothing(lab, tmp_path):
    shown = CliRunner().invoke(cli, ["image", "show", str(lab.path)])
    assert shown.exit_code == 1
    assert shown.output.strip().splitlines() == [
        f"error: no node image built for this site's content: run `onehci image build {lab.path}`"]
    with pytest.raises(OnehciError, match=r"run `onehci image build .*site.yml` first"):
        pxe.build(lab, tmp_path / "pxe")
    assert not (tmp_path / "pxe").exists()


def test_image_show_reads_a_built_one(fake_image, monkeypatch, lab):
    monkeypatch.setenv("ONEHCI_IMAGE", str(fake_image))
    shown = CliRunner().invoke(cli, ["image", "show", "--json", str(lab.path)])
    assert shown.exit_code == 0, shown.output
    assert '"kernel": "6.1.0-0-amd64"' in shown.output


def test_an_interrupted_build_leaves_no_mount_behind(tmp_path, monkeypatch):
    """A build stopped while its chroot's /proc is mounted: the scratch directory goes, mounts first."""
    import os
    from pathlib import Path

    assert os.geteuid() == 0, "mounting needs root"
    monkeypatch.setattr(image.tempfile, "mkdtemp", lambda **_: str(tmp_path / "work"))
    (tmp_path / "work/root/proc").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt):
        with image._building(tmp_path / "target") as work:
            image.subprocess.run(["mount", "-t", "proc", "proc", str(work / "root/proc")], check=True)
            raise KeyboardInterrupt
    assert str(tmp_path / "work") not in Path("/proc/self/mounts").read_text()
    assert not (tmp_path / "work").exists() and not (tmp_path / "target").exists()

"""OpenNebula's packages built from its source (installer/lab/onebuild.py): what refuses before
anything is built, how staged files are split into packages, and the cache key. The build itself
runs once per machine for the lab tests (tests/lab/test_opennebula_packages.py checks its
packages)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from installer.errors import OnehciError
from installer.lab import onebuild


def test_a_tarball_with_another_checksum_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(onebuild, "CACHE", tmp_path / "cache")
    fake = tmp_path / onebuild.SOURCE_NAME
    fake.write_bytes(b"not OpenNebula")
    with pytest.raises(OnehciError) as err:
        onebuild.ensure(fake)
    message = str(err.value)
    assert message.startswith(f"{fake} has sha256 {onebuild.sha256(fake)}, not {onebuild.SOURCE_SHA256}")
    assert "nothing was built or published" in message
    assert not (tmp_path / "cache").exists()


def test_a_missing_tarball_says_where_it_was_looked_for(tmp_path):
    with pytest.raises(OnehciError, match="ONEHCI_OPENNEBULA_SOURCE"):
        onebuild.check_source(tmp_path / "nowhere.tar.gz")


def test_missing_build_dependencies_are_named_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(onebuild, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(onebuild, "check_source", lambda source: None)
    monkeypatch.setattr(onebuild, "_installed", lambda package: package not in ("scons", "libsystemd-dev"))
    with pytest.raises(OnehciError) as err:
        onebuild.ensure(tmp_path / "any.tar.gz")
    assert str(err.value).startswith("missing build dependencies of OpenNebula: scons, libsystemd-dev "
                                     "(install with `apt-get install scons libsystemd-dev`")
    assert not (tmp_path / "cache").exists()


def test_every_build_dependency_is_installed_by_setup():
    """scripts/setup.sh installs scripts/apt-packages.txt: a build on a clean machine finds them."""
    text = (Path(__file__).parents[3] / "scripts/apt-packages.txt").read_text()
    listed = {line.split("#")[0].strip() for line in text.splitlines()} - {""}
    assert set(onebuild.BUILD_DEPENDS) <= listed, set(onebuild.BUILD_DEPENDS) - listed


@pytest.mark.parametrize("path,package", [
    ("usr/bin/oned", "opennebula"),
    ("usr/bin/onehost", "opennebula-tools"),
    ("usr/lib/one/ruby/cli/one_helper.rb", "opennebula-tools"),
    ("usr/lib/one/ruby/opennebula/host.rb", "opennebula-libs"),
    ("usr/lib/one/ruby/onedb/onedb.rb", "opennebula"),  # the more precise claim wins
    ("var/lib/one/remotes/im/kvm.d/monitord-client_control.sh", "opennebula"),
    ("etc/one/oned.conf", "opennebula"),
    ("etc/one/cli/onehost.yaml", "opennebula-tools"),
    ("etc/one/fireedge-server.conf", "opennebula-fireedge"),
    ("etc/sudoers.d/opennebula-node-kvm", "opennebula-node-kvm"),
    ("etc/sudoers.d/opennebula", "opennebula-common"),
    ("usr/lib/ruby/vendor_ruby/load_opennebula_paths.rb", "opennebula-common"),
    ("lib/systemd/system/opennebula.service", "opennebula"),
    ("lib/systemd/system/opennebula-fireedge.service", "opennebula-fireedge"),
    ("var/lib/one/datastores/0/x", None),  # the MooseFS mount on a node: never package content
    ("usr/bin/onegate-server", None),
    ("lib/systemd/system/opennebula-prometheus.service", None),
])
def test_each_staged_file_goes_to_one_package(path, package):
    assert onebuild.owner(path, onebuild.PACKAGES) == package


def test_split_copies_files_and_links_and_lists_what_it_left(tmp_path):
    stage = tmp_path / "stage"
    (stage / "usr/bin").mkdir(parents=True)
    (stage / "usr/bin/oned").write_text("daemon")
    (stage / "usr/bin/onehost").write_text("cli")
    (stage / "usr/bin/onegate-server").write_text("not deployed")
    (stage / "var/lib/one/remotes/vnm").mkdir(parents=True)
    (stage / "var/lib/one/remotes/vnm/link").symlink_to("../tm")
    roots, left = onebuild.split(stage, tmp_path / "pkg", onebuild.PACKAGES)
    assert (roots["opennebula"] / "usr/bin/oned").read_text() == "daemon"
    assert (roots["opennebula-tools"] / "usr/bin/onehost").read_text() == "cli"
    assert (roots["opennebula"] / "var/lib/one/remotes/vnm/link").readlink().as_posix() == "../tm"
    assert left == ["usr/bin/onegate-server"]


def test_the_cache_key_follows_the_source_the_patches_and_the_recipe(tmp_path):
    base = onebuild.build_key()
    assert onebuild.build_key() == base
    assert onebuild.build_key(source_sha256="0" * 64) != base
    assert onebuild.build_key(recipe=onebuild.RECIPE + 1) != base
    assert onebuild.build_key(fireedge=True) != base
    copies = [tmp_path / p.name for p in onebuild.patches()]
    for original, copy in zip(onebuild.patches(), copies):
        shutil.copyfile(original, copy)
    assert onebuild.build_key(patch_files=copies) == base
    copies[0].write_text(copies[0].read_text() + "\n")
    assert onebuild.build_key(patch_files=copies) != base
    assert onebuild.build_key(patch_files=copies[1:]) != base  # a patch fewer


def test_versions_say_where_they_come_from_and_lose_to_opennebulas_own():
    import subprocess

    ours = f"{onebuild.VERSION}-{onebuild.REVISION}"
    assert "onehci" in ours
    # dpkg's own comparison: OpenNebula's 7.0.2-1 upgrades ours
    assert subprocess.run(["dpkg", "--compare-versions", ours, "lt", f"{onebuild.VERSION}-1"]).returncode == 0


def test_a_build_that_fails_names_the_step_and_keeps_the_cached_build(tmp_path, monkeypatch):
    """A patch that does not apply to the real source: one line naming it and its log; the
    packages an earlier build left in the cache stay as they were, and nothing else is added."""
    source = onebuild.default_source()
    monkeypatch.setattr(onebuild, "CACHE", tmp_path / "cache")
    bad = tmp_path / "0002-does-not-apply.patch"
    bad.write_text("--- a/SConstruct\n+++ b/SConstruct\n@@ -1,1 +1,1 @@\n-no such line\n+other line\n")
    monkeypatch.setattr(onebuild, "patches", lambda: [*sorted((onebuild.DATA / "patches").glob("*.patch")), bad])
    earlier = tmp_path / "cache" / f"{onebuild.VERSION}-earlier"
    earlier.mkdir(parents=True)
    (earlier / "manifest.json").write_text("{}")
    with pytest.raises(OnehciError) as err:
        onebuild.ensure(source)
    message = str(err.value)
    assert message.startswith("the patch 0002-does-not-apply.patch failed (exit 1): ")
    assert "nothing was published and an earlier build is kept" in message and "build.log" in message
    cache = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert cache == [earlier.name, f"stage-{onebuild.VERSION}-{onebuild.stage_key()}.partial"]  # no build added
    assert (earlier / "manifest.json").read_text() == "{}"

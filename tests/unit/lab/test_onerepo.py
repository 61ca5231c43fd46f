"""The lab's OpenNebula repository (installer/lab/onerepo.py): published in the layout of
OpenNebula's own, signed, and read by a real apt that checks the signature; a newer build sits
beside the old one; the server that serves it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from installer.errors import OnehciError
from installer.lab import onerepo, procs


def make_deb(where: Path, name: str, version: str) -> Path:
    root = where / f"{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                                         "Maintainer: test <root@localhost>\nDescription: test package\n")
    (root / "usr/share/doc" / name).mkdir(parents=True)
    (root / "usr/share/doc" / name / "README").write_text(version)
    deb = where / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def gnupg(tmp_path, monkeypatch):
    monkeypatch.setattr(onerepo, "GNUPG_HOME", tmp_path / "gnupg")
    return tmp_path / "gnupg"


def apt_policy(tmp_path: Path, repo: Path, key: Path) -> str:
    """What a real apt sees in REPO with KEY as signed-by, in a private apt state directory."""
    root = tmp_path / "apt"
    for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/preferences.d", "status"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "status/status").write_text("")
    line = f"deb [signed-by={key}] file:{repo} {onerepo.SUITE} {onerepo.COMPONENT}\n"
    options = ["-o", f"Dir::State={root}", "-o", f"Dir::State::Lists={root}/lists", "-o", f"Dir::Cache={root}/cache",
               "-o", f"Dir::State::status={root}/status/status", "-o", f"Dir::Etc::SourceList={root}/etc/x.list",
               "-o", f"Dir::Etc::SourceParts={root}/etc/sources.list.d", "-o", "Debug::NoLocking=1",
               "-o", f"Dir::Etc::Preferences={root}/etc/preferences", "-o", f"Dir::Etc::PreferencesParts={root}/etc/preferences.d"]
    (root / "etc/x.list").write_text(line)
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True)
    assert update.returncode == 0 and "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr, \
        update.stdout + update.stderr
    return subprocess.run(["apt-cache", *options, "policy", "onehci-test"], capture_output=True, text=True,
                          check=True).stdout + update.stderr


def test_published_repository_is_signed_and_apt_reads_it(tmp_path, gnupg):
    repo = onerepo.publish([make_deb(tmp_path, "onehci-test", "7.0.2-1~onehci1")], tmp_path / "repo")
    assert (repo / f"dists/{onerepo.SUITE}/InRelease").read_text().startswith("-----BEGIN PGP SIGNED MESSAGE")
    assert (repo / f"pool/{onerepo.COMPONENT}/onehci-test_7.0.2-1~onehci1_all.deb").exists()
    key = repo / onerepo.KEY_FILE
    assert key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK")
    policy = apt_policy(tmp_path, repo, key)
    assert "Candidate: 7.0.2-1~onehci1" in policy, policy
    assert oct(gnupg.stat().st_mode & 0o777) == "0o700"


def test_a_newer_build_sits_beside_the_old_one_and_wins(tmp_path, gnupg):
    old = make_deb(tmp_path, "onehci-test", "7.0.2-1~onehci1")
    repo = onerepo.publish([old], tmp_path / "repo")
    first_key = (repo / onerepo.KEY_FILE).read_bytes()
    onerepo.publish([old, make_deb(tmp_path, "onehci-test", "7.0.2-1~onehci2")], repo)
    assert (repo / onerepo.KEY_FILE).read_bytes() == first_key  # the key nodes fetched stays valid
    policy = apt_policy(tmp_path, repo, repo / onerepo.KEY_FILE)
    assert "Candidate: 7.0.2-1~onehci2" in policy and "7.0.2-1~onehci1" in policy, policy


def test_a_repository_signed_by_another_key_is_refused_by_apt(tmp_path, gnupg, monkeypatch):
    repo = onerepo.publish([make_deb(tmp_path, "onehci-test", "1.0")], tmp_path / "repo")
    monkeypatch.setattr(onerepo, "GNUPG_HOME", tmp_path / "other-gnupg")
    other = tmp_path / "other.asc"
    other.write_bytes(onerepo.signing_key())
    with pytest.raises(AssertionError, match="NO_PUBKEY|not signed|signature"):
        apt_policy(tmp_path, repo, other)


def test_the_record_the_roles_get_points_at_the_key_and_bypasses_the_proxy():
    record = onerepo.record("10.71.0.1")
    assert record == {"url": "http://10.71.0.1:8633/", "suite": "stable", "components": ["opennebula"],
                      "key_url": "http://10.71.0.1:8633/repo.key", "direct": True}


def test_serve_answers_then_stops_and_refuses_a_taken_port(tmp_path, gnupg):
    repo = onerepo.publish([make_deb(tmp_path, "onehci-test", "1.0")], tmp_path / "repo")
    proc = onerepo.serve(repo, "127.0.0.1", tmp_path / "http.log", port=18633)
    try:
        import urllib.request

        with urllib.request.urlopen("http://127.0.0.1:18633/repo.key", timeout=5) as answer:
            assert answer.read() == (repo / onerepo.KEY_FILE).read_bytes()
        with pytest.raises(OnehciError, match="already listens on 127.0.0.1:18633"):
            onerepo.serve(repo, "127.0.0.1", tmp_path / "http2.log", port=18633)
    finally:
        procs.stop([proc], 15, timeout=10)
    assert not procs.alive(proc)

"""Where a lab gets OpenNebula from (installer/lab/onerepo.py): the choice, the stand-in's
record for the roles, the HTTP server that serves it; and what the inventory carries for the
OpenNebula roles. No container, no root, no traffic beyond this machine."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from installer import sitefile
from installer.errors import OnehciError
from installer.inventory import build_inventory
from installer.lab import onerepo, procs
from installer.plan import make_plan
from installer.resources import profiles


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_standin_flag_chooses_the_standin_without_probing():
    def probe():
        raise AssertionError("--standin must not contact OpenNebula's repository")

    kind, why = onerepo.choose(True, probe)
    assert kind == "standin" and "--standin" in why


def test_reachable_official_repository_is_chosen_and_said():
    kind, why = onerepo.choose(False, lambda: True)
    assert kind == "official" and onerepo.OFFICIAL in why


def test_unreachable_official_repository_falls_back_to_the_standin_and_says_why():
    kind, why = onerepo.choose(False, lambda: False)
    assert kind == "standin" and "did not answer" in why


def test_probe_of_a_closed_port_answers_false_at_once():
    assert onerepo.official_reachable(f"http://127.0.0.1:{free_port()}/repo", timeout=1) is False


def test_standin_record_is_a_flat_unsigned_repository_fetched_directly():
    assert onerepo.standin_record("10.77.0.1") == {
        "url": "http://10.77.0.1:8633/", "suite": "./", "components": [], "trusted": True, "direct": True}


def test_serve_answers_the_repository_then_stops(tmp_path):
    repo = tmp_path / "repo"
    (repo / "dists" / "stable").mkdir(parents=True)
    (repo / "Packages").write_text("Package: opennebula\n")
    (repo / "dists" / "stable" / "Release").write_text("Origin: test\n")
    port = free_port()
    server = onerepo.serve(repo, "127.0.0.1", tmp_path / "http.log", port=port)
    try:
        assert procs.alive(server)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/Packages", timeout=5) as answer:
            assert answer.read() == b"Package: opennebula\n"
        # the probe finds a repository that answers
        assert onerepo.official_reachable(f"http://127.0.0.1:{port}", timeout=2) is True
        with pytest.raises(OnehciError, match=f"already listens on 127.0.0.1:{port}"):
            onerepo.serve(repo, "127.0.0.1", tmp_path / "http2.log", port=port)
    finally:
        procs.stop([server])
    assert not procs.alive(server)


def test_inventory_carries_the_bridge_the_password_path_and_the_repository():
    site = sitefile.load(profiles()["lab"]).site
    repo = onerepo.standin_record("10.71.0.1")
    inv = build_inventory(site, make_plan(site), oneadmin_password_file="/state/secrets/oneadmin_password",
                          opennebula_repo=repo)
    allvars = inv["all"]["vars"]
    assert allvars["onehci_vms_bridge"] == "br0"
    assert allvars["onehci_oneadmin_password_file"] == "/state/secrets/oneadmin_password"
    assert allvars["onehci_opennebula_repo"] == repo
    plain = build_inventory(site, make_plan(site))["all"]["vars"]
    assert "onehci_opennebula_repo" not in plain and "onehci_oneadmin_password_file" not in plain


def test_deploy_inventory_names_the_password_file_never_the_password(tmp_path, monkeypatch):
    from installer import state
    from installer.deploy import inventory_for

    monkeypatch.delenv("ONEHCI_STATE_DIR", raising=False)
    path = tmp_path / "site.yml"
    path.write_text(profiles()["lab"].read_text().replace("name: lab\n", "name: onerepo-test\n"))
    inv = inventory_for(sitefile.load(path))
    password = state.oneadmin_password(path)
    assert inv["all"]["vars"]["onehci_oneadmin_password_file"] == str(state.oneadmin_password_file(path))
    assert password not in json.dumps(inv)
    assert "onehci_opennebula_repo" not in inv["all"]["vars"]  # no lab: OpenNebula's own repository

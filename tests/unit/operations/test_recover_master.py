"""The pure parts of `onehci recover-master` (installer/operations/recover_master.py): metadata
versions read from files and mfscli, the metalogger's files renamed for the master, stale
chunkservers, and the site file edit that moves mfs_master."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from installer import yamlpos
from installer.errors import OnehciError
from installer.operations import recover_master as rm


def test_image_version_reads_the_big_endian_header():
    header = (b"MFSM 2.0" + (300).to_bytes(8, "big")).hex()
    assert rm.image_version(header) == 300
    assert rm.image_version(b"MFSM NEW".hex()) == 0
    assert rm.image_version(b"NOTMFS..12345678".hex()) is None


def test_disk_version_is_the_next_change_after_image_and_changelogs():
    listing = (f"image metadata.mfs.back {(b'MFSM 2.0' + (2).to_bytes(8, 'big')).hex()}\n"
               "log changelog.0.mfs 20\nlog changelog.1.mfs 7\nlog changelog.2.mfs \nnoise\n")
    version, found = rm.disk_version(listing)
    assert version == 21
    assert found == {"metadata.mfs.back": 2, "changelog.0.mfs": 21, "changelog.1.mfs": 8}
    assert rm.disk_version("") == (0, {})


def test_master_version_comes_from_the_metadata_servers_row():
    sim = "metadata servers:|10.77.0.12|3.0.117|-|1795691293.977876|29|not available|476004352|x|-|-|-|6D0\n"
    assert rm.master_version(sim) == 29
    assert rm.master_version("nothing here\n") is None


def test_disconnected_chunkservers_only():
    cs = ("chunk servers:|10.77.0.11|9422|2|-|3.0.117|0|maintenance_off|3|1|2|-|0|0|0\n\n"
          "Disconnected chunk servers:|10.77.0.12|9422|1|maintenance_off\n")
    assert rm.disconnected(cs) == [("10.77.0.12", 9422)]
    assert rm.disconnected(cs.splitlines()[0]) == []


def test_promotion_copies_rename_metalogger_files_without_clashes():
    names = ["metadata_ml.mfs.back", "metadata_ml.mfs.back.1", "changelog_ml.0.mfs", "changelog_ml.1.mfs",
             "changelog_ml_back.0.mfs", "changelog_ml_back.1.mfs", "chunkserverid.mfs"]
    copies = rm.promotion_copies(names)
    assert copies == [("metadata_ml.mfs.back", "metadata.mfs.back"), ("changelog_ml.0.mfs", "changelog.0.mfs"),
                      ("changelog_ml.1.mfs", "changelog.1.mfs"), ("changelog_ml_back.0.mfs", "changelog.2.mfs"),
                      ("changelog_ml_back.1.mfs", "changelog.3.mfs")]
    assert len({d for _, d in copies}) == len(copies)
    assert rm.promotion_copies(["changelog_ml.0.mfs"]) == []  # no image: nothing to promote from


FLOW = """# a comment that stays
nodes:
  - hostname: a
    roles: [frontend, mfs_master, kvm]   # the master
  - hostname: b
    roles: [kvm, mfs_metalogger]
"""

BLOCK = """nodes:
  - hostname: a
    roles:
      - mfs_master
      - kvm
  - hostname: b
    roles:
      - kvm   # host
      - mfs_metalogger
"""


def roles_of(text: str) -> dict:
    return {n["hostname"]: n["roles"] for n in yamlpos.parse(text).data["nodes"]}


def test_move_role_in_flow_lists_keeps_everything_else():
    out = rm.move_role_text(FLOW, "mfs_master", "a", "b")
    assert roles_of(out) == {"a": ["frontend", "kvm"], "b": ["kvm", "mfs_metalogger", "mfs_master"]}
    assert "# a comment that stays" in out and "# the master" in out
    assert rm.move_role_text(out, "mfs_master", "a", "b") == out  # twice: nothing more changes


def test_move_role_in_block_lists():
    out = rm.move_role_text(BLOCK, "mfs_master", "a", "b")
    assert roles_of(out) == {"a": ["kvm"], "b": ["kvm", "mfs_metalogger", "mfs_master"]}
    assert "# host" in out


def test_move_role_refuses_what_it_cannot_edit():
    with pytest.raises(OnehciError, match="not a node"):
        rm.move_role_text(FLOW, "mfs_master", "a", "zz")
    multi = FLOW.replace("[frontend, mfs_master, kvm]", "[frontend,\n      mfs_master, kvm]")
    with pytest.raises(OnehciError, match="several lines"):
        rm.move_role_text(multi, "mfs_master", "a", "b")
    alone = "nodes:\n  - hostname: a\n    roles:\n      - mfs_master\n  - hostname: b\n    roles: [kvm]\n"
    with pytest.raises(OnehciError, match="does not edit"):
        rm.move_role_text(alone, "mfs_master", "a", "b")


def test_cli_refuses_a_promotion_without_confirmation_in_a_script(tmp_path):
    from click.testing import CliRunner

    from installer.cli.main import cli

    result = CliRunner().invoke(cli, ["recover-master", str(tmp_path / "site.yml"), "--from", "rec3"])
    assert result.exit_code == 2
    assert "--yes" in result.output


class _Node:
    def __init__(self, hostname, ip):
        self.hostname, self.ip = hostname, ip


class _Plan:
    def __init__(self, *nodes):
        self.nodes = {n.hostname: n for n in nodes}
        self.moosefs = SimpleNamespace(metaloggers=list(self.nodes))

    def node(self, hostname):
        return self.nodes[hostname]


def _recovery(monkeypatch, connected: list[str], logs: dict[str, int]):
    """A Recovery whose master (m1) has metaloggers l1 (10.0.0.2) and l2 (10.0.0.3): CONNECTED are
    the addresses the master lists, LOGS the last changelog entry each one's files hold."""
    said: list[str] = []
    work = object.__new__(rm.Recovery)
    work.loaded, work.say = SimpleNamespace(site=None), said.append
    work.new = _Node("m1", "10.0.0.1")
    monkeypatch.setattr(rm, "make_plan", lambda site: _Plan(work.new, _Node("l1", "10.0.0.2"), _Node("l2", "10.0.0.3")))
    monkeypatch.setattr(rm.remote, "alive", lambda loaded, ip, timeout=None: True)
    monkeypatch.setattr(rm.mfs, "health", lambda ip: SimpleNamespace(metaloggers=connected))
    monkeypatch.setattr(rm, "METALOGGER_WAIT", 0)
    work.sh = lambda node, script, what: f"log changelog_ml.0.mfs {logs[node.hostname]}\n"
    return work, said


def test_metaloggers_that_hold_the_masters_changes_are_caught_up(monkeypatch):
    work, said = _recovery(monkeypatch, ["10.0.0.2", "10.0.0.3"], {"l1": 40, "l2": 44})
    state = work.metaloggers(41)  # the master's next change is 41: entry 40 is its last
    assert state == {"l1": {"connected": True, "version": 41, "caught_up": True},
                     "l2": {"connected": True, "version": 45, "caught_up": True}}
    assert not any("warning" in line for line in said)


def test_metaloggers_behind_or_not_connected_are_reported(monkeypatch):
    work, said = _recovery(monkeypatch, ["10.0.0.3"], {"l1": 40, "l2": 35})
    state = work.metaloggers(41)
    assert not state["l1"]["caught_up"] and not state["l1"]["connected"]
    assert state["l2"] == {"connected": True, "version": 36, "caught_up": False}
    warnings = [line for line in said if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "l1 is not connected" in warnings[0]
    assert "l2 holds metadata up to version 36, the master 41" in warnings[1] and "promotion" in warnings[1]

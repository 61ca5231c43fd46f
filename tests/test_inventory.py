"""The inventory handed to the roles: groups from roles, addresses from the plan, no secret."""

from __future__ import annotations

import json

from installer import sitefile
from installer.inventory import build_inventory
from installer.plan import make_plan
from installer.resources import profiles


def _inventory(profile: str, **kw) -> dict:
    site = sitefile.load(profiles()[profile]).site
    return build_inventory(site, make_plan(site), **kw)


def test_groups_follow_roles_five_node():
    inv = _inventory("five-node")
    children = inv["all"]["children"]
    assert list(children["mfs_master"]["hosts"]) == ["nebula80"]
    assert list(children["mfs_metalogger"]["hosts"]) == ["nebula81", "nebula82"]
    assert list(children["mfs_chunkserver"]["hosts"]) == ["nebula81", "nebula82", "nebula83", "nebula84"]
    assert list(children["mfs_client"]["hosts"]) == ["nebula80", "nebula81", "nebula82", "nebula83", "nebula84"]
    assert list(children["frontend"]["hosts"]) == ["nebula80"]


def test_host_and_group_vars_lab():
    inv = _inventory("lab", ssh_key="/state/lab/id_ed25519", known_hosts="/state/known_hosts",
                     format_consent=["serial:lab2-chunk1"])
    lab2 = inv["all"]["hosts"]["lab2"]
    assert lab2["ansible_host"] == "10.71.0.12" and lab2["onehci_chunk_disks"] == [{"serial": "lab2-chunk1"}]
    allvars = inv["all"]["vars"]
    assert allvars["onehci_mfsmaster_ip"] == "10.71.0.11"
    assert allvars["onehci_apt_proxy"] == "http://10.71.0.1:3142"
    assert allvars["onehci_cluster_networks"] == ["10.71.0.0/24"]
    assert allvars["onehci_format_consent"] == ["serial:lab2-chunk1"]
    assert "UserKnownHostsFile=/state/known_hosts" in allvars["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=accept-new" in allvars["ansible_ssh_common_args"]
    assert allvars["ansible_ssh_private_key_file"] == "/state/lab/id_ed25519"


def test_no_password_hash_or_key_content_in_inventory(tmp_path):
    from installer.passwords import sha512_crypt

    hashed = sha512_crypt("pw")
    text = profiles()["lab"].read_text().replace("storage:", f'  root_password_hash: "{hashed}"\nstorage:')
    (tmp_path / "site.yml").write_text(text)
    site = sitefile.load(tmp_path / "site.yml").site
    dumped = json.dumps(build_inventory(site, make_plan(site)))
    assert hashed not in dumped and "PRIVATE" not in dumped


def test_a_drain_in_progress_and_the_labs_master_options_reach_the_roles():
    inv = _inventory("lab", marked={"lab3": ["serial:lab3-chunk1"]}, role_vars={"moosefs_master__options": {"CHUNKS_LOOP_MIN_TIME": 60}})
    hosts = inv["all"]["hosts"]
    assert hosts["lab3"]["moosefs_chunkserver__marked_for_removal"] == ["serial:lab3-chunk1"]
    assert "moosefs_chunkserver__marked_for_removal" not in hosts["lab2"]
    assert inv["all"]["vars"]["moosefs_master__options"] == {"CHUNKS_LOOP_MIN_TIME": 60}
    assert "moosefs_master__options" not in _inventory("lab")["all"]["vars"]  # a real site: MooseFS's defaults

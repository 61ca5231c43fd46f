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


def test_ansible_playbook_never_evaluates_a_template_from_the_inventory(tmp_path):
    """End to end with ansible-playbook itself: a lookup in a value is printed, not run."""
    import subprocess
    import sys
    from pathlib import Path

    from installer.inventory import to_yaml

    marker = tmp_path / "ran"
    probe = f"{{{{ lookup('pipe', 'touch {marker} && echo EVALUATED') }}}}"
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local", "probe": probe}},
                         "vars": {"ansible_python_interpreter": sys.executable}}}
    (tmp_path / "inventory.yml").write_text(to_yaml(inventory))
    (tmp_path / "play.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - ansible.builtin.debug:\n        var: probe\n")
    run = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "inventory.yml"),
                          str(tmp_path / "play.yml")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "EVALUATED" not in run.stdout.replace("echo EVALUATED", "") and not marker.exists()
    assert "lookup('pipe'" in run.stdout

"""installer/ansible.py with a real ansible-runner run on this machine (local connection):
progress lines from events, the per-host recap, failures named by host and task."""

from __future__ import annotations

import sys

import pytest

from installer import ansible
from installer.errors import OnehciError

PLAYBOOK = """\
- name: Two hosts, one task that changes, one that fails on one host
  hosts: all
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        dest: "{{ workdir }}/{{ inventory_hostname }}.txt"
        content: "hello\\n"
        mode: "0644"
    - name: Fail on beta only
      ansible.builtin.fail:
        msg: "beta is broken on purpose"
      when: inventory_hostname == 'beta'
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEHCI_STATE_DIR", str(tmp_path / "state"))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"hosts": {"alpha": dict(local), "beta": dict(local)}, "vars": {"workdir": str(tmp_path)}}}
    return tmp_path, playbook, inventory


def test_progress_recap_and_failure(setup):
    tmp_path, playbook, inventory = setup
    lines = []
    result = ansible.run_playbook(tmp_path / "site.yml", inventory, str(playbook), say=lines.append)
    assert result.run_dir.parent == tmp_path / "state" / "runs"
    assert "PLAY Two hosts, one task that changes, one that fails on one host" in lines
    assert "  TASK Write a file" in lines
    assert {"    changed: alpha", "    changed: beta"} <= set(lines)
    assert "    FAILED: beta: beta is broken on purpose" in lines
    assert result.recap["alpha"].changed == 1 and result.recap["alpha"].failed == 0
    assert result.recap["beta"].failed == 1
    with pytest.raises(OnehciError, match="beta: task 'Fail on beta only' failed: beta is broken on purpose"):
        ansible.raise_for_failure(result)


def test_second_run_changes_nothing_and_limit_works(setup):
    tmp_path, playbook, inventory = setup
    ansible.run_playbook(tmp_path / "site.yml", inventory, str(playbook), say=lambda _: None, limit=["alpha"])
    again = ansible.run_playbook(tmp_path / "site.yml", inventory, str(playbook), say=lambda _: None, limit=["alpha"])
    assert list(again.recap) == ["alpha"] and again.changed == 0
    ansible.raise_for_failure(again)

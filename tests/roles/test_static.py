"""Static checks of roles/ and playbooks/: syntax, ansible-lint (production profile), every task
named, templates rendered with the roles' defaults and the test inventory, and no MooseFS export
open to everyone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

BIN = Path(sys.executable).parent
ROLES = REPO / "roles"
PLAYBOOKS = REPO / "playbooks"
INVENTORY = REPO / "tests" / "fixtures" / "inventory.yml"
MOOSEFS_ROLES = ("moosefs_master", "moosefs_metalogger", "moosefs_chunkserver", "moosefs_client")
OPENNEBULA_ROLES = ("opennebula_repo", "opennebula_frontend", "opennebula_node", "opennebula_ssh")
ALL_ROLES = ("common", *MOOSEFS_ROLES, *OPENNEBULA_ROLES)


def ansible_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update({"ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{env.get('PATH', '')}"})
    return env


# --- every task named ---------------------------------------------------------------------------

TASK_KEYS = ("block", "rescue", "always")


def unnamed_tasks(tasks, where: str) -> list[str]:
    """Places of tasks (and blocks) without a name, recursing into blocks."""
    missing = []
    for i, task in enumerate(tasks or []):
        if not isinstance(task, dict):
            continue
        if not task.get("name"):
            missing.append(f"{where}[{i}] {sorted(task)[:3]}")
        for key in TASK_KEYS:
            missing += unnamed_tasks(task.get(key), f"{where}[{i}].{key}")
    return missing


def unnamed_in_playbook(plays, where: str) -> list[str]:
    missing = []
    for i, play in enumerate(plays or []):
        if not play.get("name"):
            missing.append(f"{where} play {i}")
        for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            missing += unnamed_tasks(play.get(key), f"{where} play {i} {key}")
    return missing


def task_files() -> list[Path]:
    return sorted(p for role in ALL_ROLES for sub in ("tasks", "handlers")
                  for p in (ROLES / role / sub).glob("*.yml"))


def test_every_role_task_and_handler_is_named():
    files = task_files()
    assert len(files) >= 2 * len(ALL_ROLES)  # tasks/main.yml and handlers/main.yml each
    missing = [m for f in files for m in unnamed_tasks(yaml.safe_load(f.read_text()), str(f.relative_to(REPO)))]
    assert missing == []


def molecule_playbooks() -> list[Path]:
    return sorted(p for p in ROLES.glob("*/molecule/*/*.yml") if p.name != "molecule.yml")


def test_every_play_and_playbook_task_is_named():
    files = [*sorted(PLAYBOOKS.glob("*.yml")), *molecule_playbooks()]
    missing = [m for f in files for m in unnamed_in_playbook(yaml.safe_load(f.read_text()), str(f.relative_to(REPO)))]
    assert missing == []


# --- Molecule scenarios (run on a lab by tests/lab/test_molecule.py) ----------------------------

@pytest.mark.parametrize("role", MOOSEFS_ROLES)
def test_every_moosefs_role_has_a_molecule_scenario_on_lab_nodes(role):
    scenario = ROLES / role / "molecule" / "default"
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    # Molecule makes no machine: the nodes are a lab's, the inventory `onehci inventory`'s
    assert config["driver"] == {"name": "default", "options": {"managed": False}}
    assert config["provisioner"]["inventory"]["links"]["hosts"].startswith("${ONEHCI_MOLECULE_INVENTORY:-")
    assert [s for s in config["scenario"]["test_sequence"] if s in ("prepare", "converge", "idempotence", "verify")] \
        == ["prepare", "converge", "idempotence", "verify"]
    # destroy first: with `managed: false` it only resets Molecule's state, so prepare always runs
    assert config["scenario"]["test_sequence"][0] == "destroy" and "create" not in config["scenario"]["test_sequence"]
    converge = yaml.safe_load((scenario / "converge.yml").read_text())
    assert [r["role"] for play in converge for r in play["roles"]] == [role]
    verify = yaml.safe_load((scenario / "verify.yml").read_text())
    asserts = [t for play in verify for t in play["tasks"] if "ansible.builtin.assert" in t]
    assert len(asserts) >= 2, "verify must check the state with asserts"


def test_molecule_playbooks_are_found():
    assert {p.relative_to(ROLES).parts[0] for p in molecule_playbooks()} >= set(MOOSEFS_ROLES)


def test_name_check_finds_unnamed_tasks_at_any_depth():
    tasks = yaml.safe_load("""
- name: named
  block:
    - ansible.builtin.debug: {msg: no name inside a block}
- ansible.builtin.command: true
""")
    assert len(unnamed_tasks(tasks, "x")) == 2
    assert unnamed_in_playbook([{"hosts": "all", "tasks": tasks}], "p")[0] == "p play 0"


# --- MooseFS exports --------------------------------------------------------------------------

# an export line whose address is `*` (anyone), as in the upstream example "*  /  rw,alldirs,admin,maproot=0:0"
OPEN_EXPORT = re.compile(r"^\s*(\*|0\.0\.0\.0/0)\s+\S+")


def open_exports(text: str) -> list[str]:
    return [line for line in text.splitlines() if OPEN_EXPORT.match(line)]


def test_no_role_file_ships_an_export_open_to_everyone():
    files = [p for p in ROLES.rglob("*") if p.is_file() and "mfsexports" in p.name]
    assert files, "the master role must write mfsexports.cfg"
    for path in files:
        assert open_exports(path.read_text()) == [], path


def test_open_export_check_catches_the_upstream_example():
    upstream = "# Allow everything but \"meta\".\n*\t\t\t/\trw,alldirs,admin,maproot=0:0\n*\t\t\t.\trw\n"
    assert len(open_exports(upstream)) == 2
    assert open_exports("10.71.0.0/24\t/\trw,alldirs,maproot=0\n") == []


# --- syntax and lint ----------------------------------------------------------------------------

def test_site_playbook_passes_syntax_check(tmp_path):
    run = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(INVENTORY),
                          str(PLAYBOOKS / "site.yml")], cwd=REPO, env=ansible_env(tmp_path),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_syntax_check_catches_a_broken_playbook(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("- name: Broken\n  hosts: all\n  roles:\n    - role: no_such_role\n")
    run = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(INVENTORY), str(broken)],
                         cwd=REPO, env=ansible_env(tmp_path), capture_output=True, text=True)
    assert run.returncode != 0


def lint(tmp_path, *paths: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = ansible_env(tmp_path)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production", *paths],
                          cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_roles_and_playbooks_are_ansible_lint_production_clean(tmp_path):
    run = lint(tmp_path, "roles", "playbooks")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "0 failure(s), 0 warning(s)" in out and "Profile 'production' was required, and it passed" in out, out


@pytest.mark.slow
def test_ansible_lint_reports_a_violation(tmp_path):
    project = tmp_path / "project"
    (project / "roles" / "bad" / "tasks").mkdir(parents=True)
    (project / "roles" / "bad" / "tasks" / "main.yml").write_text("---\n- command: echo unnamed\n")
    run = lint(tmp_path, "roles", cwd=project)
    assert run.returncode != 0
    assert "name[missing]" in run.stdout + run.stderr


# --- preflight: the inventory checks (no host is contacted) -----------------------------------

def preflight(tmp_path, change) -> subprocess.CompletedProcess:
    inventory = yaml.safe_load(INVENTORY.read_text())
    change(inventory["all"])
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(path), "--tags", "preflight_inventory",
                           "-e", "ansible_connection=local", str(PLAYBOOKS / "preflight.yml")],
                          cwd=REPO, env=ansible_env(tmp_path), capture_output=True, text=True)


def test_preflight_accepts_the_test_inventory(tmp_path):
    run = preflight(tmp_path, lambda inv: None)
    assert run.returncode == 0, run.stdout + run.stderr


def _two_masters(inv):
    inv["children"]["mfs_master"]["hosts"]["lab2"] = {}


def _goal_3(inv):
    inv["vars"]["onehci_goal"] = 3
    del inv["children"]["mfs_chunkserver"]["hosts"]["lab3"]


def _no_ip(inv):
    del inv["hosts"]["lab3"]["onehci_ip"]


def _wrong_master_ip(inv):
    inv["vars"]["onehci_mfsmaster_ip"] = "10.71.0.12"


def _no_networks(inv):
    inv["vars"]["onehci_cluster_networks"] = []


def _chunkserver_without_disks(inv):
    inv["hosts"]["lab2"]["onehci_chunk_disks"] = []


@pytest.mark.parametrize("change, message", [
    (_two_masters, "2 host(s) in mfs_master (lab1, lab2); MooseFS needs exactly one"),
    (_goal_3, "storage.goal is 3 copies but only 2 host(s) are chunkservers (lab1, lab2)"),
    (_no_ip, "onehci_ip is missing for lab3"),
    (_wrong_master_ip, "must be the address of the mfs_master host lab1 (10.71.0.11)"),
    (_chunkserver_without_disks, "lab2 in mfs_chunkserver but without onehci_chunk_disks"),
    (_no_networks, "onehci_cluster_networks is empty"),
])
def test_preflight_refuses_a_wrong_inventory_with_an_actionable_message(tmp_path, change, message):
    run = preflight(tmp_path, change)
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert message in out, out


# --- templates rendered ---------------------------------------------------------------------------

FAKE_DISKS = [{"id": "serial:lab1-chunk1", "mountpoint": "/mnt/mfschunks/lab1-chunk1", "uuid": "u1"},
              {"id": "/dev/disk/by-id/virtio-x", "mountpoint": "/mnt/mfschunks/virtio-x", "uuid": "u2"}]


FAKE_HOST_KEYS = [{"item": f"lab{n}", "stdout_lines": [f"ssh-ed25519 AAAAkey{n} root@lab{n}"]} for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, str]:
    """Every template of every role rendered for host lab1 of the test inventory, with the role's
    defaults and undefined variables as errors (as in a real run)."""
    tmp = tmp_path_factory.mktemp("render")
    out = tmp / "out"
    plays = []
    for role in ALL_ROLES:
        templates = sorted((ROLES / role / "templates").rglob("*.j2"))
        plays.append({
            "name": f"Render {role}",
            "hosts": "lab1",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLES / role / "defaults" / "main.yml")],
            "vars": {"ansible_python_interpreter": sys.executable,
                     "ansible_facts": {"virtualization_tech_guest": []},
                     "moosefs_chunkserver__found": {"disks": FAKE_DISKS},
                     # what the OpenNebula roles learn on the host before templating
                     "opennebula_node__move": False, "opennebula_node__gateway": "10.71.0.1",
                     "opennebula_ssh__host_keys": {"results": FAKE_HOST_KEYS}},
            "tasks": [{"name": "Render the templates",
                       "ansible.builtin.template": {
                           "src": "{{ item }}", "dest": f"{out}/{role}/{{{{ item | relpath('{ROLES / role / 'templates'}') | regex_replace('[.]j2$', '') }}}}"},
                       "loop": [str(t) for t in templates]}],
        })
        for t in templates:
            (out / role / t.relative_to(ROLES / role / "templates")).parent.mkdir(parents=True, exist_ok=True)
    playbook = tmp / "render.yml"
    playbook.write_text(json.dumps(plays))
    # extra vars: above the role defaults loaded as vars_files
    overrides = tmp / "overrides.json"
    overrides.write_text(json.dumps({"moosefs_chunkserver__marked_for_removal": ["/dev/disk/by-id/virtio-x"]}))
    env = ansible_env(tmp)
    env["ANSIBLE_STRICT_UNDEFINED"] = "1"
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "-e", f"@{overrides}", str(playbook)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def test_every_template_renders_and_starts_with_the_managed_comment(rendered):
    expected = {f"{role}/{t.relative_to(ROLES / role / 'templates')}"[:-3]
                for role in ALL_ROLES for t in (ROLES / role / "templates").rglob("*.j2")}
    assert set(rendered) == expected
    for name, text in rendered.items():
        head = [line for line in text.splitlines()[:6] if not line.startswith("#!")]
        assert any("Ansible managed" in line for line in head), name


def test_rendered_exports_are_limited_to_the_cluster_networks(rendered):
    cluster = yaml.safe_load(INVENTORY.read_text())["all"]["vars"]["onehci_cluster_networks"]
    lines = [line.split() for line in rendered["moosefs_master/etc/mfs/mfsexports.cfg"].splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines and {fields[0] for fields in lines} == set(cluster)
    assert all("admin" not in fields[2].split(",") for fields in lines)


def test_rendered_hosts_has_every_node_and_mfsmaster(rendered):
    hosts = rendered["common/etc/hosts"]
    assert "10.71.0.11\tmfsmaster" in hosts
    for n in (1, 2, 3):
        assert f"10.71.0.1{n}\tlab{n}.lab.onehci.test lab{n}" in hosts


def test_rendered_firewall_keeps_moosefs_to_the_cluster(rendered):
    rules = rendered["common/etc/nftables.conf"]
    assert "elements = { 10.71.0.0/24 }" in rules
    assert "ip saddr @cluster4 tcp dport { 9419-9422, 9425 } accept" in rules
    assert "tcp dport { 9419-9422, 9425 } drop" in rules
    assert "policy drop;" in rules
    assert "flush ruleset" not in rules  # other tables (libvirt's) survive a reload


def test_rendered_chunkserver_config(rendered):
    hdd = [line for line in rendered["moosefs_chunkserver/etc/mfs/mfshdd.cfg"].splitlines()
           if line and not line.startswith("#")]
    assert hdd == ["/mnt/mfschunks/lab1-chunk1/chunks", "*/mnt/mfschunks/virtio-x/chunks"]
    assert "MASTER_HOST = mfsmaster" in rendered["moosefs_chunkserver/etc/mfs/mfschunkserver.cfg"]
    assert "MASTER_HOST = mfsmaster" in rendered["moosefs_metalogger/etc/mfs/mfsmetalogger.cfg"]


def test_role_defaults_are_documented_and_prefixed():
    for role in ALL_ROLES:
        text = (ROLES / role / "defaults" / "main.yml").read_text()
        names = list(yaml.safe_load(text))
        assert names, role
        for name in names:
            assert name.startswith(f"{role}__"), name
            before = text[:text.index(f"\n{name}:")].rstrip().splitlines()
            assert before[-1].startswith("#") or before[-1].startswith(f"{role}__"), f"{name} has no comment"
        assert (REPO / "docs" / "roles" / f"{role}.md").exists(), role

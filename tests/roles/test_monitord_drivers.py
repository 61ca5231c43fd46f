"""The opennebula_frontend role keeps only the monitor drivers of the hypervisors onehci registers:
its task, run by Ansible with the role's defaults on OpenNebula 7.0.2's own monitord.conf (from the
release tarball the lab builds from). oned allows monitord 10 s to start all of its drivers; under
emulation three of them took longer (docs/performance.md, "Blank machines to a cloud")."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile

import yaml

from installer.lab import onebuild
from tests.conftest import REPO
from tests.roles.test_static import BIN, ROLES, ansible_env

TASK = "Start only the monitor drivers of the hypervisors onehci registers"
TIMEOUT_TASKS = ["Check the monitoring probes' time limit", "Allow the hosts' monitoring probes their time"]


def from_release(tmp_path, suffix: str):
    """The file of OpenNebula's release tarball whose path ends with SUFFIX, copied into TMP_PATH."""
    source = onebuild.default_source()
    assert source.exists(), f"OpenNebula's release tarball is missing: {source}"
    with tarfile.open(source) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
        path = tmp_path / suffix.rsplit("/", 1)[-1]
        path.write_bytes(tar.extractfile(member).read())
    return path


def monitord_conf(tmp_path):
    return from_release(tmp_path, "src/monitor/etc/monitord.conf")


def drivers(text: str) -> list[str]:
    return re.findall(r'(?m)^IM_MAD\s*=\s*\[\s*\n\s*NAME\s*=\s*"([^"]*)"', text)


def run_task(tmp_path, conf, extra_vars: dict | None = None, names: list[str] = (TASK,)
             ) -> subprocess.CompletedProcess:
    tasks = yaml.safe_load((ROLES / "opennebula_frontend/tasks/main.yml").read_text())
    chosen = [{k: v for k, v in next(t for t in tasks if t.get("name") == name).items() if k != "notify"}
              for name in names]
    play = [{"name": "Run the role's tasks", "hosts": "localhost", "gather_facts": False,
             "vars_files": [str(ROLES / "opennebula_frontend/defaults/main.yml")],
             "tasks": chosen}]
    overrides = {"opennebula_frontend__monitord_conf": str(conf), "ansible_python_interpreter": sys.executable,
                 **(extra_vars or {})}
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", json.dumps(overrides), str(playbook)],
                          capture_output=True, text=True, env=ansible_env(tmp_path), cwd=REPO)


def test_only_kvm_and_qemu_stay_and_the_rest_of_the_file_is_untouched(tmp_path):
    conf = monitord_conf(tmp_path)
    before = conf.read_text()
    assert drivers(before) == ["kvm", "qemu", "lxc"]  # the release's own list
    proc = run_task(tmp_path, conf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed=1" in proc.stdout
    after = conf.read_text()
    assert drivers(after) == ["kvm", "qemu"]
    # only the LXC block went: every other line is where it was
    removed = [line for line in before.splitlines() if line not in after.splitlines()]
    assert removed and all("lxc" in line.lower() or line.strip() in ("IM_MAD = [", "]", "THREADS       = 0")
                           or "one_im_ssh" in line for line in removed), removed
    assert after.count("\n") == before.count("\n") - 7
    # a second run changes nothing
    again = run_task(tmp_path, conf)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout


def test_a_site_running_only_kvm_keeps_kvm(tmp_path):
    conf = monitord_conf(tmp_path)
    proc = run_task(tmp_path, conf, {"opennebula_frontend__monitor_drivers": ["kvm"]})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert drivers(conf.read_text()) == ["kvm"]


def probe_limits(text: str) -> list[str]:
    return re.findall(r'(?m)^\s*ARGUMENTS\s*=\s*"[^"]*-w (\d+)', text)


def test_the_probes_keep_opennebulas_90_s_unless_the_environment_raises_it(tmp_path):
    conf = monitord_conf(tmp_path)
    before = conf.read_text()
    assert probe_limits(before) == ["90", "90", "90"]
    kept = run_task(tmp_path, conf, names=TIMEOUT_TASKS)
    assert kept.returncode == 0 and "changed=0" in kept.stdout, kept.stdout + kept.stderr
    assert conf.read_text() == before
    raised = run_task(tmp_path, conf, {"opennebula_frontend__monitor_timeout": 600}, names=TIMEOUT_TASKS)
    assert raised.returncode == 0 and "changed=1" in raised.stdout, raised.stdout + raised.stderr
    after = conf.read_text()
    assert probe_limits(after) == ["600", "600", "600"]
    # only those numbers changed; the commented dummy driver keeps its example
    assert after.replace("-w 600", "-w 90") == before
    assert '#     ARGUMENTS     = "-r 3 -t 15 -w 90 dummy",' in after


def test_a_probe_limit_that_is_not_a_number_of_seconds_stops_the_role_and_changes_nothing(tmp_path):
    conf = monitord_conf(tmp_path)
    before = conf.read_text()
    for bad in ("90; rm -rf /", 0, 100000):
        proc = run_task(tmp_path, conf, {"opennebula_frontend__monitor_timeout": bad}, names=TIMEOUT_TASKS)
        assert proc.returncode != 0
        assert "give the seconds a host's monitoring probes may run, 10 to 3600" in proc.stdout, proc.stdout
        assert conf.read_text() == before


PERIOD_TASKS = ["Check the monitoring probes' periods", "Space the hosts' monitoring probes as the environment asks"]
NICE_TASKS = ["Check the drivers' nice level", "Run OpenNebula's drivers at their nice level"]


def periods(text: str) -> dict[str, int]:
    block = re.search(r"(?m)^PROBES_PERIOD\s*=\s*\[(.*?)\]", text, re.S).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)\s*=\s*(\d+)", block)}


def test_the_probes_keep_opennebulas_periods_unless_the_environment_spaces_them(tmp_path):
    conf = monitord_conf(tmp_path)
    before = conf.read_text()
    assert periods(before) == {"BEACON_HOST": 30, "SYSTEM_HOST": 600, "MONITOR_HOST": 120, "STATE_VM": 5,
                               "MONITOR_VM": 30, "SYNC_STATE_VM": 180}
    kept = run_task(tmp_path, conf, names=PERIOD_TASKS)
    assert kept.returncode == 0 and "changed=0" in kept.stdout, kept.stdout + kept.stderr
    assert conf.read_text() == before
    spaced = run_task(tmp_path, conf, {"opennebula_frontend__probe_periods": {"STATE_VM": 60, "MONITOR_VM": 300}},
                      names=PERIOD_TASKS)
    assert spaced.returncode == 0 and "changed=1" in spaced.stdout, spaced.stdout + spaced.stderr
    after = conf.read_text()
    # STATE_VM's line only, not SYNC_STATE_VM's; every other line as it was
    assert periods(after) == {**periods(before), "STATE_VM": 60, "MONITOR_VM": 300}
    assert [a for a, b in zip(after.splitlines(), before.splitlines()) if a != b] == [
        "    STATE_VM       = 60,", "    MONITOR_VM     = 300,"]


def test_a_probe_period_that_is_not_a_kind_and_seconds_stops_the_role_and_changes_nothing(tmp_path):
    conf = monitord_conf(tmp_path)
    before = conf.read_text()
    for bad in ({"STATE_VM": "5; rm -rf /"}, {"STATE_VM": 1}, {"STATE_VM": 86400}, {"NOT_A_KIND": 60},
                {"SYSTEM_HOST|STATE_VM": 60}, "STATE_VM=60"):
        proc = run_task(tmp_path, conf, {"opennebula_frontend__probe_periods": bad}, names=PERIOD_TASKS)
        assert proc.returncode != 0, bad
        assert "give seconds between probes, 5 to 3600, for some of BEACON_HOST," in proc.stdout, proc.stdout
        assert conf.read_text() == before


def test_the_drivers_keep_opennebulas_nice_level_unless_the_environment_lowers_it(tmp_path):
    rc = from_release(tmp_path, "share/etc/defaultrc")
    before = rc.read_text()
    assert re.findall(r"(?m)^PRIORITY=.*", before) == ["PRIORITY=19"]
    extra = {"opennebula_frontend__defaultrc": str(rc)}
    kept = run_task(tmp_path, rc, extra, names=NICE_TASKS)
    assert kept.returncode == 0 and "changed=0" in kept.stdout, kept.stdout + kept.stderr
    assert rc.read_text() == before
    lowered = run_task(tmp_path, rc, {**extra, "opennebula_frontend__driver_nice": 0}, names=NICE_TASKS)
    assert lowered.returncode == 0 and "changed=1" in lowered.stdout, lowered.stdout + lowered.stderr
    assert rc.read_text() == before.replace("PRIORITY=19", "PRIORITY=0")
    for bad in ("0; rm -rf /", -5, 20):
        proc = run_task(tmp_path, rc, {**extra, "opennebula_frontend__driver_nice": bad}, names=NICE_TASKS)
        assert proc.returncode != 0
        assert "give the nice level of OpenNebula's drivers, 0 to 19" in proc.stdout, proc.stdout
    assert rc.read_text() == before.replace("PRIORITY=19", "PRIORITY=0")

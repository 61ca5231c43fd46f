"""`onehci recover-master` on a 3-node lab of its own (tests/lab/recover-site.yml: rec1 frontend,
rec2 the MooseFS master, rec3 the metalogger): the master process killed and recovered in place,
then the master node destroyed and its metalogger promoted while the files written since the last
saved metadata image exist only in the changelogs (the master's hourly save not done yet). Data written through the
MooseFS mount before each fault is compared after with a tree hash."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer import lab, mfs, sitefile
from installer.operations.recover_master import Recovery
from tests.lab.helpers import deploy_changes_nothing, sh, tree_hash, wait_for, write_data

SITE = Path(__file__).with_name("recover-site.yml")
MOUNT = "/var/lib/one/datastores"
DATA = f"{MOUNT}/recover-test"
OLD, NEW = "10.77.0.12", "10.77.0.13"


def onehci(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "installer", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    site = tmp_path_factory.mktemp("recover") / "site.yml"
    shutil.copy(SITE, site)  # the state directory (journal, keys) stays private to this run
    loaded = sitefile.load(site)
    lab.down(loaded)
    up = onehci("lab", "up", str(site))
    assert up.returncode == 0, up.stderr[-3000:]
    first = onehci("deploy", str(site))
    assert first.returncode == 0, first.stderr[-3000:]
    try:
        yield loaded
    finally:
        assert lab.down(loaded) is not None


def hashes(loaded, nodes=("rec1", "rec3")) -> dict[str, str]:
    return {n: tree_hash(loaded, n, MOUNT) for n in nodes}


def test_promotion_is_refused_while_the_master_runs(cloud):
    site = open(cloud.path).read()
    done = onehci("recover-master", str(cloud.path), "--from", "rec3", "--yes")
    assert done.returncode == 1, done.stderr
    assert "still answers" in done.stderr and "split brain" in done.stderr
    assert "Traceback" not in done.stderr
    assert open(cloud.path).read() == site
    assert sh(cloud, "rec3", "systemctl is-active moosefs-metalogger").stdout.strip() == "active"


def test_master_process_killed_is_recovered_in_place(cloud):
    write_data(cloud, "rec1", f"{DATA}/before-crash", files=4, mib=4)
    before = hashes(cloud)
    sh(cloud, "rec2", "pkill -9 -x mfsmaster")
    wait_for("the master to stop answering", lambda: not mfs.health(OLD, timeout=3).reachable, 30)
    assert sh(cloud, "rec2", "systemctl is-active moosefs-master", check=False).stdout.strip() != "active"

    started = time.monotonic()
    done = onehci("recover-master", "--json", str(cloud.path))
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"recover-master in place: {time.monotonic() - started:.1f} s")
    result = json.loads(done.stdout)
    summary = result["summary"]
    assert summary["master"] == "rec2" and not summary["promoted_from_metalogger"]
    assert summary["metadata_version_after"] >= summary["metadata_version_before"] > 0
    assert [s["status"] for s in result["steps"]] == ["done"] * 4
    # the metalogger reconnected; if it missed the changes of the recovery's own `mfsmaster -a` run,
    # it catches up at the next change only, and the recovery says so
    logger = result["steps"][2]["result"]["metaloggers"]["rec3"]
    assert logger["connected"], done.stderr
    assert logger["caught_up"] == ("warning: the metalogger on rec3" not in done.stderr), done.stderr
    assert summary["metaloggers_behind"] == ([] if logger["caught_up"] else ["rec3"])

    # under systemd again: the service's main process is the one master
    assert sh(cloud, "rec2", "systemctl is-active moosefs-master").stdout.strip() == "active"
    main_pid = sh(cloud, "rec2", "systemctl show -p MainPID --value moosefs-master").stdout.split()
    assert main_pid and main_pid == sh(cloud, "rec2", "pgrep -x -o mfsmaster").stdout.split()
    assert hashes(cloud) == before
    sh(cloud, "rec3", f"echo after > {DATA}/after-crash && cat {DATA}/before-crash/file1 > /dev/null")
    assert sh(cloud, "rec1", f"cat {DATA}/after-crash").stdout == "after\n"

    again = onehci("recover-master", "--json", str(cloud.path))  # twice: nothing to do
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to recover" in again.stderr
    assert [s["status"] for s in json.loads(again.stdout)["steps"]] == ["done"] * 4  # ended green
    deploy_changes_nothing(cloud.path, "the recovery in place")


def test_master_node_destroyed_metalogger_promoted_without_a_saved_image(cloud):
    # the metalogger holds every change so far: after the in-place recovery above it may still have
    # been downloading the metadata again, which would put the files below in its image
    work = Recovery(cloud, None, say=print, confirm=lambda facts: True)
    assert work.metaloggers(work.version_now(OLD))["rec3"]["caught_up"]
    write_data(cloud, "rec3", f"{DATA}/before-loss", files=4, mib=4)
    before = hashes(cloud)
    # never saved: no metadata image holds these files yet (the master's hourly save has not come);
    # the metalogger has them only in its changelogs (written out every second), after its image
    image = "/var/lib/mfs/metadata_ml.mfs.back"
    wait_for("the metalogger to log the new files",
             lambda: "before-loss" in sh(cloud, "rec3", "cat /var/lib/mfs/changelog_ml.*.mfs").stdout, 30)
    assert sh(cloud, "rec3", f"grep -c before-loss {image}", check=False).stdout.strip() == "0"

    lab.kill_node(cloud, "rec2")  # the master host is gone for good
    wait_for("the master to stop answering", lambda: not mfs.health(OLD, timeout=3).reachable, 30)
    refused = onehci("recover-master", str(cloud.path), "--from", "rec1", "--yes")
    assert refused.returncode == 1 and "no metalogger data" in refused.stderr, refused.stderr

    started = time.monotonic()
    done = onehci("recover-master", "--json", str(cloud.path), "--from", "rec3", "--yes")
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"recover-master --from rec3: {seconds:.1f} s")
    summary = json.loads(done.stdout)["summary"]
    assert summary["master"] == "rec3" and summary["promoted_from_metalogger"]
    assert summary["metadata_version_after"] >= summary["metadata_version_before"] > 0
    assert summary["left_out"] == ["rec2"] and "status green without rec2" in done.stderr
    steps = [s["name"] for s in json.loads(done.stdout)["steps"]]
    assert steps == ["preflight", "site", "install", "promote", "repoint", "forget", "deploy", "verify", "healthy"]

    assert hashes(cloud) == before
    assert mfs.health(NEW).reachable
    assert OLD not in sh(cloud, "rec3", f"mfscli -SCS -H {NEW}").stdout  # the stale entry is gone
    for node in ("rec1", "rec3"):
        assert re.search(rf"^{NEW}\s+mfsmaster$", sh(cloud, node, "cat /etc/hosts").stdout, re.M), node
    roles = {n.hostname: n.roles for n in sitefile.load(cloud.path).site.nodes}
    assert "mfs_master" in roles["rec3"] and "mfs_master" not in roles["rec2"]
    sh(cloud, "rec1", f"echo after > {DATA}/after-loss && sync")
    assert sh(cloud, "rec3", f"cat {DATA}/after-loss").stdout == "after\n"

    # the technician takes the lost server out of the site: the new layout is green
    text = Path(cloud.path).read_text()
    Path(cloud.path).write_text(re.sub(r"  - hostname: rec2\n(    .*\n)+", "", text))

    def green():
        proc = onehci("status", "--json", str(cloud.path), timeout=60)
        return proc.returncode == 0 and json.loads(proc.stdout)

    report = wait_for("status green on rec1 and rec3", green, 300, every=5)
    assert report["verdict"] == "healthy"
    deploy_changes_nothing(cloud.path, "the promotion")

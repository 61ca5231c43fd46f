"""What the lab tests share: a shell command in a node, and waiting for a condition."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from installer import lab


def sh(loaded, node: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = lab.node_exec(loaded, node, ["sh", "-c", script], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, f"{node}: {script}: {proc.stdout}{proc.stderr}"
    return proc


def wait_for(what: str, condition, timeout: float, every: float = 1.0):
    """condition() until it returns something true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)
    return result


def deploy_changes_nothing(site, after: str) -> None:
    """`onehci deploy` right after a day-2 verb: the roles find every node as the verb left it
    (the verbs change nodes only through the roles, so they agree)."""
    proc = subprocess.run([sys.executable, "-m", "installer", "deploy", "--json", str(site)], capture_output=True,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed = {host: r["changed"] for host, r in json.loads(proc.stdout)["recap"].items() if r["changed"]}
    assert not changed, f"the deploy after {after} changed: {changed}"


@contextlib.contextmanager
def chunk_watch(master: str, every: float = 1.0):
    """Read MooseFS's matrix of all chunks (copies on disks marked for removal included) every
    EVERY seconds while the block runs; yields the list of samples (seconds since the start,
    missing, endangered), filled as it goes. A chunk with one copy left shows as endangered."""
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()
    start = time.monotonic()

    def watch():
        while not done.is_set():
            out = subprocess.run(["mfscli", "-H", master, "-SIC", "-m", "0", "-p", "-n", "-s", "|"],
                                 capture_output=True, text=True, timeout=30).stdout
            found = {line.split("|")[1].removeprefix("chunkclass ").rstrip(":"): int(line.split("|")[2])
                     for line in out.splitlines() if line.startswith("all chunks matrix:|chunkclass ")}
            if "missing" in found:
                samples.append((round(time.monotonic() - start, 1), found["missing"], found["endangered"]))
            done.wait(every)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(60)


def tree_hash(loaded, node: str, path: str) -> str:
    """One sha256 over every file under PATH as NODE sees it: relative path, size and content
    hash, sorted. Written before a fault and compared after: equal means nothing was lost."""
    script = (f"cd {path} && find . -type f -print0 | sort -z | "
              "xargs -0 -r sh -c 'for f; do printf \"%s %s \" \"$f\" $(stat -c %s \"$f\"); "
              "sha256sum < \"$f\"; done' _ | sha256sum")
    out = sh(loaded, node, script).stdout.split()[0]
    assert len(out) == 64, out
    return out


def write_data(loaded, node: str, path: str, files: int = 8, mib: int = 8) -> None:
    """FILES files of MIB MiB of random data (and a nested directory) under PATH on NODE."""
    sh(loaded, node, f"mkdir -p {path}/nested && for i in $(seq 1 {files}); do "
       f"head -c {mib}M /dev/urandom > {path}/file$i; done && echo small > {path}/nested/note && sync")


def repack(debs: list[Path], revision: str, into: Path) -> list[Path]:
    """A newer build of the lab's OpenNebula packages, as a rebuild would publish: each .deb
    unpacked and packed again with its Debian revision (and the exact-version dependencies
    between the packages) set to REVISION."""
    into.mkdir(parents=True, exist_ok=True)
    made = []
    for deb in debs:
        root = into / deb.stem
        subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)
        control = root / "DEBIAN/control"
        old = next(ln.split(": ", 1)[1] for ln in control.read_text().splitlines() if ln.startswith("Version: "))
        new = old.rsplit("-", 1)[0] + "-" + revision
        control.write_text(control.read_text().replace(old, new))
        target = into / deb.name.replace(old, new)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", str(root), str(target)],
                       check=True, capture_output=True)
        made.append(target)
    return made


def blank_vm(loaded, host: str, name: str, timeout: float = 240) -> int:
    """A real VM placed on HOST and RUNNING: a blank 16 MiB disk cloned from the images datastore
    (made once, on the frontend) and a NIC on the site's VM network; QEMU runs in software
    emulation and finds nothing to boot, which is all the tests here need of it."""
    from installer import one
    from installer.plan import make_plan

    plan = make_plan(loaded.site)
    client = one.client_for(loaded, plan)
    names = one.object_names(plan.cluster)
    found = {i.NAME: i.ID for i in client.imagepool.info(-2, -1, -1).IMAGE}
    image = found.get("blank")
    if image is None:
        sh(loaded, plan.opennebula.frontend, "truncate -s 16M /var/tmp/blank.img && chown oneadmin: /var/tmp/blank.img")
        store = {d.NAME: d.ID for d in client.datastorepool.info().DATASTORE}[names["images"]]
        image = client.image.allocate('NAME = "blank"\nPATH = "/var/tmp/blank.img"\nTYPE = "OS"\nFORMAT = "raw"\n',
                                      store)
        wait_for("the blank image to be ready", lambda: client.image.info(image).STATE == 1, 120)  # READY
    host_id = {h.NAME: h.ID for h in client.hostpool.info().HOST}[host]
    vm = client.vm.allocate(f'NAME = "{name}"\nCPU = 0.1\nVCPU = 1\nMEMORY = 64\nDISK = [ IMAGE_ID = "{image}" ]\n'
                            f'NIC = [ NETWORK = "{names["network"]}" ]\n', False)
    client.vm.deploy(vm, host_id, False, -1)
    wait_for(f"VM {name} running on {host}", lambda: vm_state(client, vm) == ("ACTIVE", "RUNNING"), timeout, 2)
    return vm


def vm_state(client, vm: int) -> tuple[str, str]:
    import pyone

    info = client.vm.info(vm)
    assert info.LCM_STATE != pyone.LCM_STATE.BOOT_FAILURE, info.USER_TEMPLATE.get("ERROR")
    return pyone.VM_STATE(info.STATE).name, pyone.LCM_STATE(info.LCM_STATE).name


def terminate(client, vm: int, timeout: float = 120) -> None:
    client.vm.action("terminate-hard", vm)
    wait_for(f"VM {vm} gone", lambda: vm_state(client, vm)[0] == "DONE", timeout, 2)

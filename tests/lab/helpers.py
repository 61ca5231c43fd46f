"""What the lab tests share: a shell command in a node, waiting for a condition, watching MooseFS's
chunks, and a smoke guest kept running while a test watches what it says."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyone

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
    info = client.vm.info(vm)
    assert info.LCM_STATE != pyone.LCM_STATE.BOOT_FAILURE, info.USER_TEMPLATE.get("ERROR")
    return pyone.VM_STATE(info.STATE).name, pyone.LCM_STATE(info.LCM_STATE).name


def terminate(client, vm: int, timeout: float = 120) -> None:
    client.vm.action("terminate-hard", vm)
    wait_for(f"VM {vm} gone", lambda: vm_state(client, vm)[0] == "DONE", timeout, 2)


@dataclass
class Guest:
    """A guest of `onehci smoke --keep`: it beats every 2 s on its serial console and writes its
    data disk (on MooseFS) and reads everything back, round after round (smoke/init)."""
    vm: int
    name: str
    ip: str


def guest_host(client, vm: int) -> str:
    history = client.vm.info(vm).HISTORY_RECORDS.HISTORY
    return (history[-1] if isinstance(history, list) else history).HOSTNAME


def guest_log(loaded, host: str, guest: Guest) -> str:
    return sh(loaded, host, f"cat /var/log/libvirt/qemu/{guest.name}.serial 2>/dev/null || true").stdout


def move_guest(loaded, client, guest: Guest, host: str) -> None:
    """Live-migrate GUEST to HOST; back when its heartbeat shows in HOST's log."""
    host_id = {h.NAME: h.ID for h in client.hostpool.info().HOST}[host]
    client.vm.migrate(guest.vm, host_id, True, False, -1, 0)
    wait_for(f"VM {guest.vm} running on {host}", lambda: guest_host(client, guest.vm) == host and (
        client.vm.info(guest.vm).LCM_STATE == pyone.LCM_STATE.RUNNING) and "alive" in guest_log(loaded, host, guest),
        120, 2)


@contextlib.contextmanager
def smoke_guest(loaded, site, client, on: str):
    """One guest of `onehci smoke --keep`, live-migrated to host ON if smoke left it elsewhere;
    terminated at the end, with the image and template smoke kept."""
    proc = subprocess.run([sys.executable, "-m", "installer", "smoke", "--keep", "--count", "1", "--json", str(site)],
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = json.loads(proc.stdout)["guests"][0]
    guest = Guest(kept["vm"], kept["name"], kept["ip"])
    try:
        if guest_host(client, guest.vm) != on:
            move_guest(loaded, client, guest, on)
        yield guest
    finally:
        terminate(client, guest.vm)
        for template in client.templatepool.info(-2, -1, -1).VMTEMPLATE:
            if template.NAME == "onehci-smoke":
                client.template.delete(template.ID, False)
        for image in client.imagepool.info(-2, -1, -1).IMAGE:
            if image.NAME == "onehci-smoke":
                client.image.delete(image.ID)


@dataclass
class Heard:
    """One reading of a guest's serial log on the host OpenNebula places it on."""
    seconds: float
    host: str
    beat: int
    disk_round: int
    bad: list[str]
    ups: int  # "up" lines in this host's log: 1 where it booted, 0 where it arrived by migration


@contextlib.contextmanager
def guest_watch(loaded, client, guest: Guest, every: float = 2.0):
    """Read GUEST's serial log every EVERY seconds while the block runs, on the host OpenNebula
    runs it on; yields the list of readings (Heard), filled as it goes. No reading while the VM
    is not RUNNING (mid-migration). While oned cannot be asked (its restart in an upgrade), the
    log is read where OpenNebula last had it RUNNING: only oned moves a VM, so it is still there."""
    from installer.operations.smoke import beats, disk_rounds

    heard: list[Heard] = []
    done = threading.Event()
    start = time.monotonic()

    def watch():
        running_on = ""
        while not done.is_set():
            log = ""
            try:
                # only while RUNNING: during a migration OpenNebula already names the new host, whose
                # log may still be the one of an earlier stay there until the incoming QEMU starts
                try:
                    info = client.vm.info(guest.vm)
                except OSError as exc:  # oned not answering: the guest has not moved since
                    print(f"guest watch: oned: {exc}")
                else:
                    running_on = ""
                    if info.LCM_STATE == pyone.LCM_STATE.RUNNING:
                        history = info.HISTORY_RECORDS.HISTORY
                        running_on = (history[-1] if isinstance(history, list) else history).HOSTNAME
                host = running_on
                if host:
                    log = guest_log(loaded, host, guest)
            except Exception as exc:  # noqa: BLE001 - the API or a node busy for a moment: read again
                print(f"guest watch: {exc}")
                log = ""
            # whole lines only ("alive 1" may be the first half of "alive 17"); a log with no heartbeat
            # yet (the guest just arrived by migration) is nothing heard, not a count gone back to 0
            log = log[:log.rfind("\n") + 1]
            if beat := beats(log):
                round_, bad = disk_rounds(log)
                heard.append(Heard(round(time.monotonic() - start, 1), host, beat, round_, bad,
                                   log.count("onehci-smoke: up ")))
            done.wait(every)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield heard
    finally:
        done.set()
        thread.join(60)


def assert_guest_lived(heard: list[Heard], longest_silence: float = 60) -> None:
    """The guest ran the whole time: never silent longer than LONGEST_SILENCE seconds, its heartbeat
    never started again (no reboot), and every disk round read back unchanged what it had written."""
    assert len(heard) > 5, heard
    bad = [h for h in heard if h.bad]
    assert not bad, f"the guest found its disk changed: {bad[0].bad}"
    rebooted = [h for h in heard if h.ups > 1]  # booted again in the same QEMU: two "up" lines in its log
    assert not rebooted, f"the guest booted again on {rebooted[0].host} at {rebooted[0].seconds} s"
    last_beat, last_change = heard[0].beat, heard[0].seconds
    for h in heard[1:]:
        # the count lives in the guest's memory and goes with it when it moves: lower means it started again
        assert h.beat >= last_beat, f"heartbeat went back from {last_beat} to {h.beat} at {h.seconds} s on {h.host}"
        if h.beat > last_beat:
            assert h.seconds - last_change <= longest_silence, (
                f"the guest was silent from {last_change} s to {h.seconds} s")
            last_beat, last_change = h.beat, h.seconds
    assert heard[-1].seconds - last_change <= longest_silence, f"the guest silent since {last_change} s"
    assert heard[-1].disk_round > heard[0].disk_round, "no disk round completed while watched"


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 800):
    """Debian's Chromium driven by Selenium without a display, with a throwaway profile and none of
    its own traffic (updates, sync) toward the internet."""
    import shutil
    import tempfile

    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="onehci-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)

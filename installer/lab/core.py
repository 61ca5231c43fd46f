"""`onehci lab`: a site's nodes as systemd-nspawn containers on this machine.

Each node boots systemd from an overlay of the cached base image, in its own network
namespace joined by a veth to one bridge that carries the bootstrap address; apt goes
through apt-cacher-ng on that address, chunk disks are loop-file block devices. What
the lab starts and makes is recorded in /var/lib/onehci/lab/CLUSTER/lab.json, so
`lab down` stops exactly its own processes (by PID and start time) and removes the rest
by name.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from installer import environment, state
from installer.errors import OnehciError
from installer.lab import base, cgroups, disks, net, onebuild, onerepo, procs, rootfs
from installer.plan import PlannedNode, make_plan
from installer.waiting import Pending, wait_until

LAB_ROOT = Path("/var/lib/onehci/lab")
FIREEDGE = True  # FireEdge in the lab's OpenNebula build (installer/lab/fireedge.py)
BOOT_TIMEOUT = 180  # seconds until every sshd answers (3 nodes boot in ~10 s here)
STOP_TIMEOUT = 20  # seconds for systemd in a node to power off before SIGKILL
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# command -> Debian package that provides it
TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "losetup": "mount",
         "nsenter": "util-linux", "ip": "iproute2", "ssh": "openssh-client", "ssh-keygen": "openssh-client"}

Say = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


@dataclass
class NodeState:
    hostname: str
    ip: str
    netns: str
    running: bool
    ssh: bool | None  # None: not checked (node not running)
    pid: int | None  # systemd-nspawn
    leader: int | None  # the node's systemd (PID 1 inside)
    disks: dict[str, str] = field(default_factory=dict)  # by-id link in the node -> loop device


@dataclass
class Lab:
    cluster: str
    bridge: str
    address: str
    apt_proxy: str | None
    ssh_key: str
    nodes: list[NodeState]
    started: list[str] = field(default_factory=list)  # what this call started (empty: nothing changed)
    opennebula_repo: str = ""  # the lab's OpenNebula repository (URL)
    opennebula_version: str = ""  # the version it serves

    def as_dict(self) -> dict:
        return asdict(self)

    def node(self, hostname: str) -> NodeState | None:
        return next((n for n in self.nodes if n.hostname == hostname), None)


# --- names and places ----------------------------------------------------------------

def lab_dir(loaded) -> Path:
    return LAB_ROOT / loaded.site.cluster.name


def _state_file(loaded) -> Path:
    return lab_dir(loaded) / "lab.json"


def netns_name(hostname: str) -> str:
    return f"onehci-{hostname}"


def veth_name(hostname: str) -> str:
    # interface names are at most 15 characters; long hostnames get a stable hash
    name = f"vl-{hostname}"
    return name if len(name) <= 15 else "vl-" + hashlib.sha1(hostname.encode()).hexdigest()[:12]


def lab_ssh_key(loaded) -> Path:
    """The lab's private key (generated once per site, kept by `lab down`)."""
    return state.state_dir(loaded.path) / "lab" / "id_ed25519"


def known_hosts(loaded) -> Path:
    """Host keys of the running lab nodes, for SSH clients that check them."""
    return state.state_dir(loaded.path) / "lab" / "known_hosts"


def _ensure_key(loaded) -> Path:
    key = lab_ssh_key(loaded)
    if not key.exists():
        state.ensure(key.parent)
        # the state dir of a shipped profile sits inside a checkout: keep the key out of git
        (key.parent / ".gitignore").write_text("*\n")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"onehci-lab@{loaded.site.cluster.name}",
                        "-f", str(key)], check=True, capture_output=True)
    return key


# --- checks ---------------------------------------------------------------------------

def check_host(euid: int | None = None, system: str | None = None,
               which: Callable[[str], str | None] = shutil.which) -> None:
    """Refuse with one line when this machine cannot run the lab."""
    system = system or platform.system()
    if system != "Linux":
        raise OnehciError(f"the lab needs Linux (systemd-nspawn, network namespaces); this is {system}")
    if (os.geteuid() if euid is None else euid) != 0:
        raise OnehciError("the lab needs root (containers, namespaces, loop devices): run it with sudo")
    missing = [tool for tool in TOOLS if which(tool) is None]
    if missing:
        packages = " ".join(dict.fromkeys(TOOLS[t] for t in missing))
        raise OnehciError(f"missing {', '.join(missing)}: install with `apt-get install {packages}`")


def _check_bridge_address(bridge: str, address: str) -> None:
    owner = net.address_owner(address)
    if owner is not None and owner != bridge:
        raise OnehciError(f"the bootstrap address {address} is already in use on this host by {owner}, "
                          f"not by the lab bridge {bridge}: free it or choose another bootstrap.address")


# --- up -------------------------------------------------------------------------------

def up(loaded, say: Say = _quiet) -> Lab:
    """Build and start the site's lab; on a running lab, change nothing. OpenNebula's packages
    are built from OpenNebula's source on this machine and served from the lab's repository on
    the bootstrap address (installer/lab/onebuild.py, installer/lab/onerepo.py)."""
    check_host()
    site = loaded.site
    boot = site.bootstrap
    address = str(boot.address)
    prefix = site.networks.management.cidr.prefixlen
    plan = make_plan(site)
    directory = lab_dir(loaded)
    started: list[str] = []
    with state.locked(directory):
        st = state.read_json(_state_file(loaded), {})
        st.setdefault("nodes", {})

        _check_bridge_address(boot.interface, address)
        if not net.link_exists(boot.interface):
            st["bridge"] = boot.interface  # recorded first: only a bridge made here is deleted by `down`
            state.write_json(_state_file(loaded), st)
            started.append(f"bridge {boot.interface}")
        net.create_bridge(boot.interface, f"{address}/{prefix}")

        proxy = None
        if boot.apt_proxy:
            proxy = f"http://{address}:3142"
            if not procs.alive(procs.Proc.from_dict(st.get("aptcache"))):
                say(f"starting apt-cacher-ng on {address}:3142")
                st["aptcache"] = _start_aptcache(address, boot.mirror, directory / "run")
                state.write_json(_state_file(loaded), st)
                started.append("apt-cacher-ng")

        started += _ensure_opennebula_repo(st, address, directory, say)
        state.write_json(_state_file(loaded), st)

        base_root = None
        key = _ensure_key(loaded)
        authorized = [*site.access.ssh_authorized_keys, (key.with_suffix(".pub")).read_text().strip()]
        hosts = [(n.ip, n.fqdn, n.hostname) for n in plan.nodes]
        dns = [str(d) for d in site.networks.management.dns]
        for node in plan.nodes:
            rec = st["nodes"].setdefault(node.hostname, {})
            veth, ns = veth_name(node.hostname), netns_name(node.hostname)
            net.create_veth(veth, boot.interface, ns, "eth0", f"{node.ip}/{prefix}",
                            str(site.networks.management.gateway))
            net.set_mac("eth0", node.mac, ns)
            if _node_running(rec):
                continue
            _stop_nodes([rec])  # half of a node (nspawn or its systemd) may have outlived the other
            base_root = base_root or base.ensure(boot.mirror, say)
            node_dir = directory / node.hostname
            links = {disks.by_id_path(d): disks.attach(node_dir / "disks" / f"chunk{i}.img")
                     for i, d in enumerate(node.chunk_disks)}
            root = rootfs.mount_overlay(base_root, node_dir)
            rootfs.configure(root, rootfs.NodeFiles(
                hostname=node.hostname, fqdn=node.fqdn, hosts=hosts, authorized_keys=authorized,
                mirror=boot.mirror, proxy=proxy, dns=dns, disks=links,
                cgroups=tuple(cgroups.controller(p) for p in cgroups.node_cgroups(node.hostname))))
            say(f"starting {node.hostname} ({node.ip})")
            rec.update(_start_node(node.hostname, root, ns, links.values(), node_dir / "console.log"))
            rec["disks"] = links
            state.write_json(_state_file(loaded), st)
            started.append(node.hostname)

        _write_known_hosts(loaded, plan.nodes, directory)
        _write_environment(loaded, st.get("opennebula_repo") or {})
    if started:
        _wait_for_ssh(loaded, plan.nodes, key, st)
    lab = status(loaded)
    lab.started = started
    return lab


def _start_aptcache(address: str, mirror: str, workdir: Path) -> dict:
    from installer import aptcache

    workdir.mkdir(parents=True, exist_ok=True)
    proc = aptcache.start(address, mirror, workdir)
    # it outlives this command: drop our end of its stderr pipe (it ignores SIGPIPE)
    if proc.stderr:
        proc.stderr.close()
    found = procs.identify(proc.pid)
    if found is None:
        raise OnehciError("apt-cacher-ng exited right after starting")
    return found.as_dict()


def opennebula_build(say: Say = lambda _m: None) -> onebuild.Build:
    """The lab's OpenNebula build (FireEdge included when FIREEDGE): what its repository serves."""
    return onebuild.ensure(fireedge=FIREEDGE, say=say)


def _ensure_opennebula_repo(st: dict, address: str, directory: Path, say: Say) -> list[str]:
    """OpenNebula's packages, built from its source once per machine (installer/lab/onebuild.py),
    published in the lab's repository and served on the bootstrap address."""
    build = opennebula_build(say)
    repo = st.get("opennebula_repo") or {}
    started = []
    if repo.get("build") != build.key:
        say(f"publishing OpenNebula {build.debs[0].version} in the lab's repository")
        onerepo.publish(build.paths(), directory / "opennebula-repo")
        repo = st["opennebula_repo"] = {"build": build.key, "version": build.debs[0].version,
                                        "inventory": onerepo.record(address)}
    if not procs.alive(procs.Proc.from_dict(st.get("repo_http"))):
        run = directory / "run"
        run.mkdir(parents=True, exist_ok=True)
        say(f"serving the lab's OpenNebula repository at {repo['inventory']['url']}")
        st["repo_http"] = onerepo.serve(directory / "opennebula-repo", address, run / "repo-http.log").as_dict()
        started.append("OpenNebula repository")
    return started


def publish_opennebula(loaded, extra: list[Path]) -> None:
    """Publish EXTRA packages (a newer build, for an upgrade rehearsal) beside the lab's build."""
    build = opennebula_build()
    onerepo.publish([*build.paths(), *extra], lab_dir(loaded) / "opennebula-repo")


def _write_environment(loaded, repo: dict) -> None:
    """What deploy, status and the day-2 verbs need to reach and reinstall the lab's nodes, as
    data in the site's state directory (installer/environment.py): they never import the lab."""
    environment.write(loaded.path, {
        "kind": "lab", "ssh_key": str(lab_ssh_key(loaded)), "known_hosts": str(known_hosts(loaded)),
        "opennebula_repo": repo.get("inventory"),
        # MooseFS's chunk loop at its floor; no FireEdge while the lab's OpenNebula build has none
        "role_vars": {"moosefs_master__options": dict(LAB_MASTER_OPTIONS), "opennebula_frontend__fireedge": FIREEDGE}})


# A lab holds a few dozen chunks: MooseFS's chunk loop at its floor (60 s, instead of its default
# 300 s) makes a drain or a re-replication take about a minute instead of up to five. A real site
# keeps MooseFS's defaults.
LAB_MASTER_OPTIONS = {"CHUNKS_LOOP_MIN_TIME": 60}


def _node_running(rec: dict) -> bool:
    return procs.alive(procs.Proc.from_dict(rec.get("nspawn"))) and procs.alive(procs.Proc.from_dict(rec.get("leader")))


def _any_alive(rec: dict) -> bool:
    return any(procs.alive(procs.Proc.from_dict(rec.get(k))) for k in ("nspawn", "leader"))


def _start_node(hostname: str, root: Path, netns: str, devices, log: Path) -> dict:
    # the node's own cgroups, writable inside it: libvirt places the VMs there (installer/lab/cgroups.py)
    node_cgroups = cgroups.node_cgroups(hostname)
    argv = ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{netns}", f"--directory={root}", f"--machine={hostname}",
            "--capability=CAP_NET_ADMIN",  # nftables rules and bridges inside the node
            "--bind=/dev/fuse",  # the MooseFS client
            *[f"--bind={dev}" for dev in devices], *cgroups.binds(node_cgroups),
            "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only"]
    with open(log, "ab") as out:
        # a new session: the node outlives this command and Ctrl-C in this terminal
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=cgroups.joiner(node_cgroups))
    nspawn = procs.identify(proc.pid)
    leader = _wait_for_leader(proc, hostname, log)
    return {"nspawn": nspawn.as_dict(), "leader": leader.as_dict()}


def _wait_for_leader(proc: subprocess.Popen, hostname: str, log: Path, timeout: float = 30) -> procs.Proc:
    """The container's PID 1 once it runs systemd (nsenter targets it)."""
    def leader():
        if proc.poll() is not None:
            raise OnehciError(f"{hostname} stopped while starting (exit {proc.returncode}): {_tail(log)}; "
                              f"full console log: {log}")
        pid = procs.pid_namespace_init(proc.pid)
        return (pid and _comm(pid) == "systemd" and procs.identify(pid)) or Pending("systemd")

    return wait_until(leader, timeout=timeout, every=0.1, timed_out=lambda _: (
        f"{hostname}: systemd did not start within {timeout:.0f} s; console log: {log}"))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _tail(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    return lines[-1].strip() if lines else "no output"


def _write_known_hosts(loaded, nodes: list[PlannedNode], directory: Path) -> None:
    lines = []
    for node in nodes:
        root = directory / node.hostname / "root"
        if (root / "etc/ssh/ssh_host_ed25519_key.pub").exists():
            lines.append(f"{node.ip},{node.hostname},{node.fqdn} {rootfs.host_key(root)}\n")
    path, text = known_hosts(loaded), "".join(lines)
    if not path.exists() or path.read_text() != text:
        state.write_private(path, text.encode())


def ssh_argv(loaded, ip: str, *command: str, timeout: int = 5) -> list[str]:
    from installer import remote

    return [*remote.ssh_argv(ip, str(lab_ssh_key(loaded)), str(known_hosts(loaded)), timeout), *command]


def _ssh_ok(loaded, ip: str) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=1):
            pass
    except OSError:
        return False
    return subprocess.run(ssh_argv(loaded, ip, "true"), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=30).returncode == 0


def _wait_for_ssh(loaded, nodes: list[PlannedNode], key: Path, st: dict) -> None:
    """Until every node's sshd accepts the lab key; fail early when a node stops."""
    pending = {n.hostname: n.ip for n in nodes}

    def answered():
        for hostname, ip in list(pending.items()):
            if _ssh_ok(loaded, ip):
                del pending[hostname]
            elif not _node_running(st["nodes"][hostname]):
                log = lab_dir(loaded) / hostname / "console.log"
                raise OnehciError(f"{hostname} stopped while booting: {_tail(log)}; console log: {log}")
        return not pending or Pending(", ".join(sorted(pending)))

    wait_until(answered, timeout=BOOT_TIMEOUT, every=0.5, timed_out=lambda left: (
        f"no SSH answer with {key} from {left} within {BOOT_TIMEOUT} s; see {lab_dir(loaded)}/NODE/console.log"))


# --- status, exec, kill ------------------------------------------------------------------

def status(loaded, check_ssh: bool = True) -> Lab:
    site = loaded.site
    st = state.read_json(_state_file(loaded), {})
    nodes = []
    for node in make_plan(site).nodes:
        rec = st.get("nodes", {}).get(node.hostname, {})
        running = _node_running(rec)
        nspawn, leader = procs.Proc.from_dict(rec.get("nspawn")), procs.Proc.from_dict(rec.get("leader"))
        nodes.append(NodeState(node.hostname, node.ip, netns_name(node.hostname), running, None,
                               nspawn.pid if running else None, leader.pid if running else None,
                               dict(rec.get("disks", {})) if running else {}))
    if check_ssh:
        up_nodes = [n for n in nodes if n.running]
        with ThreadPoolExecutor(max_workers=max(1, len(up_nodes))) as pool:
            for n, ok in zip(up_nodes, pool.map(lambda n: _ssh_ok(loaded, n.ip), up_nodes)):
                n.ssh = ok
    boot = site.bootstrap
    repo = st.get("opennebula_repo") or {}
    return Lab(site.cluster.name, boot.interface, str(boot.address),
               f"http://{boot.address}:3142" if boot.apt_proxy else None, str(lab_ssh_key(loaded)), nodes,
               opennebula_repo=(repo.get("inventory") or {}).get("url", ""), opennebula_version=repo.get("version", ""))


def _leader(loaded, hostname: str) -> procs.Proc:
    if loaded.site.node(hostname) is None:
        names = ", ".join(n.hostname for n in loaded.site.nodes)
        raise OnehciError(f"no node named {hostname} in {loaded.path} (nodes: {names})")
    rec = state.read_json(_state_file(loaded), {}).get("nodes", {}).get(hostname, {})
    if not _node_running(rec):
        raise OnehciError(f"{hostname} is not running: start the lab with `onehci lab up`")
    return procs.Proc.from_dict(rec["leader"])


def nsenter_argv(loaded, hostname: str, argv: list[str]) -> list[str]:
    leader = _leader(loaded, hostname)
    # a clean environment: the host's PATH and variables mean nothing inside the node
    return ["nsenter", "-t", str(leader.pid), "-a", "env", "-i", f"PATH={NODE_PATH}", "HOME=/root",
            "LANG=C.UTF-8", f"TERM={os.environ.get('TERM', 'dumb')}", *argv]


def node_exec(loaded, hostname: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside a node (as root, all its namespaces); output captured as text."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    if "input" not in kwargs:
        # not this process's stdin: a program in the node may leave it non-blocking, and Ansible
        # started later from the same terminal then refuses to run
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(nsenter_argv(loaded, hostname, argv), **kwargs)


def kill_node(loaded, hostname: str) -> None:
    """Hard stop of one node, like pulling its power cord: its disks, overlay and network
    stay, so `lab up` boots it again with its data."""
    leader = _leader(loaded, hostname)
    rec = state.read_json(_state_file(loaded), {})["nodes"][hostname]
    procs.stop([leader, procs.Proc.from_dict(rec["nspawn"])], signal.SIGKILL, timeout=10)


# --- down -----------------------------------------------------------------------------------

def down(loaded, say: Say = _quiet) -> list[str]:
    """Remove everything the lab made except the base image cache and the SSH key.
    Safe to run again; returns what it removed."""
    check_host()
    site = loaded.site
    directory = lab_dir(loaded)
    removed: list[str] = []
    if not directory.exists() and not any(net.netns_exists(netns_name(n.hostname)) for n in site.nodes):
        return removed
    with state.locked(directory):
        st = state.read_json(_state_file(loaded), {})
        recs = st.get("nodes", {})
        running = {name: rec for name, rec in recs.items() if _any_alive(rec)}
        if running:
            say(f"stopping {', '.join(running)}")
        _stop_nodes(running.values())
        removed += [f"node {name}" for name in running]
        removed += [f"mount {p}" for p in rootfs.unmount_all(directory)]
        for image in sorted(directory.glob("*/disks/*.img")):
            removed += [f"loop {dev} ({image.name})" for dev in disks.release(image)]
        for hostname in dict.fromkeys([*recs, *(n.hostname for n in site.nodes)]):  # also nodes since removed
            removed += [f"cgroup {path}" for path in cgroups.remove(hostname)]
            if net.link_exists(veth_name(hostname)):
                net.delete_veth(veth_name(hostname))
                removed.append(f"veth {veth_name(hostname)}")
            if net.netns_exists(netns_name(hostname)):
                net.delete_netns(netns_name(hostname))
                removed.append(f"netns {netns_name(hostname)}")
        if st.get("bridge") and net.link_exists(st["bridge"]):
            net.delete_bridge(st["bridge"])
            removed.append(f"bridge {st['bridge']}")
        for key, what in (("aptcache", "apt-cacher-ng"), ("repo_http", "OpenNebula repository server")):
            proc = procs.Proc.from_dict(st.get(key))
            if procs.alive(proc):
                procs.stop([proc], signal.SIGTERM, timeout=10)
                removed.append(what)
        if rootfs.mounts_under(directory):  # never delete through a mount
            raise OnehciError(f"something is still mounted under {directory}; unmount it and run `lab down` again")
        known_hosts(loaded).unlink(missing_ok=True)
        environment.remove(loaded.path)  # the site is no longer a lab
        if directory.exists():  # a `lab down` run at the same time removed it while this one waited
            shutil.rmtree(directory)
    return removed


def _stop_nodes(recs) -> None:
    """Ask each node's systemd to power off (SIGRTMIN+4), SIGKILL what is left after STOP_TIMEOUT."""
    pairs = [(procs.Proc.from_dict(r.get("leader")), procs.Proc.from_dict(r.get("nspawn"))) for r in recs]
    if not any(procs.alive(p) for pair in pairs for p in pair):
        return
    for leader, _ in pairs:
        procs.signal_proc(leader, signal.SIGRTMIN + 4)
    everything = [p for pair in pairs for p in pair]
    if not procs.wait_gone(everything, STOP_TIMEOUT):
        procs.stop(everything, signal.SIGKILL, timeout=10)

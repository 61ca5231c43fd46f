"""The rehearsal lab: a site's nodes as systemd-nspawn containers on this machine
(`installer.lab.up(loaded_site)`, `down`, `status`, `node_exec`, `kill_node`,
`lab_ssh_key`, ... from installer.lab.core), plus the network plumbing in
installer.lab.net that labs and boot tests share."""

_PUBLIC = ("Lab", "NodeState", "check_host", "down", "kill_node", "known_hosts", "lab_dir",
           "lab_ssh_key", "node_exec", "nsenter_argv", "opennebula_build", "publish_opennebula", "ssh_argv", "status", "up")


def __getattr__(name: str):
    # lazy, so that `installer.lab.net` users do not load the site model
    if name in _PUBLIC:
        from installer.lab import core

        return getattr(core, name)
    raise AttributeError(f"module 'installer.lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_PUBLIC)

"""Deploy wall time on the 3-node lab against the "apt floor": the same packages installed by
plain apt-get on the same fresh nodes in parallel through the same warm cache; then the second
deploy. Run as root: .venv/bin/python bench/deploy_floor.py (about 15 minutes; tears the lab down
and up twice, so do not run it beside the lab tests)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer import environment, lab, sitefile  # noqa: E402
from installer.siteinit import profile_site  # noqa: E402

SITE = profile_site("lab")


def timed(argv: list[str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return time.monotonic() - start


def installed_by_deploy(loaded, node: str) -> list[str]:
    """Packages apt installed on the node (explicitly asked for) during the deploy."""
    log = lab.node_exec(loaded, node, ["cat", "/var/log/apt/history.log"], capture_output=True, text=True).stdout
    wanted = []
    for line in log.splitlines():
        if line.startswith("Commandline:") and " install " in line:
            wanted += [w for w in line.split(" install ", 1)[1].split() if not w.startswith("-")]
    return sorted({re.sub(r"=.*", "", w) for w in wanted})


def fresh_lab(loaded) -> None:
    lab.down(loaded)
    lab.up(loaded)


def main() -> None:
    loaded = sitefile.load(SITE)
    deploy = [sys.executable, "-m", "installer", "deploy", str(SITE)]
    fresh_lab(loaded)
    first = timed(deploy)
    second = timed(deploy)
    packages = {node.hostname: installed_by_deploy(loaded, node.hostname) for node in loaded.site.nodes}
    fresh_lab(loaded)

    repo = environment.opennebula_repo(loaded.path)
    # the OpenNebula repository as the opennebula_repo role sets it (key, signed source, no proxy):
    # the floor's fresh nodes install from it too
    source = (f"python3 -c \"import urllib.request as u; open('/etc/apt/keyrings/opennebula.asc', 'wb')"
              f".write(u.urlopen('{repo['key_url']}').read())\" && echo 'deb [signed-by=/etc/apt/keyrings/"
              f"opennebula.asc] {repo['url']} {repo['suite']} {' '.join(repo['components'])}' "
              f"> /etc/apt/sources.list.d/opennebula.list && echo 'Acquire::http::Proxy::{repo['url'].split('/')[2].split(':')[0]} "
              f"\"DIRECT\";' > /etc/apt/apt.conf.d/02onehci-opennebula-direct && ")

    def floor(node: str) -> float:
        argv = lab.nsenter_argv(loaded, node, ["env", "DEBIAN_FRONTEND=noninteractive", "sh", "-c",
                                                "mkdir -p /etc/apt/keyrings && " + source +
                                                "apt-get update -qq && apt-get install -y -qq " + " ".join(packages[node])])
        return timed(argv)

    start = time.monotonic()
    with ThreadPoolExecutor(len(packages)) as pool:
        list(pool.map(floor, packages))
    apt_floor = time.monotonic() - start
    lab.down(loaded)
    print(f"first deploy: {first:.0f} s; apt floor (same packages, parallel, warm cache): {apt_floor:.0f} s "
          f"-> {first / apt_floor:.2f} x (goal <= 1.3)")
    print(f"second deploy: {second:.0f} s -> {100 * second / first:.0f} % of the first (goal <= 20 %)")
    print("packages:", packages)


if __name__ == "__main__":
    main()

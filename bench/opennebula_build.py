"""OpenNebula's packages built from the release source (installer/lab/onebuild.py): a cold build
into an empty cache (compile, stage, package), then the same call again (from the cache), then a
packaging change alone (the compiled tree reused). Prints the times and each package's size.

Run as root: .venv/bin/python bench/opennebula_build.py (about 5 minutes on 2 cores; uses a
temporary cache, so the lab's own is left alone; run it on an idle machine)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def run(cache: Path, *extra: str) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "installer", "lab", "packages", "--json", *extra],
                          capture_output=True, text=True, cwd=TOP, env={**os.environ, "ONEHCI_OPENNEBULA_CACHE": str(cache)})
    if proc.returncode != 0:
        sys.exit(f"onehci lab packages exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.monotonic() - start, proc.stdout


def main() -> None:
    import json

    with tempfile.TemporaryDirectory(prefix="onehci-bench-build-", dir="/var/tmp") as work:
        cache = Path(work)
        cold, out = run(cache)
        cached, _ = run(cache)
        for build in cache.glob("7.0.2-*"):  # the packages only: the compiled tree stays
            subprocess.run(["rm", "-rf", str(build)], check=True)
        repackaged, _ = run(cache)
        stage = next(cache.glob("stage-*"))
        stage_mb = sum(p.lstat().st_size for p in stage.rglob("*") if p.is_file()) / 1e6
    build = json.loads(out)
    print(f"cold build (unpack, patch, scons, install.sh, package): {cold:.0f} s; cached: {cached:.1f} s; "
          f"packaging alone (compiled tree cached): {repackaged:.1f} s; staged tree {stage_mb:.0f} MB")
    for deb in build["debs"]:
        print(f"  {deb['file']}: {deb['size'] / 1e6:.2f} MB, installed {deb['installed_kib'] / 1024:.1f} MiB")


if __name__ == "__main__":
    main()

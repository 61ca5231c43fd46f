"""`onehci image build` from nothing (a new image cache) for the lab profile, then again with nothing to
change, and what the image weighs. The packages come through apt-cacher-ng: a warm apt-cacher-ng cache
(after any earlier build or lab) makes this the build time without downloads.
Run as root: .venv/bin/python bench/image_build.py"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    onehci = str(Path(sys.executable).parent / "onehci")
    with tempfile.TemporaryDirectory(prefix="onehci-bench-image-", dir="/var/tmp") as cache:
        env = {**os.environ, "ONEHCI_IMAGE_CACHE": cache}
        env.pop("ONEHCI_IMAGE", None)
        for label in ("from nothing", "again, nothing to change"):
            start = time.perf_counter()
            proc = subprocess.run([onehci, "image", "build", "--json", "--profile", "lab"], capture_output=True,
                                  text=True, env=env)
            took = time.perf_counter() - start
            assert proc.returncode == 0, proc.stderr
            info = json.loads(proc.stdout)
            print(f"image build, {label}: {took:.1f} s")
        mib = 1 << 20
        print(f"image: {info['packages']} packages, kernel {info['kernel']}; root.tar.zst {info['archive_bytes'] / mib:.0f} MiB, "
              f"{info['unpacked_bytes'] / mib:.0f} MiB unpacked; installer environment "
              f"{info['installer_bytes'] / mib:.1f} MiB")


if __name__ == "__main__":
    main()

"""`onehci pxe build` of a generated 1,000-node site: first build (copies the netboot tree),
and a rebuild with nothing to change. Run: .venv/bin/python bench/pxe_build.py"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foundation import big_site  # noqa: E402


def main() -> None:
    onehci = str(Path(sys.executable).parent / "onehci")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.yml"
        # the preseed path, as measured before the image install (an image tree adds one copy of the image)
        site.write_text(big_site(1000).replace("interface: eno1}", "interface: eno1, install: debian-installer}"))
        env = {**os.environ, "ONEHCI_STATE_DIR": str(Path(tmp) / "state")}
        for label in ("first build", "rebuild, nothing to change", "rebuild, nothing to change"):
            start = time.perf_counter()
            proc = subprocess.run([onehci, "pxe", "build", "--out", str(Path(tmp) / "pxe"), str(site)],
                                  capture_output=True, text=True, env=env)
            took = time.perf_counter() - start
            assert proc.returncode == 0, proc.stderr
            print(f"pxe build, 1,000 nodes, {label}: {took:.2f} s  ({proc.stdout.strip()})")


if __name__ == "__main__":
    main()

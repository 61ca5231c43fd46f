"""`onehci smoke` on the deployed lab: each step's time, each guest's time from its start to its
own "up" line, and the live migration's time. Runs it ROUNDS times.
Run as root on a deployed lab: .venv/bin/python bench/smoke.py [ROUNDS] (about 2 minutes a round)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from installer.siteinit import profile_site  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    for n in range(rounds):
        proc = subprocess.run([sys.executable, "-m", "installer", "smoke", "--json", str(profile_site("lab"))],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"smoke failed: {proc.stderr[-3000:]}")
        result = json.loads(proc.stdout)
        steps = ", ".join(f"{s['name']} {s['seconds']} s" for s in result["steps"])
        guests = ", ".join(f"{g['host']} {g['up_seconds']} s" for g in result["guests"])
        moved = result["migrated"]
        print(f"round {n + 1}: {steps}\n  guest up after RUNNING: {guests}\n"
              f"  live migration {moved['from']} -> {moved['to']}: {moved['seconds']} s")


if __name__ == "__main__":
    main()

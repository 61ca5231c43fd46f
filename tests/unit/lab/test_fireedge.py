"""FireEdge's packaged tree (installer/lab/fireedge.py): only the npm packages its server requires,
and theirs, found as Node.js finds them; no source map. The build itself runs with the lab's
OpenNebula build (tests/lab)."""

from __future__ import annotations

import json
from pathlib import Path

from installer.lab import fireedge


def package(where: Path, name: str, **deps: str) -> Path:
    path = where / "node_modules" / name
    path.mkdir(parents=True)
    (path / "package.json").write_text(json.dumps({"name": name, "dependencies": deps}))
    return path


def test_prune_keeps_what_the_server_loads_as_node_would_find_it(tmp_path):
    top = tmp_path / "fireedge"
    (top / "dist/client").mkdir(parents=True)
    (top / "dist/index.js").write_text('const e = require("express"); require("@mui/styles/x"); require("fs");'
                                       "require('./local');")
    (top / "dist/client/app.js.map").write_text("{}")
    (top / "dist/index.js.map").write_text("{}")
    express = package(top, "express", debug="2", accepts="1")
    package(top, "accepts")
    package(top, "debug")  # the top one is another version: express uses its own nested copy
    nested = package(express, "debug", ms="2")
    package(top, "ms")
    package(top, "@mui/styles", clsx="1")
    package(top, "clsx")
    package(top, "webpack", acorn="8")  # a build tool: not required by the server
    package(top, "acorn")
    package(top / "node_modules/webpack", "acorn")  # nested in a package that goes: goes with it
    kept = fireedge.prune(top)
    assert kept == ["@mui/styles", "accepts", "clsx", "express", "express/node_modules/debug", "ms"]
    assert nested.is_dir() and not (top / "node_modules/debug").exists()
    assert not (top / "node_modules/webpack").exists() and not (top / "node_modules/acorn").exists()
    assert not list(top.rglob("*.map")) and (top / "dist/index.js").exists()

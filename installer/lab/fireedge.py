"""FireEdge, OpenNebula's web UI, built from the same release source for the lab's packages
(installer/lab/onebuild.py calls `build`, then `prune` on the staged tree).

The build is OpenNebula's own (src/fireedge/build.sh): `npm ci` of the pinned lockfile from the
npm registry, then `npm run build` (webpack: the client, the server, eight UI modules). Two
things differ, both because these machines reach the npm registry and Debian only:
- zeromq's native module is compiled against Debian's libzmq (`zmq_external`) instead of a
  binary or a libzmq source fetched from GitHub;
- that module is compiled for the Node.js the nodes run (Debian 12's 18.x, whose headers come from
  Debian's libnode-dev, unpacked here, not installed), not for this machine's Node.js.
The server loads its npm packages at run time: only those it requires, and what they require,
are packaged (not webpack, babel and the other build tools), without source maps.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from installer.errors import OnehciError

NODE_HEADERS = "libnode-dev"  # Debian 12's Node.js headers, for the native module
OPENSSL_LEGACY = """openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
legacy = legacy_sect
[default_sect]
activate = 1
[legacy_sect]
activate = 1
"""
NPM_CACHE = Path("/var/cache/onehci/npm")  # npm's own download cache, kept between builds

Run = Callable[..., None]  # onebuild._run(argv, cwd, log, what, env=...)


# Debian packages the build needs besides Node.js and npm: zeromq's module is compiled against
# libzmq, with libuv's headers (Debian's Node.js headers include uv.h from the system)
BUILD_DEPENDS = ("libzmq3-dev", "libuv1-dev", "make", "g++")


def build(tree: Path, log: Path, run: Run, installed: Callable[[str], bool] | None = None) -> None:
    """Build FireEdge in TREE (src/fireedge of the patched source)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise OnehciError("FireEdge needs node and npm on this machine (apt-get install nodejs npm)")
    if installed is not None:
        missing = [p for p in BUILD_DEPENDS if not installed(p)]
        if missing:
            raise OnehciError(f"missing build dependencies of FireEdge: {', '.join(missing)} (install with "
                              f"`apt-get install {' '.join(missing)}`); nothing was built or published")
    work = tree / ".onehci"
    work.mkdir()
    (work / "openssl.conf").write_text(OPENSSL_LEGACY)  # as build.sh: webpack 5's md4 under OpenSSL 3
    headers = _node_headers(work, log, run)
    env = {"npm_config_zmq_external": "true", "npm_config_nodedir": str(headers), "npm_config_cache": str(NPM_CACHE),
           "npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false",
           "OPENSSL_CONF": str(work / "openssl.conf"), "NODE_OPTIONS": "--openssl-legacy-provider"}
    run(["npm", "ci", "--omit=dev", "--no-progress"], tree, log, "FireEdge's npm ci", env=env)
    run(["npm", "run", "build"], tree, log, "FireEdge's build (npm run build)", env={**env, "NODE_ENV": "production"})
    zmq = next((p for p in (tree / "node_modules/zeromq/build/Release").glob("*.node")), None)
    if zmq is None:
        raise OnehciError(f"FireEdge's zeromq module was not compiled; see {log}")


def _node_headers(work: Path, log: Path, run: Run) -> Path:
    """Debian 12's Node.js headers, unpacked from its libnode-dev package (not installed: this
    machine may run another Node.js), as a node-gyp `nodedir`."""
    run(["apt-get", "download", NODE_HEADERS], work, log, f"apt-get download {NODE_HEADERS}")
    deb = next(work.glob(f"{NODE_HEADERS}_*.deb"))
    run(["dpkg-deb", "-x", str(deb), str(work / "node")], work, log, f"unpacking {deb.name}")
    nodedir = work / "node/usr"
    if not (nodedir / "include/node/node.h").exists():
        raise OnehciError(f"{deb.name} holds no include/node/node.h")
    return nodedir


_REQUIRE = re.compile(r"""require\(["']([^"'./][^"']*)["']\)""")


def prune(fireedge: Path) -> list[str]:
    """Keep in FIREEDGE (the staged /usr/lib/one/fireedge) the npm packages the server requires
    and their dependencies, and no source map; returns the packages kept."""
    modules = fireedge / "node_modules"
    wanted: list[tuple[Path, str]] = []
    for bundle in (fireedge / "dist").glob("index*.js"):
        wanted += [(modules, _package_name(m)) for m in _REQUIRE.findall(bundle.read_text(errors="replace"))]
    keep: set[Path] = set()
    while wanted:
        base, name = wanted.pop()
        found = _resolve(base, name, modules)
        if found is None or found in keep:
            continue  # a Node.js built-in module, or an optional dependency npm did not install
        keep.add(found)
        meta = json.loads((found / "package.json").read_text())
        for key in ("dependencies", "optionalDependencies", "peerDependencies"):
            wanted += [(found / "node_modules", dep) for dep in meta.get(key) or {}]
    for package in _installed(modules):
        if package not in keep and package.exists():  # (one nested in a package removed before is gone)
            shutil.rmtree(package)
    for leftover in sorted(modules.rglob("node_modules"), reverse=True):  # now-empty nesting
        if leftover.is_dir() and not any(leftover.iterdir()):
            leftover.rmdir()
    for source_map in fireedge.rglob("*.map"):
        source_map.unlink()
    return sorted(str(p.relative_to(modules)) for p in keep)


def _package_name(module: str) -> str:
    parts = module.split("/")
    return "/".join(parts[:2]) if module.startswith("@") else parts[0]


def _resolve(base: Path, name: str, top: Path) -> Path | None:
    """Where Node.js finds package NAME required by a package whose own node_modules is BASE:
    there, then in every node_modules further up, to the top one (npm's layout)."""
    for directory in (base, *base.parents):
        if directory.name == "node_modules" and (directory == top or top in directory.parents):
            if (directory / name / "package.json").exists():
                return directory / name
    return None


def _installed(modules: Path) -> list[Path]:
    """Every package directory under MODULES, nested ones included."""
    found = []
    for entry in modules.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.name.startswith("@"):
            found += [p for p in entry.iterdir() if p.is_dir()]
        elif entry.is_dir():
            found.append(entry)
    for package in list(found):
        if (package / "node_modules").is_dir():
            found += _installed(package / "node_modules")
    return found

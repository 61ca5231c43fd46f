"""Reading site.yml: YAML with line numbers, the model, the cross-field checks, and
every problem reported at once as FILE:LINE dotted.field: message.

Also writes allocated addresses back into the file, keeping comments and order.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer import yamlpos
from installer.errors import OnehciError, Problem, SiteInvalid, printable

Loc = tuple[Any, ...]

# Keys a technician might write instead of a hash; refused with a pointer to hash-password.
_PLAINTEXT_KEYS = {"password", "root_password", "root_pass", "passwd", "root_passwd"}


def dotted(loc: Loc) -> str:
    """('nodes', 2, 'mac') -> 'nodes[2].mac'"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class LoadedSite:
    """A site that passed validation, with its warnings and where its lines are."""

    path: Path
    site: Any  # installer.site.Site
    locator: yamlpos.Parsed
    warnings: list[Problem] = field(default_factory=list)


MAX_SIZE = 4 * 1024 * 1024  # bytes: a 1,000-node site is about 300 KB


def read_text(path: Path) -> str:
    """A site file's text: a regular file (a link to one is followed), of a sane size, UTF-8;
    anything else is one clear line (a FIFO would hang, /dev/zero would fill the memory)."""
    name = printable(str(path))
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OnehciError(f"{name}: no such file (create one with `onehci init --profile NAME DIR`)") from None
    except IsADirectoryError:
        raise OnehciError(f"{name}: is a directory, not a site file") from None
    except PermissionError:
        raise OnehciError(f"{name}: permission denied") from None
    except OSError as exc:  # a loop of symbolic links, a name too long...
        raise OnehciError(f"{name}: cannot be opened: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise OnehciError(f"{name}: is a directory, not a site file")
        raise OnehciError(f"{name}: is not a regular file (a device, a FIFO or a socket), not a site file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise OnehciError(f"{name}: larger than {MAX_SIZE // (1024 * 1024)} MiB: not a site file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OnehciError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def read_yaml(path: Path) -> yamlpos.Parsed:
    """Parse a site file's YAML, keeping lines, or raise a clear error."""
    name = str(path)
    text = read_text(path)
    try:
        parsed = yamlpos.parse(text)
    except yamlpos.YamlError as exc:
        col = f" column {exc.column}" if exc.column else ""
        raise SiteInvalid([Problem(name, exc.line, "", f"YAML syntax error{col}: {exc.message}")]) from None
    if not isinstance(parsed.data, dict):
        raise SiteInvalid([Problem(name, parsed.line(()) or 1, "",
                                   "a site file is a YAML mapping starting with 'format: 1'")])
    return parsed


def load(path: str | Path) -> LoadedSite:
    """Load and validate a site file; raise SiteInvalid listing every error and warning."""
    from pydantic import ValidationError

    from installer import checks
    from installer.site import Site

    path = Path(path)
    locator = read_yaml(path)
    data = locator.data
    if "format" not in data and not set(map(str, data)) & set(Site.model_fields):
        # another kind of file (a mistyped path, a link to /etc/passwd): one line, none of its content
        raise SiteInvalid([Problem(str(path), 1, "", "not a site file: it has no 'format: 1' and none of a "
                                   "site's sections (cluster, networks, bootstrap, access, nodes...)")])
    if data.get("format") not in (None, 1) and isinstance(data.get("format"), int):
        raise SiteInvalid([Problem(str(path), locator.line(("format",)), "format",
                                   f"unknown format {data['format']}; this onehci reads format 1")])
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        problems = [_from_pydantic(err, str(path), locator, data) for err in exc.errors()]
        raise SiteInvalid(_dedupe(problems)) from None
    problems = [Problem(str(path), locator.line(loc), dotted(loc), message, severity)
                for loc, message, severity in checks.check(site, locator.line)]
    if any(p.severity == "error" for p in problems):
        raise SiteInvalid(problems)
    return LoadedSite(path, site, locator, problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Drop repeats, and the "missing" error of a field whose misspelling was already
    reported with a suggestion (one typo, one message)."""
    suggested = {(p.field.rsplit(".", 1)[0] + "." if "." in p.field else "")
                 + p.message.split("did you mean '")[1].rstrip("'?")
                 for p in problems if "did you mean '" in p.message}
    seen, out = set(), []
    for p in problems:
        if p.message == "required field is missing" and p.field in suggested:
            continue
        if (p.line, p.field, p.message) not in seen:
            seen.add((p.line, p.field, p.message))
            out.append(p)
    return out


def _known_fields(loc: Loc) -> list[str]:
    """The field names the model accepts at the mapping holding `loc`."""
    from installer import site as model

    cls: Any = model.Site
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = cls.model_fields.get(part) if hasattr(cls, "model_fields") else None
        if info is None:
            return []
        cls = _model_in(info.annotation)
        if cls is None:
            return []
    return list(getattr(cls, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _from_pydantic(err: dict, file: str, locator: yamlpos.Parsed, data: Any) -> Problem:
    loc = _user_loc(err["loc"], data)
    kind, value = err["type"], err.get("input")
    field_name = dotted(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if key.lower() in _PLAINTEXT_KEYS or ("password" in key.lower() and "hash" not in key.lower()):
            msg = ("plaintext passwords are not accepted; run `onehci hash-password` and put its "
                   "output in access.root_password_hash")
        else:
            close = difflib.get_close_matches(key, _known_fields(loc), n=1, cutoff=0.6)
            shown = key if len(key) <= 40 else key[:40] + "..."
            msg = f"unknown field '{shown}'" + (f"; did you mean '{close[0]}'?" if close else "")
            field_name = dotted(loc[:-1] + (shown,))
        return Problem(file, locator.line(loc), field_name, msg)
    if kind == "missing":
        return Problem(file, locator.line(loc), field_name, "required field is missing")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        if loc == ("format",):
            msg = f"unknown format {value!r}; this onehci reads format 1"
        else:
            msg = f"{value!r} is not one of {expected}"
        return Problem(file, locator.line(loc), field_name, msg)
    if kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        return Problem(file, locator.line(loc), field_name, msg)
    if kind in ("too_short", "list_type") and isinstance(value, list) and not value:
        return Problem(file, locator.line(loc), field_name, "must not be empty")
    if kind.endswith("_type") or kind in ("model_type", "model_attributes_type"):
        expected = {"int_type": "a whole number", "string_type": "text", "bool_type": "true or false",
                    "list_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
                    "float_type": "a number"}.get(kind, kind.replace("_type", ""))
        return Problem(file, locator.line(loc), field_name, f"expected {expected}, got {_shown(value)}")
    return Problem(file, locator.line(loc), field_name, err["msg"][0].lower() + err["msg"][1:])


def _user_loc(raw: Loc, data: Any) -> Loc:
    """Pydantic's location without its own markers (union branches, validator names):
    keep the parts that exist in the document, and a final missing field name."""
    loc: list = []
    node = data
    for i, part in enumerate(raw):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and i == len(raw) - 1:
            pass  # a required field that is missing
        else:
            continue
        loc.append(part)
    return tuple(loc)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, str):
        return f"'{value[:40]}' (text)"
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list"}.get(type(value), type(value).__name__)


def write_addresses(path: Path, addresses: dict[str, str]) -> list[str]:
    """Pin allocated addresses: add `ip: X` after the `mac:` value of each named node that has
    none. The rest of the file is kept byte for byte (comments, order, quoting, line endings).
    Returns the hostnames written. The new text must load as the same site with the addresses
    pinned before it replaces the file, atomically; a symbolic link named as the site file
    stays a link (its target is rewritten)."""
    import tempfile

    target = path.resolve()
    text = read_text(path)
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    parsed = yamlpos.parse(text)
    replace: dict[int, str] = {}  # 0-based line -> its new text
    insert: dict[int, str] = {}  # 0-based line -> text inserted before it
    written = []
    for i, node in enumerate(parsed.data.get("nodes") or []):
        name = node.get("hostname") if isinstance(node, dict) else None
        if name not in addresses or node.get("ip"):
            continue
        mapping = parsed.nodes[("nodes", i)]
        if mapping.flow_style:
            raise OnehciError(f"{path}: node {name} is written on one line ({{...}}); add "
                              f"'ip: {addresses[name]}' to it by hand")
        keys = {k.value: (k, v) for k, v in mapping.value if hasattr(k, "value")}
        if "ip" in keys:  # `ip:` present but empty: fill it in, keeping any comment
            row, col = keys["ip"][0].start_mark.line, keys["ip"][0].start_mark.column
            comment = lines[row][lines[row].find("#"):].rstrip("\r\n") if "#" in lines[row] else ""
            replace[row] = f"{' ' * col}ip: {addresses[name]}" + (f"  {comment}" if comment else "") + newline
        else:
            key, value = keys["mac"]
            end = value.end_mark  # after the value, wherever it ends (next line, block scalar)
            row = end.line if end.column == 0 else end.line + 1
            insert[row] = insert.get(row, "") + f"{' ' * key.start_mark.column}ip: {addresses[name]}{newline}"
        written.append(name)
    if not written:
        return []
    if lines and not lines[-1].endswith(("\n", "\r")) and len(lines) in insert:
        lines[-1] += newline
    new_text = "".join(insert.get(i, "") + replace.get(i, line) for i, line in enumerate(lines)) + insert.get(len(lines), "")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(new_text)
        _check_pinned(Path(tmp), path, {n: addresses[n] for n in written})
        os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written


def _check_pinned(candidate: Path, path: Path, pinned: dict[str, str]) -> None:
    """The rewritten text must still be a valid site whose nodes now carry the pinned addresses."""
    try:
        site = load(candidate).site
    except OnehciError as exc:
        raise OnehciError(f"{path}: adding the addresses would not give a valid site file ({exc}); the file was "
                          "not changed: add the ip: lines by hand") from None
    found = {n.hostname: str(n.ip) for n in site.nodes if n.hostname in pinned}
    if found != pinned:
        raise OnehciError(f"{path}: adding the addresses did not pin them as planned; the file was not changed: "
                          "add the ip: lines by hand")

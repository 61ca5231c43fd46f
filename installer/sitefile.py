"""Reading site.yml: YAML with line numbers, the model, the cross-field checks, and
every problem reported at once as FILE:LINE dotted.field: message.

Also writes allocated addresses back into the file, keeping comments and order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer import yamlpos
from installer.errors import OnehciError, Problem, SiteInvalid

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


def read_yaml(path: Path) -> yamlpos.Parsed:
    """Parse a site file's YAML, keeping lines, or raise a clear error."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OnehciError(f"{name}: no such file (create one with `onehci init --profile NAME DIR`)") from None
    except IsADirectoryError:
        raise OnehciError(f"{name}: is a directory, not a site file") from None
    except PermissionError:
        raise OnehciError(f"{name}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise OnehciError(f"{name}: not UTF-8 text (byte {exc.start})") from None
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
            msg = f"unknown field '{key}'" + (f"; did you mean '{close[0]}'?" if close else "")
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
    """Pin allocated addresses: add `ip: X` right after the `mac:` line of each named node
    that has none. The rest of the file is kept byte for byte (comments, order, quoting).
    Returns the hostnames written. The file is replaced atomically."""
    import os
    import tempfile

    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    parsed = yamlpos.parse(text)
    edits: dict[int, str] = {}  # 0-based line -> replacement text for that line
    written = []
    for i, node in enumerate(parsed.data.get("nodes") or []):
        name = node.get("hostname") if isinstance(node, dict) else None
        if name not in addresses or node.get("ip"):
            continue
        mapping = parsed.nodes[("nodes", i)]
        if mapping.flow_style:
            raise OnehciError(f"{path}: node {name} is written on one line ({{...}}); add "
                              f"'ip: {addresses[name]}' to it by hand")
        keys = {k.value: k.start_mark for k, _ in mapping.value if hasattr(k, "value")}
        if "ip" in keys:  # `ip:` present but empty: fill it in, keeping any comment
            row, col = keys["ip"].line, keys["ip"].column
            comment = lines[row][lines[row].find("#"):] if "#" in lines[row] else ""
            edits[row] = f"{' ' * col}ip: {addresses[name]}" + (f"  {comment}" if comment else "\n")
        else:
            row, col = keys["mac"].line, keys["mac"].column
            edits[row] = lines[row] + (
                "" if lines[row].endswith("\n") else "\n") + f"{' ' * col}ip: {addresses[name]}\n"
        written.append(name)
    if not written:
        return []
    new_text = "".join(edits.get(i, line) for i, line in enumerate(lines))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written

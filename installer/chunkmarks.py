"""Chunk disks a day-2 operation has marked for removal (a drain), kept in the state directory
(chunk_marks.json): the inventory carries them to the chunkserver role, which renders them, so a
deploy run in the middle of a rebuild keeps the drain instead of quietly undoing it."""

from __future__ import annotations

from installer import state

_MARKS = "chunk_marks.json"


def disk_id(entry) -> str:
    """The identifier the chunkserver role gives a chunk disk: its by-id path or serial:X."""
    return f"serial:{entry['serial']}" if isinstance(entry, dict) else str(entry)


def marks(site_path) -> dict[str, list[str]]:
    """{node: [disk ids]} marked for removal by an operation."""
    return state.read_json(state.state_dir(site_path) / _MARKS, {})


def record(site_path, node: str, disks: list[str]) -> None:
    with state.locked(state.ensure(state.state_dir(site_path)), "marks"):
        data = marks(site_path)
        if disks:
            data[node] = disks
        else:
            data.pop(node, None)
        state.write_json(state.state_dir(site_path) / _MARKS, data)

"""Paths named inside data files (index.json rows, manifest shard lists) stay inside the folder they describe."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def inside(root: Path, relative, source: Path) -> Path:
    """`root / relative`, refused with a ValueError naming `source` unless `relative` is a plain relative path
    without '..': a scene file or manifest from elsewhere must not make a stage read or overwrite other files."""
    parts = PurePosixPath(relative).parts if isinstance(relative, str) and "\\" not in relative else ()
    if not parts or parts[0] == "/" or ".." in parts or Path(relative).is_absolute():
        raise ValueError(f"{source}: refuses path {relative!r}, which is not inside {root}")
    return Path(root) / relative

"""Files a stage reads and writes: paths named inside data files (index.json rows, manifest shard lists) stay
inside the folder they describe, and a failed write (full disk, lost folder) names the file it was writing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath


def inside(root: Path, relative, source: Path) -> Path:
    """`root / relative`, refused with a ValueError naming `source` unless `relative` is a plain relative path
    without '..': a scene file or manifest from elsewhere must not make a stage read or overwrite other files."""
    parts = PurePosixPath(relative).parts if isinstance(relative, str) and "\\" not in relative else ()
    if not parts or parts[0] == "/" or ".." in parts or Path(relative).is_absolute():
        raise ValueError(f"{source}: refuses path {relative!r}, which is not inside {root}")
    return Path(root) / relative


@contextmanager
def writing(path: Path, what: str = "file") -> Iterator[None]:
    """Re-raise an OSError of the block as one naming `path`: "[Errno 27] File too large" alone does not say
    which of a run's files could not be written."""
    try:
        yield
    except OSError as err:
        if str(path) in str(err):
            raise
        raise OSError(err.errno, f"{path}: cannot write the {what} ({err.strerror or err})") from err

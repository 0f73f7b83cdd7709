"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from generation.config import load_config
from generation.runner import run_scenes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def export_variant(tmp_path_factory) -> Path:
    """A tiny real variant that the ooo and mvtec3d export tests both read (generated once per session)."""
    out = tmp_path_factory.mktemp("export-variant")
    tiny = ["n_scenes=3", "cameras.views=4", "cameras.width=64", "cameras.height=64", "render.samples=4"]
    run_scenes(load_config(REPO / "assets/configs/demo.toml", tiny), out, progress=False)
    return out

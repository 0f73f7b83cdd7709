"""A newcomer's first command must not die on a missing system library (open3d links libusb-1.0.so.0)."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import textwrap

import pytest


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_every_stage_cli_imports_with_open3d_bound_to_the_shipped_libusb():
    """Whatever the machine has installed, open3d resolves libusb to the wheel's copy: no system package needed."""
    result = _python("""
        import generation.cli, preprocessing.cli, training.cli
        import generation.groundtruth, generation.shapes.folder, generation.anomalies.fracture
        import libusb_package
        maps = [line.split()[-1] for line in open('/proc/self/maps') if 'libusb' in line]
        print(sorted(set(maps)))
        print(libusb_package.get_library_path())
    """)
    assert result.returncode == 0, result.stderr
    loaded, shipped = result.stdout.strip().splitlines()
    assert loaded == repr([shipped]), f"libusb loaded from {loaded}, expected only the wheel's {shipped}"


@pytest.mark.parametrize("stage", ["generation", "preprocessing", "training"])
def test_every_stage_cli_answers_help(stage):
    result = subprocess.run([sys.executable, "-m", stage, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


@pytest.mark.skipif(ctypes.util.find_library("usb-1.0") is not None,
                    reason="this machine has a system libusb, so open3d loads without the wheel")
def test_without_the_wheel_or_a_system_libusb_the_error_names_the_fix():
    result = _python("""
        import sys
        sys.modules['libusb_package'] = None  # as if the wheel were not installed
        import generation.groundtruth
    """)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "libusb-1.0.so.0" in last and "make install" in last and "apt install libusb-1.0-0" in last

"""open3d, imported so that it works on a machine without the system libusb.

open3d's core library links `libusb-1.0.so.0` (for RealSense cameras, which this project never uses), and fresh
Debian/Ubuntu images lack it, so a plain `import open3d` dies there. The `libusb-package` wheel, a dependency,
ships that library; loading it first, globally, under its soname makes the dynamic loader resolve open3d's
dependency to it: no apt step, no root. Every module of the project imports open3d from here.
"""

from __future__ import annotations

import ctypes

LIBUSB_FIX = ("reinstall the project (`make install`, which installs the libusb-package wheel) or install the "
              "system package (Debian/Ubuntu: `apt install libusb-1.0-0`)")


def _preload_libusb() -> None:
    try:
        import libusb_package
    except ImportError:
        return  # a system libusb may still be there; the import below names the fix if not
    path = libusb_package.get_library_path()
    if path is not None:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


_preload_libusb()
try:
    import open3d
except ImportError as err:
    if "libusb" not in str(err):
        raise
    raise ImportError(f"open3d cannot load libusb-1.0.so.0 ({err}): {LIBUSB_FIX}") from err

__all__ = ["open3d"]

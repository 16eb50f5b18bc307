"""Find the CUDA tools the reports need (NVVM, ``ptxas``, ``nvdisasm``) without a GPU.

``ptxas`` and ``nvdisasm`` are looked up first in the NVIDIA wheels the ``cu12``/``cu13``
extras install (``nvidia/cuda_nvcc/bin`` from ``nvidia-cuda-nvcc-cu12``, ``nvidia/cu13/bin``
from ``nvidia-cuda-nvcc`` 13 and ``nvidia-cuda-nvdisasm``), then on the PATH, then in
``/usr/local/cuda*/bin``. No PATH change is needed.
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import sys

INSTALL_HINT = 'pip install -e ".[cu12]"  (or ".[cu13]")'
_WHEEL_BIN = ("nvidia/cuda_nvcc/bin", "nvidia/cu13/bin", "nvidia/cuda_nvdisasm/bin")


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    dirs += [user] if user else []
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    return list(dict.fromkeys(d for d in dirs if d and os.path.isdir(d)))


def candidates(tool: str) -> list[str]:
    """Every executable ``tool`` found, in preference order (wheels, PATH, /usr/local/cuda*)."""
    found = []
    for d in _site_dirs():
        for sub in _WHEEL_BIN:
            found.append(os.path.join(d, sub, tool))
    found.append(shutil.which(tool) or "")
    found += sorted(glob.glob(f"/usr/local/cuda*/bin/{tool}"), reverse=True)
    found = [os.path.realpath(p) for p in found if p and os.access(p, os.X_OK)]
    return list(dict.fromkeys(found))


def find(tool: str) -> str | None:
    """The preferred ``tool`` executable, or None."""
    c = candidates(tool)
    return c[0] if c else None


def nvvm_error() -> str | None:
    """Why NVVM (needed by ``compile_ptx``) cannot load, or None when it can."""
    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
    except Exception as e:  # noqa: BLE001 - any failure means no PTX can be made
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return None


def missing(tools: tuple[str, ...] = ("ptxas", "nvdisasm")) -> str | None:
    """One line naming what is missing and how to install it, or None when all is there."""
    gone = [] if nvvm_error() is None else ["NVVM (libnvvm)"]
    gone += [t for t in tools if find(t) is None]
    if not gone:
        return None
    return f"missing {', '.join(gone)}: install the CUDA compiler wheels with {INSTALL_HINT}"

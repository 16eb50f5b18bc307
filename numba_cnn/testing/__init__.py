"""Independent NumPy references, tolerances and gradient checks, shipped with the package.

``reference`` imports nothing from the rest of ``numba_cnn``: it is the other opinion.
"""

from . import reference
from .gradcheck import gradcheck
from .harness import check, host, on, randn
from .tolerances import TOLERANCES, assert_close

__all__ = [
    "reference",
    "gradcheck",
    "check",
    "host",
    "on",
    "randn",
    "TOLERANCES",
    "assert_close",
]

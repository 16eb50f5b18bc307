"""The principles of CNNs, measured by the library on itself (``numba-cnn principles``).

One module per experiment, each ``run(data, cfg, out) -> (results, figure names)``:
``sharing`` (parameter sharing), ``translation`` (shifted inputs), ``hierarchy`` (filters,
feature maps, receptive fields, top patches), ``activations`` (ReLU/sigmoid/tanh, optimizers),
``calibration`` (softmax and cross-entropy). ``run`` runs them all and writes
``principles.json``; ``docs/principles.md`` explains the results.
"""

from .calibration import expected_calibration_error
from .hierarchy import measured_receptive_fields, receptive_fields
from .runner import EXPERIMENTS, run

__all__ = [
    "run",
    "EXPERIMENTS",
    "receptive_fields",
    "measured_receptive_fields",
    "expected_calibration_error",
]

"""The functional API: every op forward and backward, as in ``torch.nn.functional``.

>>> import numpy as np
>>> from numba_cnn import functional as F
>>> F.relu(np.array([-1.5, 2.0], dtype=np.float32))
array([0., 2.], dtype=float32)
"""

from .ops.activation import (  # noqa: F401
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    tanh,
    tanh_backward,
)
from .ops.batch_norm import (  # noqa: F401
    batch_norm,
    batch_norm_backward,
)
from .ops.conv2d import (  # noqa: F401
    conv2d,
    conv2d_backward,
)
from .ops.dropout import (  # noqa: F401
    dropout,
    dropout_backward,
)
from .ops.linear import (  # noqa: F401
    linear,
    linear_backward,
)
from .ops.pooling import (  # noqa: F401
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .ops.softmax import (  # noqa: F401
    cross_entropy,
    cross_entropy_backward,
    log_softmax,
    log_softmax_backward,
    softmax,
    softmax_backward,
)

__all__ = [
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax",
    "softmax_backward",
    "log_softmax",
    "log_softmax_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "linear",
    "linear_backward",
    "batch_norm",
    "batch_norm_backward",
    "dropout",
    "dropout_backward",
]

"""PLACEHOLDER: replaced by the op's real module (validation, allocation, dispatch)."""


def max_pool2d(*args, **kwargs):
    raise NotImplementedError('max_pool2d: not written yet')


def max_pool2d_backward(*args, **kwargs):
    raise NotImplementedError('max_pool2d_backward: not written yet')


def avg_pool2d(*args, **kwargs):
    raise NotImplementedError('avg_pool2d: not written yet')


def avg_pool2d_backward(*args, **kwargs):
    raise NotImplementedError('avg_pool2d_backward: not written yet')


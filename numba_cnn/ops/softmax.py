"""PLACEHOLDER: replaced by the op's real module (validation, allocation, dispatch)."""


def softmax(*args, **kwargs):
    raise NotImplementedError('softmax: not written yet')


def softmax_backward(*args, **kwargs):
    raise NotImplementedError('softmax_backward: not written yet')


def log_softmax(*args, **kwargs):
    raise NotImplementedError('log_softmax: not written yet')


def log_softmax_backward(*args, **kwargs):
    raise NotImplementedError('log_softmax_backward: not written yet')


def cross_entropy(*args, **kwargs):
    raise NotImplementedError('cross_entropy: not written yet')


def cross_entropy_backward(*args, **kwargs):
    raise NotImplementedError('cross_entropy_backward: not written yet')


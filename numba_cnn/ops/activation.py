"""PLACEHOLDER: replaced by the op's real module (validation, allocation, dispatch)."""


def relu(*args, **kwargs):
    raise NotImplementedError('relu: not written yet')


def relu_backward(*args, **kwargs):
    raise NotImplementedError('relu_backward: not written yet')


def leaky_relu(*args, **kwargs):
    raise NotImplementedError('leaky_relu: not written yet')


def leaky_relu_backward(*args, **kwargs):
    raise NotImplementedError('leaky_relu_backward: not written yet')


def sigmoid(*args, **kwargs):
    raise NotImplementedError('sigmoid: not written yet')


def sigmoid_backward(*args, **kwargs):
    raise NotImplementedError('sigmoid_backward: not written yet')


def tanh(*args, **kwargs):
    raise NotImplementedError('tanh: not written yet')


def tanh_backward(*args, **kwargs):
    raise NotImplementedError('tanh_backward: not written yet')


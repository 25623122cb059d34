"""losskit: loss functions with exact closed-form gradients, on any Array-API library."""
from ._primitives import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax, softplus

__version__ = "0.1.0"

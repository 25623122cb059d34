"""The core: what every loss stands on. Imports nothing else of losskit.

``arrays``      the array-library plumbing (Array API namespaces, devices, dtypes)
``validation``  argument checks and their messages
``primitives``  softmax, log_softmax, logsumexp, sigmoid, log_sigmoid, softplus
``loss``        the one ``Loss`` pipeline: validation, weights, reduction, gradient scaling,
                ``wrt=``, ``out=``; the registry behind ``lk.catalog()``
``dispatch``    the fast-path registry the pipeline consults (kernels register into it)
``progress``    a text progress bar for long runs
"""

__version__ = "0.1.0"

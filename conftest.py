"""pytest set-up for the whole repository (tests and the doctests of src/losskit)."""

import os

# Keras 3 picks its backend at import and defaults to TensorFlow, which the test extras do
# not install; JAX is (tests that need another backend run Keras in a subprocess)
os.environ.setdefault("KERAS_BACKEND", "jax")

# XLA compiles every jitted test function once; at the LLVM back end's optimisation level 0
# the suite's compilations take about a fifth less time (XLA's own HLO passes are the same;
# only LLVM's machine-code optimisation is skipped). A caller's own XLA_FLAGS win.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

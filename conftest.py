"""pytest set-up for the whole repository (tests and the doctests of src/losskit)."""

import os

# Keras 3 picks its backend at import and defaults to TensorFlow, which the test extras do
# not install; JAX is (tests that need another backend run Keras in a subprocess)
os.environ.setdefault("KERAS_BACKEND", "jax")

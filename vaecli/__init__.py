"""vaecli: a command-line experiment runner for variational autoencoders.

Importing this package is cheap: no JAX, TensorFlow or dataset work happens here.
"""

__version__ = "0.2.0"

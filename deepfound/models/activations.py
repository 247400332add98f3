"""The activation functions lambda of (17.3.1), by the names configs use (no Flax import)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
    # max(x, 0.2 x): the usual choice in GAN discriminators (Radford et al. 2016)
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),
    # x sigmoid(x): smooth, so a velocity field's Jacobian (the likelihood's trace) is continuous
    "silu": jax.nn.silu,
}

"""optax's own optimizers as registered rules: the baselines of section 17.3's experiments."""

from __future__ import annotations

import optax

from deepfound.optim.registry import RuleSpec, register_rule

register_rule(RuleSpec(
    name="adam", build=lambda c: optax.adam(c.learning_rate), oracle="minibatch",
    summary="optax.adam (Kingma and Ba 2015), the baseline of the network experiments",
))

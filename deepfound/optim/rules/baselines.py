"""optax's own optimizers as registered rules: the baselines of section 17.3's experiments."""

from __future__ import annotations

import optax

from deepfound.optim.registry import RuleSpec, register_rule
from deepfound.registry import Option


def _beta(value) -> str | None:
  return None if 0 <= value < 1 else "must be in [0, 1)"


register_rule(RuleSpec(
    name="adam",
    build=lambda c: optax.adam(c.learning_rate, b1=c.options["b1"], b2=c.options["b2"]),
    oracle="minibatch",
    summary="optax.adam (Kingma and Ba 2015), the baseline of the network experiments",
    options=(Option("b1", float, 0.9, "adam: decay of the first-moment average", _beta),
             Option("b2", float, 0.999, "adam: decay of the second-moment average", _beta)),
))

"""Pictures of section 17.3: training curves of the update rules on a net, decision regions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from deepfound.experiment import build
from deepfound.figures import io
from deepfound.optim import driver

ConfigFactory = Callable[[str], ml_collections.ConfigDict]  # method name -> config
METHODS = ("sgd", "sga", "sag", "saga", "svrg", "adam")  # the curves of the committed figure


def _train(config):
  problem = build.build_problem(config)
  method = build.build_method(config)
  hyper = driver.hyperparameters(config.optim.learning_rate, config.optim.l0)
  state, points = driver.run(problem, method, hyper, jax.random.PRNGKey(config.seed),
                             num_steps=config.num_steps, log_every=config.log_every)
  points = jax.device_get(points)
  epochs = driver.epochs_done(method, problem.num_samples, np.asarray(points.step))
  return problem, state, points, epochs


def training_curves(out: str, digits_config: ConfigFactory,
                    methods: Sequence[str] = METHODS) -> dict:
  """Update rules on the digits MLP, same epochs: objective and test accuracy."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
  series, final = [], {}
  for name in methods:
    _, _, points, epochs = _train(digits_config(name))
    accuracy = np.asarray(points.extras["test_accuracy"])
    axes[0].semilogy(epochs, points.objective, label=name)
    axes[1].plot(epochs, accuracy, label=name)
    series += [io.series(f"{name} objective", epochs, points.objective),
               io.series(f"{name} test accuracy", epochs, accuracy)]
    final[name] = dict(test_accuracy=float(accuracy[-1]), objective=float(points.objective[-1]),
                       epochs=float(epochs[-1]))
  axes[0].set(xlabel="epochs (sample gradients / n)", ylabel="training objective (log)")
  axes[1].set(xlabel="epochs (sample gradients / n)", ylabel="test accuracy", ylim=(0.9, 1.0))
  axes[0].legend()
  fig.suptitle("MLP 64-128-10 on digits, minibatch 32: the update rules of 17.1 and adam")
  data = dict(final=final, series=series)
  io.save(fig, "training_curves_mlp_digits", out, data)
  return data


def decision_regions(out: str, moons_config: ConfigFactory) -> dict:
  """What an MLP learns on two moons and on two spirals: its decision regions."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
  summary = {}
  for ax, data_name in zip(axes, ("moons", "spirals"), strict=True):
    config = moons_config("adam")
    config.data.name = data_name
    if data_name == "spirals":
      config.model.hidden, config.num_steps, config.log_every = (64, 64), 6000, 60
    problem, state, points, _ = _train(config)
    x, y = np.asarray(problem.features), np.asarray(problem.targets)
    grid = np.stack(np.meshgrid(*(np.linspace(x[:, k].min() - 0.5, x[:, k].max() + 0.5, 200)
                                  for k in range(2))), axis=-1)
    scores = np.asarray(problem.apply(state.params, grid.reshape(-1, 2).astype(x.dtype)))
    regions = np.argmax(scores, axis=-1).reshape(grid.shape[:2])
    ax.contourf(grid[..., 0], grid[..., 1], regions, levels=[-0.5, 0.5, 1.5], cmap="coolwarm",
                alpha=0.35)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=6, edgecolors="none")
    accuracy = float(points.extras["test_accuracy"][-1])
    ax.set(title=f"{data_name}: MLP {config.model.hidden} tanh, test accuracy {accuracy:.3f}",
           xticks=[], yticks=[])
    summary[data_name] = dict(test_accuracy=accuracy, hidden=list(config.model.hidden))
  fig.suptitle("Decision regions of MLPs trained with adam (17.3)")
  io.save(fig, "decision_regions", out, dict(summary=summary))
  return summary


def make_all(out: str, digits_config: ConfigFactory, moons_config: ConfigFactory) -> dict:
  """Both figures; the configs come from the caller (``scripts/nets_figures.py`` passes the
  repository's ``configs/mlp_digits.py`` and ``configs/mlp_moons.py``)."""
  return dict(training_curves=training_curves(out, digits_config)["final"],
              decision_regions=decision_regions(out, moons_config))

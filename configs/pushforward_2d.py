"""A push-forward generator h_theta # N(0, I) fitted to 2-D data by a minibatch Sinkhorn
divergence or MMD (section 17.4.1, "minimum Kantorovich estimators").

    python scripts/train.py --config=configs/pushforward_2d.py:ring --workdir=runs/push_ring
    python scripts/train.py --config=configs/pushforward_2d.py:grid,mmd --workdir=runs/push_grid_mmd

``:<data>[,<loss>]``: data ring, grid or moons; loss sinkhorn (the default; problem.epsilon on the
squared distance) or mmd (Gaussian kernels of widths problem.bandwidth * 2^k, k = 0..5, summed),
with the data set's scale of that loss (the other loss's key stays unset: a config sets only keys
its run reads, so --config.problem.loss=mmd alone is refused for its missing bandwidth). The
generator is an MLP from a 2-dimensional Gaussian latent (3 hidden layers of 128 relu units; MMD
on the grid: 256, and the weights' moving average reported, MMD below); each
step draws a minibatch of latents and as many data points (256; Sinkhorn on ring and moons: 128) and
takes the gradient of D(h_theta(z), x) with adam. Sinkhorn is unbalanced (problem.rho), with
epsilon scaled down within each solve of 100 iterations (SINKHORN below): about 12 ms a step on
a 2-core CPU; MMD runs in about a minute on the CPU. The latent dimension equals the data's
here, but the model has no tractable density: only a loss between samples can fit it. Logged: the
divergence between 1,000 generated and 1,000 test points (objective), and on ring and grid the
mode metrics on 2,500 samples.
"""

from deepfound.experiment import base_config
from deepfound.problems.divergences import PARAMETERS  # each loss's key of its scale

# Per data set: each loss's scale (from the modes' sd and spacing), and the schedule.
DATA = dict(
    ring=dict(problem=dict(epsilon=1e-3, bandwidth=0.01), num_steps=20_000,
              optim=dict(schedule="inverse_time", l0=5_000.0)),
    grid=dict(problem=dict(epsilon=1e-2, bandwidth=0.05), num_steps=40_000,
              optim=dict(schedule="constant")),
    moons=dict(problem=dict(epsilon=1e-3, bandwidth=0.02), num_steps=20_000,
               optim=dict(schedule="constant")),
)
# What makes the minibatch Sinkhorn estimator train (the sinkhorn_ring_5k_* cases of
# scripts/bench_generative.py measure each; results/README.md, "Generative models"): unbalanced
# transport (rho, in the squared distance's units: a minibatch holds each mode in another
# proportion than the data, and balanced transport drags points across modes to even the
# counts), epsilon scaled down within each solve from about the data's squared diameter
# (epsilon_start, epsilon_decay) over a fixed number of iterations (threshold 0: no convergence
# test), a decaying rate on ring and grid, and on the ring and moons minibatches of 128.
SINKHORN = dict(
    ring=dict(problem=dict(rho=0.1, epsilon_start=1.0), optim=dict(batch_size=128, l0=2_000.0)),
    grid=dict(problem=dict(rho=1.0, epsilon_start=10.0),
              optim=dict(batch_size=256, schedule="inverse_time", l0=5_000.0)),
    moons=dict(problem=dict(rho=0.1, epsilon_start=1.0), optim=dict(batch_size=128)),
)
SINKHORN_SOLVE = dict(epsilon_decay=0.8, sinkhorn_iterations=100, sinkhorn_threshold=0.0)
# MMD on the grid: a wider generator (3 x 256), the moving average of its weights (optim.ema) and
# twice the steps take the high-quality fraction from 0.861 to 0.931 (3 seeds; 0.906 at 40,000
# steps; each of the first two alone gave 0.880 and 0.871: the mmd_grid_* cases of
# scripts/bench_generative.py).
MMD = dict(grid=dict(model=dict(hidden=(256, 256, 256)), optim=dict(ema=0.999),
                     num_steps=80_000))


def get_config(arg: str = "ring"):
  data, _, loss = arg.partition(",")
  loss = loss or "sinkhorn"
  if data not in DATA or loss not in PARAMETERS:
    raise ValueError(f"unknown {arg!r}; expected <data>[,<loss>] with data in {', '.join(DATA)} "
                     f"and loss in {', '.join(PARAMETERS)}")
  config = base_config()
  config.data.name = data
  config.data.num_samples = 100_000
  config.model.name = "pushforward"
  config.model.latent_size = 2
  config.model.hidden = (128, 128, 128)
  config.problem.loss = loss
  config.problem[PARAMETERS[loss]] = DATA[data]["problem"][PARAMETERS[loss]]
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  config.optim.batch_size = 256
  config.optim.update(DATA[data]["optim"])
  if loss == "sinkhorn":
    config.problem.update(dict(SINKHORN_SOLVE, **SINKHORN[data]["problem"]))
    config.optim.update(SINKHORN[data]["optim"])
  config.num_steps = DATA[data]["num_steps"]
  if loss == "mmd" and data in MMD:
    config.model.update(MMD[data]["model"])
    config.optim.update(MMD[data]["optim"])
    config.num_steps = MMD[data]["num_steps"]
  config.log_every = 1_000
  config.checkpoint_every = 10_000
  return config

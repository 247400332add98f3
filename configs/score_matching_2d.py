"""Denoising score matching on 2-D data (Song et al. 2021): a noise-predicting network
eps(x, t), the score -eps / s(t), sampled by the probability-flow ODE and by the reverse SDE
(beyond 17.4; deepfound.models.flow_matching).

    python scripts/train.py --config=configs/score_matching_2d.py:ring --workdir=runs/sm_ring
    python scripts/train.py --config=configs/score_matching_2d.py:grid,ve --workdir=runs/sm_grid

``:<data>[,<schedule>]``: data ring, grid or moons (100,000 training points); schedule vp (beta
linear from 0.1 to 20, the default) or ve (s from 1e-3 to 5 in the standardized data's units).
The network is an MLP of 3 x 256 silu units on (x, t and 12 Fourier features of t), trained by adam
on minibatches of 256 for 30,000 steps.

Logged: the denoising loss on test points, score_error (s(t)^2 times the squared error of the
score against the exact score of the noised mixture, averaged over t), the mode metrics of 2,500
probability-flow samples (50 Heun steps). At the end: test_nll and kl_gap by the ODE likelihood,
the mode metrics and 2-Wasserstein distance of adaptive ODE samples, and the mode metrics of
reverse-SDE samples (1,000 Euler-Maruyama steps, sde_*).
"""

from configs import flow_matching_2d
from deepfound.models.flow_matching import SCHEDULES


def get_config(arg: str = "ring"):
  data, _, schedule = arg.partition(",")
  schedule = schedule or "vp"
  if data not in flow_matching_2d.DATA or schedule not in SCHEDULES:
    raise ValueError(f"unknown {arg!r}; expected <data>[,<schedule>] with data in "
                     f"{', '.join(flow_matching_2d.DATA)} and schedule in {', '.join(SCHEDULES)}")
  config = flow_matching_2d.get_config(data)  # the same network, rule and steps
  config.model.name = "score_matching"
  config.problem.loss = "denoising"
  config.problem.coupling = "independent"  # flow matching's key, at its default: unread here
  config.problem.schedule = schedule
  return config

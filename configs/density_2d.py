"""Density fitting by maximum likelihood on 2-D data (section 17.4.1).

    python scripts/train.py --config=configs/density_2d.py:ring --workdir=runs/flow_ring
    python scripts/train.py --config=configs/density_2d.py:grid,gmm --workdir=runs/gmm_grid

``:<data>[,<model>]``: data ring (PacGAN's 8 Gaussians of sd 0.01 on the unit circle), grid (25
Gaussians of sd 0.05 at {-4,-2,0,2,4}^2) or moons, with 100,000 training points and a held-out
test set; model
- flow (the default): a neural spline flow, 8 rational-quadratic spline couplings of 16 bins on
  [-3, 3] (the standardized data), each conditioned by 2 x 64 relu units, LU-factored linear
  layers between them, a standard normal base; adam 1e-3 decaying as 1 / (1 + t / 2000), batch
  256, 10,000 steps (10 seeds in one program: 4 minutes on 2 CPU cores);
- realnvp: the flow with affine couplings and nothing between them (RealNVP: 16 couplings of
  2 x 128 units, adam 1e-4, batch 512, 40,000 steps: an accelerator's size);
- gmm: as many components as the mixture has modes; adam with a decaying rate.
E_i = -log rho_theta(x_i) is a finite sum: any registered rule runs on it, e.g.
--config.optim.name=sag (one gradient per sample and parameter in memory: use fewer samples,
--config.data.num_samples=10000).
Logged: test_nll, and on ring and grid kl_gap (test NLL minus the mixture's entropy), the mode
metrics on 2,500 samples (modes_captured, high_quality_fraction, mode_kl). The README's table
gives what each reaches (scripts/bench_generative.py, 10 seeds).
"""

from deepfound.experiment import base_config

COMPONENTS = dict(ring=8, grid=25, moons=8)
# Per model: its own keys (a config sets only keys that its model reads), the rule's, the steps.
MODELS = dict(
    flow=dict(model=dict(name="flow", num_layers=8, hidden=(64, 64), num_bins=16),
              optim=dict(learning_rate=1e-3, schedule="inverse_time", l0=2_000.0, batch_size=256),
              num_steps=10_000),
    realnvp=dict(model=dict(name="flow", transform="affine", mixing="alternate", num_layers=16,
                            hidden=(128, 128)),
                 optim=dict(learning_rate=1e-4, batch_size=512), num_steps=40_000),
    gmm=dict(model=dict(name="gmm", num_components=COMPONENTS),  # by data set
             optim=dict(learning_rate=1e-2, schedule="inverse_time", l0=500.0, batch_size=1024),
             num_steps=40_000),
)


def get_config(arg: str = "ring"):
  data, _, model = arg.partition(",")
  model = model or "flow"
  if data not in COMPONENTS or model not in MODELS:
    raise ValueError(f"unknown {arg!r}; expected <data>[,<model>] with data in "
                     f"{', '.join(COMPONENTS)} and model in {', '.join(MODELS)}")
  config = base_config()
  config.data.name = data
  config.data.num_samples = 100_000
  config.model.update({key: value[data] if isinstance(value, dict) else value
                       for key, value in MODELS[model]["model"].items()})
  config.problem.loss = "nll"
  config.optim.name = "adam"
  config.optim.update(MODELS[model]["optim"])
  config.num_steps = MODELS[model]["num_steps"]
  config.log_every = 1_000
  config.checkpoint_every = 5_000 if model == "flow" else 10_000
  return config

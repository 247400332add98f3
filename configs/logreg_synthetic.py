"""The chapter's experiment on synthetic dense logistic data, the one the benchmarks scale.

    python scripts/train.py --config=configs/logreg_synthetic.py:sag --workdir=runs/synth_sag \
        --config.data.num_samples=20000 --config.data.num_features=100

Same methods and tour defaults as ``logreg_quantum.py``; x_i ~ N(0, I_p), noisy labels (see
``deepfound.data.make_logistic_data``). Defaults: n = 10000, p = 100, seed 0. Expected after the
default 100000 steps (10 epochs): SAG E - E* = 1.1e-5, SGD 1.1e-3.
"""

from configs import logreg_quantum


def get_config(method: str = "sag"):
  config = logreg_quantum.get_config(method)
  config.data.name = "synthetic"
  config.data.num_samples = 10_000
  config.data.num_features = 100
  config.data.seed = 0
  return config

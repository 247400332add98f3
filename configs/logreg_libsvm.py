"""Linear models on a LIBSVM file (rcv1, news20, real-sim, a9a, ...), sparse on the device.

    python scripts/train.py --config=configs/logreg_libsvm.py:saga --workdir=runs/rcv1_saga \
        --config.data.path=rcv1_train.binary --config.problem.l1=1e-5

The setting of scikit-learn's ``LogisticRegression(solver="sag"|"saga")``: l2 = 1/n (C = 1),
its automatic step (``optim.learning_rate=auto``), an unpenalized intercept, and its stopping
test (``optim.tol``, checked at epoch ends). Below 10 % density the data stay sparse and SGD,
SAG and SAGA take O(nnz of the row) steps (``data.sparse=auto``). ``num_steps`` is an upper
bound (20 epochs of rcv1's 20,242 rows by default); the run stops when it converges. Binary
labels must be -1/+1 or 0/1 (mapped, with a note in config.json); ``problem.loss=multinomial``
for classes.
"""

from configs import logreg_quantum

METHODS = ("sgd", "sag", "saga")


def get_config(method: str = "saga"):
  if method not in METHODS:
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
  config = logreg_quantum.get_config("sag" if method == "sag" else "sgd")
  config.data.name = "libsvm"
  config.optim.name = method
  config.num_steps = 20 * 20_242
  config.log_every = 20_242
  config.checkpoint_every = 5 * 20_242
  config.problem.fit_intercept = True
  config.problem.l2 = 1.0 / 20_242  # set it to 1/n for another file
  if method == "sgd":
    config.optim.learning_rate = 0.1
    config.optim.schedule = "inverse_time"
    config.optim.l0 = 20_242.0
  else:
    config.optim.learning_rate = "auto"
    config.optim.schedule = "constant"
    config.optim.tol = 1e-4
  if method == "sag":
    config.optim.average_over_seen = True
  return config

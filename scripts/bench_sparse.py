"""Benchmark of lazy SAG/SAGA on sparse data against scikit-learn, on one quiet machine.

    python scripts/bench_sparse.py         # writes results/bench/sparse.json and sparse.md
    python scripts/bench_sparse.py --scale=0.1 --groups=versus,memory   # a quick look

Synthetic sparse logistic data with rcv1's shape (n = 20,242, p = 47,236, about 74 non-zeros a
row, skewed feature frequencies, rows L2-normalized), written to a LIBSVM file and read back
through our loader; both sides get the same CSR matrix. Parts (--groups):

1. versus: SAG and SAGA seconds per epoch against LogisticRegression(solver='sag'|'saga'),
   same epochs, same step (scikit-learn's automatic step), L2 weight 1/n, no intercept; float64
   objectives of both final iterates against a float64 E*. versus_large: the same at 10 n.
2. p_scaling: marginal seconds per step at p = 472,360 over p = 47,236 (target <= 1.5).
3. memory: device bytes of the data and of the SAG state against the dense equivalent.
4. sweep: a 64-run learning-rate sweep (one vmapped program) against 64 scikit-learn fits.
5. blocks: lazy SAGA's microseconds a step, with and without L1, at log blocks of 10^3 to 10^6
   steps (written apart, to sparse_blocks.json and .md):
       python scripts/bench_sparse.py --groups=blocks
Timings are medians of repeated runs, compilation excluded (reported apart).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from deepfound.cli import flags_parser  # noqa: E402

_GROUPS = ("versus", "versus_large", "p_scaling", "memory", "sweep", "blocks")

flags.DEFINE_string("out", "results/bench", "Output directory (sparse.json, sparse.md).")
flags.DEFINE_float("scale", 1.0, "Fraction of rcv1's n (20,242) to use: < 1 for a quick run.")
flags.DEFINE_integer("num_features", 47_236, "p of the base set (p_scaling also runs at 10 p).")
flags.DEFINE_integer("nnz_per_row", 74, "Mean non-zeros per row.")
flags.DEFINE_integer("epochs", 10, "Epochs of both sides in versus / versus_large.")
flags.DEFINE_integer("sweep_epochs", 3, "Epochs of every run and fit of the sweep.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_integer("scaling_repeats", 5, "Timed pairs of p_scaling (median reported).")
flags.DEFINE_integer("scaling_steps", 100_000,
                     "S of p_scaling: the marginal cost is (t(3 S) - t(S)) / 2 S.")
flags.DEFINE_integer("sweep_fits", 64,
                     "scikit-learn fits of the sweep's 64 that are timed (then extrapolated).")
flags.DEFINE_list("scaling_methods", ["sag", "saga", "sgd"], "Rules timed by p_scaling.")
flags.DEFINE_list("groups", list(_GROUPS), f"Parts to run, some of {', '.join(_GROUPS)}.")
flags.DEFINE_list("cpus", [], "Pin the process (every thread JAX starts) to these CPU ids, e.g. "
                  "--cpus=0; default: not pinned.")


def main(argv):
  del argv
  from deepfound.cli import fail

  f = flags.FLAGS
  if f.cpus:  # before JAX starts its threads: they inherit the affinity
    try:
      os.sched_setaffinity(0, {int(c) for c in f.cpus})
    except (ValueError, OSError) as e:
      fail(f"--cpus: {e}")
  from deepfound.benchmarks import sparse
  from deepfound.benchmarks.timing import write_results

  unknown = sorted(set(f.groups) - set(_GROUPS))
  if unknown:
    fail(f"--groups: unknown {', '.join(unknown)}; expected some of {', '.join(_GROUPS)}")
  if not set(f.scaling_methods) <= {"sag", "saga", "sgd"}:
    fail("--scaling_methods: some of sag, saga, sgd")
  if not 0 < f.scale <= 100:
    fail(f"--scale must be in (0, 100], got {f.scale}")
  command = " ".join(["python"] + sys.argv)
  if "blocks" in f.groups:
    results = sparse.block_lengths(scale=f.scale, num_features=f.num_features,
                                   nnz_per_row=f.nnz_per_row, repeats=f.repeats, command=command)
    write_results(f.out, "sparse_blocks", results, sparse.blocks_markdown(results))
  groups = tuple(g for g in f.groups if g != "blocks")
  if not groups:
    return
  sparse.run_benchmark(f.out, scale=f.scale, num_features=f.num_features, nnz_per_row=f.nnz_per_row,
                epochs=f.epochs, sweep_epochs=f.sweep_epochs, repeats=f.repeats,
                scaling_repeats=f.scaling_repeats, scaling_steps=f.scaling_steps,
                sweep_fits=f.sweep_fits, groups=groups,
                scaling_methods=tuple(f.scaling_methods), command=command)


if __name__ == "__main__":
  app.run(main, flags_parser=flags_parser([]))

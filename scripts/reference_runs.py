r"""Digests of a reference set of runs, to show that a refactor changes no number.

    python scripts/reference_runs.py --out=runs/reference_before.json
    ... change the code ...
    python scripts/reference_runs.py --out=runs/reference_after.json \
        --compare=runs/reference_before.json

(``--root=DIR`` runs another checkout's scripts, e.g. a ``git worktree`` of the commit before.)

Runs one config of each kind through ``scripts/train.py`` and ``scripts/sweep.py`` (each rule on
the quantum data, the lazy sparse path, a net, the VAE, a flow, a push-forward, a GAN of each
scheme, a step-size sweep and a game sweep), each in a fresh process, and hashes what each run
wrote (metrics.jsonl, summary.json, params.npz; sweep.jsonl, curves.npz) with every timing field
removed. Two code versions that give the same digests gave bit-identical numbers. The set is
small (a few minutes on 2 cores); it is not a test of quality.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fields that hold wall-clock times or the machine, not results.
TIMING = {"elapsed_s", "seconds", "steps_per_second", "compile_s", "run_seconds", "wall_s",
          "runs_per_second", "seconds_per_call", "compile_seconds", "run_s", "backend",
          "device_count", "calls", "optimum_seconds", "total_s", "program_seconds", "timings",
          "compile_time_s", "run_time_s", "mb_per_run", "devices", "run_steps_per_second",
          "data_devices", "process_count"}

QUICK = ["--config.num_steps=400", "--config.log_every=100", "--config.checkpoint_every=200"]
GAN = ["--config=configs/gan_2d.py:ring", "--config.num_steps=60", "--config.log_every=20",
       "--config.checkpoint_every=40", "--config.data.num_samples=2000",
       "--config.model.hidden=(32, 32)", "--config.model.discriminator_hidden=(32,)",
       "--config.optim.batch_size=32"]


def _has(root: str, word: str) -> bool:
  """Whether the package in ``root`` mentions ``word`` (to run an older checkout's key names)."""
  for folder, _, files in os.walk(os.path.join(root, "deepfound")):
    for name in files:
      if name.endswith(".py") and word in open(os.path.join(folder, name)).read():
        return True
  return False


def train_runs(libsvm: str, root: str) -> dict[str, list[str]]:
  runs = {f"quantum_{rule}": [f"--config=configs/logreg_quantum.py:{rule}", *QUICK]
          for rule in ("bgd", "sgd", "sga", "sag", "saga", "svrg", "sarah", "adam")}
  runs["quantum_sag_tol_shuffle"] = ["--config=configs/logreg_quantum.py:sag", *QUICK,
                                     "--config.optim.tol=1e-3", "--config.optim.sampling=shuffle",
                                     "--config.num_steps=20000", "--config.log_every=1000",
                                     "--config.checkpoint_every=5000"]
  for rule in ("sgd", "sag", "saga"):
    runs[f"libsvm_lazy_{rule}"] = [f"--config=configs/logreg_libsvm.py:{rule}",
                                   f"--config.data.path={libsvm}", "--config.num_steps=600",
                                   "--config.log_every=200", "--config.checkpoint_every=400",
                                   "--config.problem.l2=0.005"]
  runs["mlp_digits_sag"] = ["--config=configs/mlp_digits.py:sag", "--config.num_steps=84",
                            "--config.log_every=42", "--config.checkpoint_every=42"]
  runs["vae_digits"] = ["--config=configs/vae_digits.py", "--config.num_steps=42",
                        "--config.log_every=21", "--config.checkpoint_every=21",
                        "--config.problem.eval_importance_samples=10",
                        "--config.model.hidden=(32,)"]
  runs["flow_ring"] = ["--config=configs/density_2d.py:ring", "--config.num_steps=40",
                       "--config.log_every=20", "--config.checkpoint_every=20",
                       "--config.data.num_samples=2000", "--config.model.num_layers=2",
                       "--config.model.hidden=(16,)"]
  runs["mmd_ring"] = ["--config=configs/pushforward_2d.py:ring,mmd", "--config.num_steps=40",
                      "--config.log_every=20", "--config.checkpoint_every=20",
                      "--config.data.num_samples=2000", "--config.model.hidden=(16,)"]
  for scheme in ("simultaneous", "alternating", "extragradient", "optimistic", "svre"):
    runs[f"gan_{scheme}"] = [*GAN, f"--config.optim.scheme={scheme}"]
  runs["gan_alternating_wgan_gp_k2"] = [*GAN, "--config.problem.loss=wgan_gp",
                                        "--config.optim.discriminator_steps=2"]
  # svre's snapshot period; before it was svre's own option it was optim.svrg_frequency.
  period = "svre_frequency" if _has(root, "svre_frequency") else "svrg_frequency"
  runs["gan_svre_freq"] = [*GAN, "--config.optim.scheme=svre", f"--config.optim.{period}=7"]
  return runs


SWEEPS = {
    "sweep_sgd": ["--config=configs/logreg_quantum.py:sgd", "--config.num_steps=2000",
                  "--config.log_every=500",
                  "--sweep=optim.learning_rate=logspace(-3, 0, 4); optim.l0=[10, 100]; "
                  "optim.schedule=[inverse_time, inverse_sqrt]; seed=[0, 1]"],
    "sweep_game": [*GAN, "--sweep=optim.generator.learning_rate=[1e-4, 1e-3]; "
                   "optim.discriminator.learning_rate=[1e-4, 3e-4]; model.seed=[0, 1]"],
}


def _clean(value):
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in sorted(value.items()) if k not in TIMING}
  if isinstance(value, list):
    return [_clean(v) for v in value]
  return value


def _digest_file(path: str) -> str:
  if path.endswith(".npz"):
    with np.load(path) as data:
      buffer = io.BytesIO()
      for name in sorted(data.files):
        array = np.ascontiguousarray(data[name])
        buffer.write(f"{name}:{array.dtype}:{array.shape};".encode())
        buffer.write(array.tobytes())
      return hashlib.sha256(buffer.getvalue()).hexdigest()
  with open(path) as f:
    if path.endswith(".jsonl"):
      content = [_clean(json.loads(line)) for line in f if line.strip()]
    else:
      content = _clean(json.load(f))
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _libsvm_file(folder: str) -> str:
  rng = np.random.default_rng(0)
  path = os.path.join(folder, "data.libsvm")
  with open(path, "w") as f:
    for _ in range(300):
      columns = np.sort(rng.choice(np.arange(1, 41), size=rng.integers(2, 8), replace=False))
      values = rng.normal(size=len(columns))
      label = 1 if values.sum() + 0.3 * rng.normal() > 0 else -1
      f.write(f"{label} " + " ".join(f"{c}:{v:.6f}" for c, v in zip(columns, values, strict=True)) + "\n")
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--compare", default=None)
  parser.add_argument("--only", default=None, help="comma-separated run names")
  parser.add_argument("--root", default=ROOT, help="the checkout whose scripts run (default: this one)")
  args = parser.parse_args()
  folder = tempfile.mkdtemp(prefix="reference_runs_")
  libsvm = _libsvm_file(folder)
  jobs = {name: ("train.py", flags) for name, flags in train_runs(libsvm, args.root).items()}
  jobs.update({name: ("sweep.py", flags) for name, flags in SWEEPS.items()})
  if args.only:
    jobs = {k: v for k, v in jobs.items() if k in args.only.split(",")}
  digests = {}
  for name, (script, flags) in jobs.items():
    workdir = os.path.join(folder, name)
    command = [sys.executable, os.path.join(args.root, "scripts", script), f"--workdir={workdir}",
               *flags]
    done = subprocess.run(command, cwd=args.root, capture_output=True, text=True)
    if done.returncode != 0:
      digests[name] = {"exit": done.returncode, "stderr": done.stderr.strip().splitlines()[-1:]}
    else:
      digests[name] = {file: _digest_file(os.path.join(workdir, file))
                       for file in sorted(os.listdir(workdir))
                       if file.endswith((".jsonl", ".npz")) or file == "summary.json"}
    print(name, "exit", done.returncode, file=sys.stderr, flush=True)
  shutil.rmtree(folder, ignore_errors=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(digests, f, indent=1, sort_keys=True)
  if args.compare:
    with open(args.compare) as f:
      before = json.load(f)
    differ = sorted(k for k in set(before) | set(digests) if before.get(k) != digests.get(k))
    print(f"{len(digests)} runs; {len(differ)} differ" + (f": {', '.join(differ)}" if differ else ""))
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
  main()

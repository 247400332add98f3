"""The README's code runs as written and does what it says; its Layout and its links match the
tree (the layers it describes are checked by tests/test_package.py)."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "deepfound")


def _read(path):
  with open(os.path.join(ROOT, path), encoding="utf-8") as f:
    return f.read()


# A distinctive string of each ```python block of the README, for the test that runs it.
BLOCK_MARKERS = {
    "autodiff": "trace_graph(loss",
    "generative": "GaussianMixtureModel(",
    "sparse": "make_sparse_problem(",
    "update_rule": "deepfound.optim.sag(",
    "vmap_sweep": "jax.vmap(run)",
}


def _blocks():
  return re.findall(r"```python\n(.*?)```", _read("README.md"), flags=re.S)


def _run_block(name):
  found = [b for b in _blocks() if BLOCK_MARKERS[name] in b]
  assert len(found) == 1, f"expected one README python block with {BLOCK_MARKERS[name]!r}"
  namespace = {}
  exec(compile(found[0], "README.md", "exec"), namespace)  # noqa: S102
  return namespace


def test_every_readme_python_block_is_run_by_a_test():
  for block in _blocks():
    assert any(m in block for m in BLOCK_MARKERS.values()), (
        "a ```python block of the README that no test runs; add a test and a marker here:\n"
        + block[:300])


@pytest.mark.slow
def test_readme_update_rule_example_runs():
  namespace = _run_block("update_rule")
  loss = float(namespace["full_loss"](namespace["params"]))
  assert loss < 0.60  # from log 2 = 0.693: SAG made real progress
  # The memory holds one gradient per sample for each leaf of the parameter pytree.
  sag_state = namespace["state"][1][0]
  assert sag_state.table["w"].shape == (1000, 10) and sag_state.table["bias"].shape == (1000,)


@pytest.mark.slow
def test_readme_vmap_sweep_example_runs():
  namespace = _run_block("vmap_sweep")
  objective = namespace["curves"].objective
  assert objective.shape == (16, 20)
  final = objective[:, -1]
  # Different step sizes give different runs, and the best one made real progress from log 2.
  assert float(final.max() - final.min()) > 1e-3
  assert float(final.min()) < 0.60


@pytest.mark.slow
def test_readme_autodiff_example_runs():
  namespace = _run_block("autodiff")
  assert namespace["graph"].count("log1p") == 2
  # The printed gradients are the gradient: both modes agree with jax.grad.
  want = jax.grad(namespace["loss"])(jnp.ones(3))
  assert not np.allclose(want, 0.0)
  np.testing.assert_allclose(namespace["reverse"], want, atol=1e-6)
  np.testing.assert_allclose(namespace["forward"], want, atol=1e-6)


@pytest.mark.slow
def test_readme_generative_example_runs():
  namespace = _run_block("generative")
  problem, state, ring = namespace["problem"], namespace["state"], namespace["ring"]
  test_nll = float(problem.data_loss(state.params, problem.test_samples))
  assert test_nll < -4.0  # from the start's +2.6: within 0.3 nats of the entropy, -4.29
  fitted = namespace["fitted"]
  modes = namespace["mode_metrics"](fitted.sample(jax.random.PRNGKey(1), 2500), ring.means, ring.sd)
  assert float(modes["modes_captured"]) == 8 and float(modes["high_quality_fraction"]) > 0.9


@pytest.mark.slow
def test_readme_sparse_example_runs():
  namespace = _run_block("sparse")
  state, points, optimum = namespace["state"], namespace["points"], namespace["optimum"]
  assert optimum.converged
  assert 0 <= float(points.objective[-1]) - optimum.value < 1e-4
  assert 0 < int(state.stopped_at) < 100_000  # tol stopped it
  zeros = int((state.params == 0).sum())
  assert 0 < zeros < state.params.size  # L1 made a sparse, not an empty, model


def test_readme_commands():
  """The two commands stay as they are (CI runs the second), and the fast subset is documented."""
  readme = _read("README.md")
  for command in (
      "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python scripts/train.py "
      "--config=configs/logreg_quantum.py:sag --workdir=runs/quantum_sag",
      "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest\n",
      '.venv/bin/python -m pytest -m "not slow"\n',
  ):
    assert "\n    " + command in readme, command
  assert re.search(r"^markers = \[[^\]]*\"slow:", _read("pyproject.toml"), flags=re.M)


def _section(text, heading):
  """The body of the section under ``heading`` (a whole heading line), up to the next heading of
  the same or a higher level."""
  level = len(heading) - len(heading.lstrip("#"))
  start = text.index("\n" + heading + "\n") + len(heading) + 2
  end = re.search(rf"^#{{1,{level}}} ", text[start:], flags=re.M)
  return text[start:start + end.start()] if end else text[start:]


def _modules():
  """Every module of the package as its path from the root, ``__init__.py`` files left out."""
  found = set()
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py") and name != "__init__.py":
        found.add(os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/"))
  return found


def test_readme_layout_lists_every_module():
  """The README's Layout names every module by its path from the root (``deepfound/optim/driver.py``),
  reading the tree now, so a module added, moved or removed without a Layout line fails here."""
  layout = _section(_read("README.md"), "### Layout")
  listed = set(re.findall(r"deepfound/[\w/]+\.py", layout))
  modules = _modules()
  missing, gone = sorted(modules - listed), sorted(listed - modules)
  assert not missing, f"modules missing from the README's Layout section: {missing}"
  assert not gone, f"the README's Layout lists modules that do not exist: {gone}"


def _slug(heading):
  """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces -> -."""
  text = re.sub(r"[`*]", "", heading.strip()).lower()
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text):
  seen, anchors = {}, set()
  text = re.sub(r"```.*?```", "", text, flags=re.S)
  for heading in re.findall(r"^#+ (.*)$", text, flags=re.M):
    slug = _slug(heading)
    anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
    seen[slug] = seen.get(slug, 0) + 1
  return anchors


def test_readme_links_resolve():
  """Every relative link and picture of README.md and results/README.md points at a file that
  exists, every #anchor at a heading of its file, and every path in backticks (from the root:
  `deepfound/...`, `scripts/...`, ...) at a file or folder that exists."""
  broken = []
  for page in ("README.md", "results/README.md"):
    text = re.sub(r"```.*?```", "", _read(page), flags=re.S)
    for path in re.findall(r"`((?:deepfound|scripts|configs|tests|results)/[\w./-]*?)[:`\s]", text):
      if not os.path.exists(os.path.join(ROOT, path)):
        broken.append(f"{page}: `{path}` (no such file)")
    folder = os.path.dirname(os.path.join(ROOT, page))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"[a-z]+:", target):
        continue
      path, _, anchor = target.partition("#")
      file = os.path.normpath(os.path.join(folder, path)) if path else os.path.join(ROOT, page)
      if not os.path.exists(file):
        broken.append(f"{page}: {target} (no such file)")
      elif anchor and anchor not in _anchors(open(file, encoding="utf-8").read()):
        broken.append(f"{page}: {target} (no such heading)")
  assert not broken, broken

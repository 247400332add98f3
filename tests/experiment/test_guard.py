"""The generic guard: every config under configs/, with hostile command-line overrides of every
key its run reads (its model's, loss's, data set's and rule's: the declared read keys) and of one
key it ignores. Each is parsed as train.py parses it (config_flags), then validated and built as
``run_experiment`` does before compiling: a refusal must be a ``ConfigError``/``DataError`` (or a
flag error) of one line, an acceptance must build; never another exception. A few hostile cases
beyond those go the whole way: through run_experiment (refused before anything is written), and
one through train.py itself (exit 2, one line on stderr, no workdir left).
"""

import glob
import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from deepfound.data import DataError
from deepfound.experiment import ConfigError, validate
from deepfound.experiment.build import build
from deepfound.experiment.config import kind_key_groups, model_key_groups, precision_scope

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # as train.py does: configs import one another (configs.mlp_digits)
CONFIGS = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "configs", "*.py"))
                 if not f.endswith("__init__.py"))
HOSTILE = ("0", "-3", "2.5", "'abc'", "()", "nan", "1e300")
# Keys of the run that take no hostile value by design: paths (any string is a path, refused when
# it cannot be read) and the names that the registries check (refused by one_of, tested apart).
SKIP = {"data.path", "data.weights", "data.cache_dir"}


def _parse(module: str, key: str | None, value: str | None):
  """The config as train.py's flags would give it; raises flags.Error (or what config_flags
  raises) where the command line refuses the override."""
  argv = ["train.py", f"--config={os.path.join(ROOT, 'configs', module + '.py')}"]
  if key is not None:
    argv.append(f"--config.{key}={value}")
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
  values(argv)
  return values["config"].value


def _read_keys(config) -> set[str]:
  keys = set()
  for group in model_key_groups(config) + kind_key_groups(config):
    keys |= group.read
  return {k for k in keys if k not in SKIP}


def _ignored_key(config) -> str | None:
  for group in model_key_groups(config) + kind_key_groups(config):
    for key in sorted(group.keys - group.read):
      if not group.preset and key not in SKIP:
        return key
  return None


# Building is what costs (data, networks, a GAN's metric classifier): configs of a model already
# built by a config before them (gan_digits after gan_2d, ...) are validated only.
def _builds(module: str, model: str) -> bool:
  first = {}
  for name in CONFIGS:
    config = _parse(name, None, None)
    if config.data.name != "libsvm":
      first.setdefault(config.model.name, name)
  return first[model] == module


def _outcome(module: str, key: str, value: str, build_it: bool = True) -> str:
  """'flag', 'refused', 'valid' (not built) or 'built'; any other exception propagates (a
  defect)."""
  try:
    config = _parse(module, key, value)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError):
    return "flag"  # cli.flags_parser: one line, exit 2
  try:
    validate(config, given={key})
    if not build_it:
      return "valid"
    with precision_scope(config.precision):
      build(config)
  except (ConfigError, DataError) as e:
    assert "\n" not in str(e), f"{module} {key}={value}: a message of several lines: {e}"
    return "refused"
  return "built"


@pytest.mark.slow
@pytest.mark.parametrize("module", CONFIGS)
def test_hostile_overrides_are_refused_in_one_line_or_build(module):
  base = _parse(module, None, None)
  if base.data.name == "libsvm":
    pytest.skip("needs a LIBSVM file (the hostile files are tests/data/test_hostile_files.py)")
  keys = sorted(_read_keys(base))
  assert keys, module
  outcomes, build_it = {}, _builds(module, base.model.name)
  for key in keys:
    for value in HOSTILE:
      try:
        outcomes[key, value] = _outcome(module, key, value, build_it)
      except Exception as e:  # noqa: BLE001 - the defect this test is for
        pytest.fail(f"{module}: --config.{key}={value}: {type(e).__name__}: {e}")
  ignored = _ignored_key(base)
  if ignored is not None:  # set explicitly, even to a sane value, a key the run ignores is refused
    value = repr(base_value) if isinstance(base_value := _lookup(base, ignored), str) else "1"
    assert _outcome(module, ignored, value) in ("flag", "refused"), (module, ignored)
  refused = sum(o != "built" for o in outcomes.values())
  assert refused >= len(keys), (module, outcomes)  # most hostile values are refused


def _lookup(config, key):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


# Through train.py (a process that imports JAX), one case refused when its model is built: exit 2,
# one line, no workdir. The others (refused at validation, or when the problem is built) are
# refused by the call train.py makes (run_experiment with the given key), in this process.
CLI_CASES = [
    ("cnn_digits.py", "model.channels", "(4, 4, 4, 4)"),  # refused when built (8 x 8 images)
]
IN_PROCESS_CASES = [
    ("gan_2d.py:ring", "model.discriminator_hidden", "(-3,)"),
    ("pushforward_2d.py:ring", "problem.epsilon", "1e-30"),
    pytest.param("pushforward_2d.py:ring,mmd", "optim.tol", "2.5",  # refused when the problem
                 marks=pytest.mark.slow),  # is built (seconds)
]


@pytest.mark.slow
@pytest.mark.parametrize("config, key, value", CLI_CASES)
def test_hostile_overrides_through_train_py(tmp_path, config, key, value):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
       f"--config={os.path.join(ROOT, 'configs', config)}", f"--workdir={workdir}",
       f"--config.{key}={value}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
      config, key, value, result.returncode, result.stderr[-2000:])
  assert key in lines[0]
  assert not workdir.exists() or not any(workdir.iterdir()), (config, key, value)


@pytest.mark.parametrize("config, key, value", IN_PROCESS_CASES)
def test_hostile_overrides_refused_before_writing(tmp_path, config, key, value):
  from deepfound.experiment import run_experiment

  argv = ["train.py", f"--config={os.path.join(ROOT, 'configs', config)}",
          f"--config.{key}={value}"]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
  values(argv)
  given = config_flags.get_override_values(values["config"])
  assert set(given) == {key}
  workdir = tmp_path / "run"
  with pytest.raises((ConfigError, DataError)) as error:
    run_experiment(values["config"].value, str(workdir), progress=False, given=given)
  assert str(error.value) and "\n" not in str(error.value), str(error.value)
  assert key in str(error.value)
  assert not workdir.exists()


def test_an_objective_that_overflows_at_the_start_is_refused_before_writing(tmp_path):
  """Least-squares targets of 1e20 pass the data checks, but 0.5 y^2 overflows float32: one
  ConfigError before anything is written (it used to write config.json, then raise TypeError)."""
  from deepfound.experiment import run_experiment

  data = tmp_path / "big.svm"
  data.write_text("1e20 1:1\n-2 2:1\n3 1:0.5\n")
  config = _parse("logreg_libsvm", "problem.loss", "least_squares")
  config.data.path, config.optim.learning_rate = str(data), 0.01
  config.num_steps, config.log_every = 20, 10
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=r"the objective at the start is inf in float32"):
    run_experiment(config, str(workdir), progress=False)
  assert not workdir.exists()

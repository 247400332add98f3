"""The package's import structure: no cycle among its modules, and no module importing from a
layer above its own (``LAYERS``, lowest first). Imports inside functions count too: a deferred
import is still a dependency; imports under ``if TYPE_CHECKING:`` do not."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "deepfound")

# Lowest first; a module may import from its own layer and those below it.
LAYERS = (
    ("deepfound.registry", "deepfound.errors", "deepfound.strict_json", "deepfound.numerics",
     "deepfound._xla_flags", "deepfound.distributed"),
    ("deepfound.data", "deepfound.models", "deepfound.autodiff"),
    ("deepfound.problems",),
    ("deepfound.optim",),
    ("deepfound.experiment",),
    ("deepfound.sweep",),
    ("deepfound.figures", "deepfound.benchmarks"),
    ("deepfound.cli", "deepfound"),
)


def _modules() -> dict[str, str]:
  """Dotted module name -> file, for every module of the package."""
  found = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        if parts[-1] == "__init__":
          parts = parts[:-1]
        found[".".join(parts)] = path
  return found


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
  """The package's modules that ``module`` imports (``from a import b``: a.b if it is a module)."""
  tree = ast.parse(open(path).read())
  for node in ast.walk(tree):  # imports for type checkers only are not dependencies
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
      node.body = []
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  targets = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                        + ([base] if base else []))
      names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
               for alias in node.names]
    else:
      continue
    targets.update(name for name in names if name in modules and name != module)
  return targets


def _layer(module: str) -> int:
  best = None
  for index, prefixes in enumerate(LAYERS):
    for prefix in prefixes:
      if module == prefix or module.startswith(prefix + "."):
        if best is None or len(prefix) > best[1]:
          best = (index, len(prefix))
  assert best is not None, f"{module} is in no layer of tests/test_layers.py"
  return best[0]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
  modules = _modules()
  return {module: _imports(module, path, modules) for module, path in modules.items()}


def test_no_module_imports_from_a_higher_layer(graph):
  upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if _layer(b) > _layer(a))
  assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycle(graph):
  """A package's __init__ re-exporting its modules is not a cycle; any other loop is."""
  edges = {a: {b for b in targets if not (b == a.rpartition(".")[0] or a == b.rpartition(".")[0]
                                          and _is_package(a))}
           for a, targets in graph.items()}
  state, cycles = {}, []

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == "open":
        cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for node in sorted(edges):
    if node not in state:
      visit(node, [node])
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _is_package(module: str) -> bool:
  return _modules()[module].endswith("__init__.py")

"""Forward (17.14) and reverse (17.15) mode differentiation on the graph of ``graph.py``.

Forward mode: one sweep per input direction, parents to children, d theta_r = sum over parents
p of (d g_r / d theta_p) d theta_p; the gradient of f: R^M -> R takes M sweeps (batched here with
``vmap``, which keeps the M sweeps' arithmetic). Reverse mode: one forward sweep storing every
node's value, then one backward sweep from the output, bar theta_p = sum over children r of
bar theta_r d g_r / d theta_p (Figure 17.8); the whole gradient at once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deepfound.autodiff import rules
from deepfound.autodiff.graph import Graph, trace_graph


def evaluate_graph(graph: Graph, inputs: list) -> list:
  """Forward sweep: the value of every node."""
  values = [None] * len(graph.nodes)
  for node in graph.nodes:
    if node.input_index is not None:
      values[node.index] = jnp.asarray(inputs[node.input_index])
    elif node.primitive is None:
      values[node.index] = jnp.asarray(node.value)
    else:
      values[node.index] = rules.evaluate(node, [values[p] for p in node.parents])
  return values


def _check_supported(graph: Graph, active: np.ndarray) -> None:
  for node in graph.nodes:
    if active[node.index] and node.primitive is not None and (
        node.primitive.name not in rules.SUPPORTED):
      raise rules.UnsupportedPrimitiveError(node.primitive.name)


def forward_sweep(graph: Graph, values: list, active: np.ndarray, directions: list) -> jax.Array:
  """One forward-mode sweep: the directional derivative of the output along ``directions``
  (one tangent per input)."""
  tangents = [None] * len(graph.nodes)
  for node in graph.nodes:
    if not active[node.index]:
      continue
    if node.input_index is not None:
      tangents[node.index] = directions[node.input_index]
    else:
      tangents[node.index] = rules.tangent(
          node, [values[p] for p in node.parents], [tangents[p] for p in node.parents],
          values[node.index])
  out = tangents[graph.output]
  return jnp.zeros(()) if out is None else out


def forward_gradient(fn, *args):
  """The gradient of scalar ``fn`` at ``args`` by forward mode: M = (number of scalar inputs)
  sweeps, one per basis direction, run as one vmapped program."""
  graph = trace_graph(fn, *args)
  flat, treedef = jax.tree.flatten(args)
  active = graph.active()
  _check_supported(graph, active)
  values = evaluate_graph(graph, flat)
  sizes = [int(np.size(leaf)) for leaf in flat]
  total = sum(sizes)

  def sweep(basis_vector):
    pieces = jnp.split(basis_vector, np.cumsum(sizes)[:-1])
    directions = [p.reshape(np.shape(leaf)).astype(jnp.result_type(leaf))
                  for p, leaf in zip(pieces, flat, strict=True)]
    return forward_sweep(graph, values, active, directions)

  # The basis is a constant: building it is not part of differentiation.
  basis = np.eye(total, dtype=np.dtype(jnp.result_type(flat[0])))
  derivatives = jax.vmap(sweep)(jnp.asarray(basis))
  pieces = jnp.split(derivatives, np.cumsum(sizes)[:-1])
  grads = [p.reshape(np.shape(leaf)) for p, leaf in zip(pieces, flat, strict=True)]
  return _like_grad(jax.tree.unflatten(treedef, grads))


def reverse_gradient(fn, *args):
  """The gradient of scalar ``fn`` at ``args`` by reverse mode: one forward sweep keeping every
  node's value, one backward sweep summing each node's adjoint over its children."""
  graph = trace_graph(fn, *args)
  flat, treedef = jax.tree.flatten(args)
  active = graph.active()
  _check_supported(graph, active)
  values = evaluate_graph(graph, flat)
  adjoints = [None] * len(graph.nodes)
  adjoints[graph.output] = jnp.ones_like(values[graph.output])
  for node in reversed(graph.nodes):
    if adjoints[node.index] is None or node.primitive is None:
      continue
    contributions = rules.cotangents(node, [values[p] for p in node.parents], values[node.index],
                                     adjoints[node.index], [active[p] for p in node.parents])
    for parent, contribution in zip(node.parents, contributions, strict=True):
      if contribution is not None:
        adjoints[parent] = contribution if adjoints[parent] is None else (
            adjoints[parent] + contribution)
  grads = [jnp.zeros_like(values[i]) if adjoints[i] is None else adjoints[i]
           for i in graph.inputs]
  return _like_grad(jax.tree.unflatten(treedef, grads))


def _like_grad(grads: tuple):
  """The gradient for one argument, or a tuple for several (``jax.grad(f, argnums=...)``)."""
  return grads[0] if len(grads) == 1 else grads

"""The computational graph of a JAX function, read off its jaxpr (section 17.2.2).

Every node is one of the chapter's theta_r = g_r(theta_parents): an input, a constant, or a
primitive applied to earlier nodes. Nested calls (``jit``, ``custom_jvp_call``,
``custom_vjp_call``, ``closed_call``, ``checkpoint``) are inlined, with fresh nodes at every call
site: a helper called twice gives two disjoint sets of nodes. Custom derivative rules are not
used; their primal computation is differentiated like any other code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from deepfound.autodiff.primitives import CALL_JAXPR_PARAM


@dataclasses.dataclass(frozen=True)
class Node:
  """theta_r: an input (``primitive`` None, ``input_index`` set), a constant (``value`` set) or
  ``primitive(*parents, **params)``."""

  index: int
  primitive: Any | None
  parents: tuple[int, ...]
  params: dict
  shape: tuple[int, ...]
  dtype: Any
  input_index: int | None = None
  value: Any = None

  @property
  def name(self) -> str:
    if self.input_index is not None:
      return f"input{self.input_index}"
    return "const" if self.primitive is None else self.primitive.name


@dataclasses.dataclass
class Graph:
  """A DAG in topological order (parents before children), with one output node."""

  nodes: list[Node]
  inputs: list[int]  # node index of each (flattened) input
  output: int

  def children(self) -> list[list[int]]:
    """For each node, the nodes that use it (the chapter's Child(t))."""
    children = [[] for _ in self.nodes]
    for node in self.nodes:
      for parent in set(node.parents):
        children[parent].append(node.index)
    return children

  def active(self) -> np.ndarray:
    """bool per node: does it depend on an input (only those carry derivatives)?"""
    active = np.zeros(len(self.nodes), bool)
    active[self.inputs] = True
    for node in self.nodes:
      # Integer and boolean values carry no derivative, whatever they were computed from.
      if node.parents and any(active[p] for p in node.parents) and jnp.issubdtype(
          node.dtype, jnp.floating):
        active[node.index] = True
    return active

  def count(self, name: str) -> int:
    return sum(node.name == name for node in self.nodes)


class _Builder:
  def __init__(self):
    self.nodes: list[Node] = []

  def add(self, **fields) -> int:
    index = len(self.nodes)
    self.nodes.append(Node(index=index, **fields))
    return index

  def constant(self, value) -> int:
    return self.add(primitive=None, parents=(), params={}, shape=tuple(np.shape(value)),
                    dtype=jnp.result_type(value), value=value)

  def inline(self, jaxpr, consts, arguments: list[int]) -> list[int]:
    """Adds the nodes of ``jaxpr`` applied to ``arguments``; returns its output nodes."""
    env = {}

    def read(atom):
      if isinstance(atom, jex_core.Literal):
        return self.constant(atom.val)
      return env[atom]

    for var, value in zip(jaxpr.constvars, consts, strict=True):
      env[var] = self.constant(value)
    for var, node in zip(jaxpr.invars, arguments, strict=True):
      env[var] = node
    for eqn in jaxpr.eqns:
      parents = [read(atom) for atom in eqn.invars]
      name = eqn.primitive.name
      if name in CALL_JAXPR_PARAM:
        inner = eqn.params[CALL_JAXPR_PARAM[name]]
        inner_jaxpr, inner_consts = (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (
            inner, ())
        if name == "custom_jvp_call" or name == "custom_vjp_call":
          parents = parents[len(parents) - len(inner_jaxpr.invars):]
        outputs = self.inline(inner_jaxpr, inner_consts, parents)
      elif len(eqn.outvars) == 1:
        aval = eqn.outvars[0].aval
        outputs = [self.add(primitive=eqn.primitive, parents=tuple(parents),
                            params=dict(eqn.params), shape=tuple(aval.shape), dtype=aval.dtype)]
      else:
        raise NotImplementedError(
            f"primitive {name!r} has {len(eqn.outvars)} outputs; the graph supports single-output "
            "primitives and inlined calls")
      for var, node in zip(eqn.outvars, outputs, strict=True):
        env[var] = node
    return [read(atom) for atom in jaxpr.outvars]


def trace_graph(fn, *args) -> Graph:
  """The graph of ``fn(*args)``, a scalar function; inputs are the flattened array leaves of
  ``args``."""
  flat, treedef = jax.tree.flatten(args)
  closed = jax.make_jaxpr(lambda *leaves: fn(*jax.tree.unflatten(treedef, leaves)))(*flat)
  builder = _Builder()
  inputs = [builder.add(primitive=None, parents=(), params={}, shape=tuple(np.shape(leaf)),
                        dtype=jnp.result_type(leaf), input_index=k)
            for k, leaf in enumerate(flat)]
  outputs = builder.inline(closed.jaxpr, closed.consts, inputs)
  if len(outputs) != 1 or builder.nodes[outputs[0]].shape != ():
    raise ValueError("trace_graph needs a function with one scalar output")
  return Graph(builder.nodes, inputs, outputs[0])

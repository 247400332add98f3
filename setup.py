"""Builds the lazy sparse path's XLA:CPU kernel (deepfound/optim/lazy_kernel.cc) with the package.

Everything else is in pyproject.toml. The kernel compiles against the XLA FFI headers shipped in
jaxlib (a build requirement) and is optional: where no C++17 compiler is found or the build
fails, the install goes on without it and the lazy path runs its pure-JAX loop
(deepfound/optim/lazy_kernel.py says how to tell which one runs).
"""

import hashlib
import importlib.util
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def ffi_include_dir() -> str | None:
  """jaxlib's include directory (what jax.ffi.include_dir() returns), found without importing."""
  spec = importlib.util.find_spec("jaxlib")
  for location in (spec.submodule_search_locations or []) if spec else []:
    include = Path(location) / "include"
    if (include / "xla" / "ffi" / "api" / "ffi.h").is_file():
      return str(include)
  return None


class BuildKernel(build_ext):
  """build_ext with each compiler's flags for C++17, optimization and hidden symbols."""

  def build_extensions(self):
    msvc = self.compiler.compiler_type == "msvc"
    for extension in self.extensions:
      extension.extra_compile_args = (["/std:c++17", "/O2", "/fp:precise"] if msvc else
                                      ["-std=c++17", "-O3", "-fvisibility=hidden",
                                       "-ffp-contract=off"])
    super().build_extensions()


include = ffi_include_dir()
if include is None:
  print("deepfound: jaxlib's FFI headers not found; the lazy sparse kernel is not built "
        "(the pure-JAX loop runs instead)")
SOURCE = "deepfound/optim/lazy_kernel.cc"
# The source's digest, built into the library: lazy_kernel.py loads no library built from another.
digest = hashlib.sha256((Path(__file__).resolve().parent / SOURCE).read_bytes()).hexdigest()[:16]
extensions = [] if include is None else [
    Extension("deepfound.optim._lazy_kernel", sources=[SOURCE], include_dirs=[include],
              define_macros=[("DEEPFOUND_LAZY_KERNEL_SOURCE", f'"{digest}"')], language="c++",
              optional=True)]

setup(ext_modules=extensions, cmdclass={"build_ext": BuildKernel})

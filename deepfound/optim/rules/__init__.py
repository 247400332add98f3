"""The built-in update rules, one module each; importing one registers its ``RuleSpec``.

Only the modules are imported here, in the order in which ``--help`` and the configs list the
rules (so the imports are not sorted): ``deepfound.optim.rules.sag`` is the module and
``deepfound.optim.sag`` the rule, re-exported by ``deepfound.optim``.
"""
# ruff: noqa: I001

from deepfound.optim.rules import sgd, sga, sag, saga, svrg, sarah, baselines

"""Checking a module's arithmetic: gradients by finite differences, and step by step.

``gradcheck``  `gradcheck(module, x)`: central differences against the manual backward,
               for the input and every parameter; `numerical_gradient`, `rel_error`
``compare``    `compare_steps(module, x, replace={...})`: every intermediate of forward
               and backward, once with the package's steps and once with yours

May import: the layers below (`minattn.backend`, `minattn.modules`, `minattn.validate`).
It needs of a module only ``forward``, ``backward``, ``params`` and ``grads``.
"""

"""Layer 3, the modules: BAM and the rest of the attention family, each a short composition
of steps.

`base.Module` holds what they share (parameters, gradients, state_dict, train/eval, input
validation, the trace); each other file is one module, named after its class.

May import: `minattn.backend` (every step goes through a backend's table),
`minattn.validate`, and constants of `minattn.ops`.
"""

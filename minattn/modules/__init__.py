"""The modules: BAM and the rest of the attention family, each a short composition of steps.

`base.Module` holds what they share (parameters, gradients, state_dict, train/eval,
checks, the trace); each other file is one module, named after its class.
"""

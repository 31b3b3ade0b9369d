"""Training by the manual gradients.

``optim``          `SGD` and `Adam`, with torch.optim's exact formulas
``losses``         mean squared error, BCE with logits, STANet's batch-balanced contrastive
                   loss, each with its backward
``changedetect/``  STANet's change detection in miniature: data, model, ``minattn train``

May import: `minattn.modules`, `minattn.checking`, `minattn.features`, `minattn.validate`.
"""

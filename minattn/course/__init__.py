"""The course around the notebooks: student versions of the exercises and the grader.

``exercises``  student versions of the exercise notebooks (``minattn exercises``)
``grading/``   the hidden tests of every exercise and ``minattn grade``

May import: every layer below (`minattn.ops`, `minattn.modules`, `minattn.checking`).
"""

"""The programs: the ``minattn`` command line and what it runs.

``cli``    ``minattn demo | gradcheck | bench | train | exercises | grade``
``demo``   BAM on a photograph, step by step, checked and drawn (``make demo``)
``bench``  the timing table: backends against NumPy's matmul and PyTorch

May import anything in minattn; nothing in minattn imports it (but ``__main__``).
"""

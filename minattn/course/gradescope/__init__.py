"""Grading on Gradescope: ``minattn gradescope NOTEBOOK... --out autograder.zip``.

``bundle``          builds the zip a teacher uploads: ``setup.sh``, ``run_autograder``, the
                    minattn wheel and the bundle's configuration
``autograder``      what ``run_autograder`` runs for every submission: finds the notebook,
                    grades it with ``minattn grade``'s code, writes results.json
``setup.sh``, ``run_autograder``   the two scripts, as they go into the zip

The grader is ``minattn grade``'s (`minattn.course.grading`); nothing here grades.
"""

from .bundle import build, main

__all__ = ["build", "main"]

"""Every graded exercise of the course, by id, in course order (notebook by notebook)."""

from .hidden_chain import CHAIN
from .hidden_family import FAMILY
from .hidden_online import ONLINE
from .hidden_steps import BACKWARD, FORWARD
from .hidden_zoo import ZOO

EXERCISES = {e.id: e for e in (*FORWARD, *BACKWARD, *CHAIN, *ZOO, *ONLINE, *FAMILY)}


def for_notebook(stem):
    """The exercises of one notebook (file stem, e.g. "03_backward_pass"), in order."""
    return [e for e in EXERCISES.values() if e.notebook == stem]


def notebooks():
    """The stems of the notebooks that hold exercises, in course order."""
    return sorted({e.notebook for e in EXERCISES.values()})

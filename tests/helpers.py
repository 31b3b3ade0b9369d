"""Helpers shared by the test files (pytest puts tests/ on sys.path)."""

from minattn import BAM


def random_module(C=8, ds=2, seed=0, gamma=0.8, **kwargs):
    """A BAM with random non-zero parameters everywhere, gamma included.

    gamma = 0 (its initial value) would cut the attention branch off and make
    every check of it pass vacuously.
    """
    bam = BAM(C, ds, seed=seed, **kwargs)
    sd = bam.state_dict()
    sd["gamma"][:] = gamma
    bam.load_state_dict(sd)
    return bam

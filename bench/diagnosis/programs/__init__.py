"""The program-bug family of the diagnosis benchmark: training scripts with one bug each, their healthy twins, and the tool seam.

- `bugs`: the bug kinds (declared once, with the babysit ids that name them), the cases and the split;
- `nets`: the four architectures with the model-level bugs as switches;
- `scripts`: the training scripts (a hand-written loop, `bs.fit`, Lightning) with the bug lines;
- `tools`: the hooks a tool gets, the plain tool and babysit (the peers are in `bench/diagnosis/peers.py`).
"""

from .bugs import ACCEPTED, BUGS, FROZEN_ON_PURPOSE, HEALTHY, Bug, Case, all_cases, families, smoke_cases

__all__ = ["ACCEPTED", "BUGS", "FROZEN_ON_PURPOSE", "HEALTHY", "Bug", "Case", "all_cases", "families", "smoke_cases"]

"""When to probe: a schedule `every(step) -> bool` and the named presets.

Probing a step costs roughly one extra pass over every watched activation plus a
copy of the weights, so the cost of watching is set by how often it happens
(Cockpit's economy / business / full configurations work the same way).

Contract: a schedule is any callable taking the 1-based number of the optimiser
step about to run and returning whether to probe it. `PROBE_PRESETS.get(name)()`
returns one; `make_schedule` turns the arguments of `babysit.watch` into one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from babysit.errors import ConfigError
from babysit.registry import Registry

Schedule = Callable[[int], bool]

PROBE_PRESETS: Registry = Registry("probe preset")


@dataclass(frozen=True)
class Periodic:
    """Probe every `period`-th step, plus the doubling steps 1, 2, 4, ... up to `warmup`.

    The doubling steps look closely at the start of training, where a bad
    initialisation or learning rate shows first (docs/lectures.md §3, §5);
    `period=0` never probes.

    Example:
        >>> [s for s in range(1, 130) if Periodic(period=50, warmup=16)(s)]
        [1, 2, 4, 8, 16, 50, 100]
    """

    period: int
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.period < 0 or self.warmup < 0:
            raise ConfigError(f"a probe schedule needs period >= 0 and warmup >= 0, got {self.period} and {self.warmup}")

    def __call__(self, step: int) -> bool:
        if step <= self.warmup and step & (step - 1) == 0:  # a power of two
            return True
        return self.period > 0 and step % self.period == 0


@PROBE_PRESETS.register("off")
def off() -> Schedule:
    """No probes: nothing is measured and the hooks cost next to nothing."""
    return Periodic(period=0)


@PROBE_PRESETS.register("light")
def light() -> Schedule:
    """Steps 1, 2, 4, ..., 64, then every 50th: the early steps in detail, then a sparse trace."""
    return Periodic(period=50, warmup=64)


@PROBE_PRESETS.register("full")
def full() -> Schedule:
    """Every step: the whole story, for up to ~1.5x the step time of a small model."""
    return Periodic(period=1)


def make_schedule(preset: str | None = None, every: int | Schedule | None = None) -> Schedule:
    """The schedule for `watch(preset=..., every=...)`: a preset name, a period, or your own callable.

    Args:
        preset: a name from `PROBE_PRESETS`; None (and no `every`) means "light".
        every: probe every `every` steps (an int >= 1), or a callable `every(step) -> bool`.
    """
    if preset is not None and every is not None:
        raise ConfigError("give watch(preset=...) or watch(every=...), not both")
    if every is None:
        return PROBE_PRESETS.get(preset or "light")()
    if isinstance(every, int) and not isinstance(every, bool):
        if every < 1:
            raise ConfigError(f"watch(every=...) must be a step count >= 1 or a callable step -> bool, got {every}")
        return Periodic(period=every)
    if callable(every):
        return every
    raise ConfigError(f"watch(every=...) must be a step count >= 1 or a callable step -> bool, got {every!r}")

"""Search spaces: one `Param` per hyperparameter, sampled in the space the lectures prescribe.

docs/lectures.md §6: learning rate and regularization are sampled on a log scale
(r ~ U(a, b), value = 10^r), betas of exponentially weighted averages as
1 - beta = 10^r, because 1/(1 - beta) is the averaging window and linear
sampling wastes trials near 1.

Every numeric `Param` has a *transformed coordinate* t in which it is uniform:

    kind             t(value)            stored in Optuna as
    log_uniform      log10(v)            FloatDistribution over t, named "log10(key)"
    one_minus_log    log10(1 - v)        FloatDistribution over t, named "log10(1-key)"
    uniform          v                   FloatDistribution over v, named "key"
    int_uniform      log10(v) if log     IntDistribution(low, high, log), named "key"
    choice           -                   CategoricalDistribution, named "key"

Sampling, grids, narrowing and the edge test all work in t, and Optuna stores t,
so its samplers (TPE) and importance estimates model the right scale too.
Integers stay integers in Optuna (with its own log flag).

Specs are text, the same in TOML, on the command line and in `repr`:

    log_uniform(1e-4, 1)   one_minus_log(0.9, 0.999)   uniform(0, 0.5)
    int_uniform(16, 512, log=true)   choice([relu, tanh])
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from babysit.config import parse_value
from babysit.errors import ConfigError

if TYPE_CHECKING:  # Optuna loads when a study is made, not when a space is written (`import babysit` stays light)
    import optuna
    from optuna.distributions import BaseDistribution

KINDS = ("log_uniform", "one_minus_log", "uniform", "int_uniform", "choice")


@dataclass(frozen=True)
class Param:
    """One hyperparameter's range and how to sample it (build with the functions below).

    Args:
        kind: one of KINDS.
        low, high: the range in value space (numeric kinds), low < high.
        log: int_uniform only: sample on a log scale.
        choices: choice only: the values of the parameter; Optuna's CategoricalDistribution
            holds all of them in every stage (it refuses a changed list under the same name).
        allowed: choice only: the values a narrowed stage may still pick (a subset of
            `choices`; empty: all of them). Coarse-to-fine narrows this, not `choices`.
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    allowed: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown search space kind '{self.kind}'; use one of: {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.choices:
                raise ConfigError("choice([...]) needs at least one value")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ConfigError(f"choice({list(self.choices)}) lists a value twice")
            if any(a not in self.choices for a in self.allowed):
                raise ConfigError(f"choice narrowed to {list(self.allowed)}, values outside {list(self.choices)}")
            return
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (self.low, self.high)):
            raise ConfigError(f"{self.kind} needs two finite numbers, got ({self.low!r}, {self.high!r})")
        if not self.low < self.high:
            raise ConfigError(f"{self.kind}({self.low}, {self.high}) needs low < high")
        if self.kind == "log_uniform" and self.low <= 0:
            raise ConfigError(f"log_uniform({self.low}, {self.high}) needs low > 0: a log scale has no zero")
        if self.kind == "one_minus_log" and not (0 <= self.low and self.high < 1):
            raise ConfigError(f"one_minus_log({self.low}, {self.high}) is for betas in [0, 1): samples 1 - beta = 10^r")
        if self.kind == "int_uniform":
            if not (float(self.low).is_integer() and float(self.high).is_integer()):
                raise ConfigError(f"int_uniform({self.low}, {self.high}) needs whole numbers")
            if self.log and self.low < 1:
                raise ConfigError(f"int_uniform({self.low}, {self.high}, log=true) needs low >= 1")
            object.__setattr__(self, "low", int(self.low))
            object.__setattr__(self, "high", int(self.high))

    # -- the transformed coordinate -------------------------------------------------

    @property
    def options(self) -> tuple[Any, ...]:
        """choice only: the values this stage samples from (`allowed`, or all `choices`)."""
        return self.allowed or self.choices

    def with_allowed(self, values: Sequence[Any]) -> Param:
        """This choice narrowed to `values` (kept in `choices`' order), the distribution unchanged."""
        return Param("choice", choices=self.choices, allowed=tuple(c for c in self.choices if c in values))

    @property
    def numeric(self) -> bool:
        """Whether the parameter has a transformed coordinate (everything but choice)."""
        return self.kind != "choice"

    @property
    def decreasing(self) -> bool:
        """t falls as the value rises (one_minus_log: a beta nearer 1 has a smaller log10(1 - beta))."""
        return self.kind == "one_minus_log"

    @property
    def logarithmic(self) -> bool:
        """Whether plots should use a log axis for the value."""
        return self.kind == "log_uniform" or (self.kind == "int_uniform" and self.log)

    def to_t(self, value: float) -> float:
        """The transformed coordinate of `value`."""
        if self.kind == "log_uniform" or (self.kind == "int_uniform" and self.log):
            return math.log10(value)
        if self.kind == "one_minus_log":
            return math.log10(1.0 - value)
        return float(value)

    def from_t(self, t: float) -> float:
        """The value at transformed coordinate `t`, kept in [low, high] (10^t can land an ulp outside)."""
        if self.kind == "int_uniform":
            return int(min(max(round(self._unrounded(t)), self.low), self.high))
        return min(max(self._unrounded(t), self.low), self.high)

    def _unrounded(self, t: float) -> float:
        """The inverse transform, neither rounded nor clipped (for widening past the range)."""
        return 10.0**t if self.kind == "log_uniform" or self.log else (1.0 - 10.0**t if self.decreasing else t)

    def t_range(self) -> tuple[float, float]:
        """(t_low, t_high), t_low < t_high, of the range."""
        a, b = self.to_t(self.low), self.to_t(self.high)
        return (b, a) if self.decreasing else (a, b)

    def domain(self) -> tuple[float, float]:
        """The widest t a value of this kind may take (where widening must stop)."""
        if self.kind == "one_minus_log":
            return -math.inf, 0.0  # beta >= 0
        if self.kind == "int_uniform":
            return (0.0, math.inf) if self.log else (1.0 if self.low >= 1 else -math.inf, math.inf)
        if self.kind == "uniform":
            return self.t_range()  # a linear range (dropout, ...) is usually the whole domain: never widened
        return -math.inf, math.inf

    def with_t_range(self, t_low: float, t_high: float) -> Param:
        """A copy whose range is [t_low, t_high] in transformed space."""
        ends = sorted((self._unrounded(t_low), self._unrounded(t_high)))
        if self.kind == "int_uniform":
            lo = round(ends[0])
            return replace(self, low=lo, high=max(round(ends[1]), lo + 1))
        return replace(self, low=ends[0], high=ends[1])

    # -- Optuna ---------------------------------------------------------------------

    def study_name(self, key: str) -> str:
        """The parameter's name in the Optuna study (names the transform it is stored in)."""
        if self.kind == "log_uniform":
            return f"log10({key})"
        if self.kind == "one_minus_log":
            return f"log10(1-{key})"
        return key

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution over the stored coordinate."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int_uniform":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(*self.t_range())

    def stored(self, value: Any) -> Any:
        """The value as Optuna stores it (t for float kinds)."""
        if self.kind == "choice":
            return value
        if self.kind == "int_uniform":
            return int(value)
        lo, hi = self.t_range()
        return min(max(self.to_t(value), lo), hi)

    def value(self, stored: Any) -> Any:
        """The hyperparameter value from its stored form."""
        if self.kind in ("choice", "int_uniform"):
            return stored
        return self.from_t(stored)

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        """Ask `trial` for this parameter (an enqueued value or the sampler's pick); returns the value."""
        name = self.study_name(key)
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int_uniform":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return self.value(trial.suggest_float(name, *self.t_range()))

    # -- sampling -------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Any:
        """One random value: uniform in t (r ~ U(a, b), value = 10^r for log kinds)."""
        if self.kind == "choice":
            return self.options[int(rng.integers(len(self.options)))]
        return self.from_t(float(rng.uniform(*self.t_range())))

    def grid(self, n: int) -> list[Any]:
        """Up to `n` distinct values, ascending, at the centres of n equal cells in t (the edges are rarely best)."""
        if self.kind == "choice":
            idx = sorted({round(i * (len(self.options) - 1) / max(n - 1, 1)) for i in range(n)}) if n > 1 else [0]
            return [self.options[i] for i in idx]
        lo, hi = self.t_range()
        values = [self.from_t(lo + (i + 0.5) * (hi - lo) / n) for i in range(n)]
        return sorted(set(values))

    def size(self) -> float:
        """How many distinct values the parameter has (inf for floats)."""
        if self.kind == "choice":
            return len(self.options)
        if self.kind == "int_uniform":
            return self.high - self.low + 1
        return math.inf

    def __str__(self) -> str:
        if self.kind == "choice":
            return f"choice([{', '.join(_literal(c) for c in self.options)}])"
        args = f"{_literal(self.low)}, {_literal(self.high)}"
        return f"{self.kind}({args}, log=true)" if self.log else f"{self.kind}({args})"

    __repr__ = __str__


def _literal(value: Any) -> str:
    """A TOML literal that `parse_value` reads back as the same value (repr is Python's shortest round trip)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON's escapes are valid in a TOML basic string; TOML also wants DEL escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    return repr(value)


def log_uniform(low: float, high: float) -> Param:
    """value = 10^r with r ~ U(log10 low, log10 high): learning rates, weight decay (docs/lectures.md §6)."""
    return Param("log_uniform", low, high)


def one_minus_log(low: float, high: float) -> Param:
    """beta = 1 - 10^r with r ~ U(log10(1 - high), log10(1 - low)): momentum, Adam's betas, RMSProp's rho."""
    return Param("one_minus_log", low, high)


def uniform(low: float, high: float) -> Param:
    """value ~ U(low, high): parameters whose effect is linear (dropout probability)."""
    return Param("uniform", low, high)


def int_uniform(low: int, high: int, *, log: bool = False) -> Param:
    """A whole number in [low, high], uniform or (log=True) uniform in log10: hidden widths, batch sizes."""
    return Param("int_uniform", low, high, log=log)


def choice(values: Sequence[Any]) -> Param:
    """One of `values` (activations, optimisers, ...), each equally likely."""
    return Param("choice", choices=tuple(values))


_SPEC = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)
_KEYWORD = re.compile(r"^\s*([A-Za-z_]\w*)\s*=(.*)$", re.S)


def _split_args(text: str) -> list[str]:
    """Split at top-level commas, respecting brackets and quoted strings."""
    parts, current = [], []
    depth, quote, escaped = 0, "", False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    last = "".join(current).strip()
    return [*parts, last] if last or parts else []


def _list_items(text: str) -> list[Any]:
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ConfigError(f"choice takes a list, e.g. choice([relu, tanh]); got '{text}'")
    return [parse_value(item) for item in _split_args(text[1:-1]) if item != ""]


def parse_param(spec: str | Param, key: str = "") -> Param:
    """Parse a spec like 'log_uniform(1e-4, 1)' or 'choice([relu, tanh])'; a ConfigError names `key` on failure."""
    if isinstance(spec, Param):
        return spec
    where = f"{key}: " if key else ""
    example = "e.g. log_uniform(1e-4, 1), one_minus_log(0.9, 0.999), uniform(0, 0.5), int_uniform(16, 512, log=true), choice([relu, tanh])"
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ConfigError(f"{where}cannot read search range {spec!r}; write it as {example}")
    kind, args = m.group(1), _split_args(m.group(2))
    if kind not in KINDS:
        raise ConfigError(f"{where}unknown search range '{kind}'; use one of: {', '.join(KINDS)} ({example})")
    try:
        if kind == "choice":
            if len(args) != 1:
                raise ConfigError(f"choice takes one list, e.g. choice([relu, tanh]); got {len(args)} arguments")
            return choice(_list_items(args[0]))
        positional, keywords = [], {}
        for arg in args:
            kw = _KEYWORD.match(arg)
            if kw:
                keywords[kw.group(1)] = parse_value(kw.group(2).strip())
            else:
                positional.append(parse_value(arg))
        allowed = {"log"} if kind == "int_uniform" else set()
        if set(keywords) - allowed or len(positional) != 2:
            raise ConfigError(f"{kind} takes (low, high){', log=true' if allowed else ''}; got '{spec}'")
        log = keywords.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"log= must be true or false, got {log!r}")
        low, high = positional
        if kind == "int_uniform":
            return Param(kind, low, high, log=log)
        return Param(kind, low, high)
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def parse_space(specs: dict[str, str | Param]) -> dict[str, Param]:
    """Parse a {dotted key: spec} mapping (a TOML [space] table) into Params, keeping the order."""
    if not specs:
        raise ConfigError("the search space is empty; add ranges like --param train.lr='log_uniform(1e-4, 1)'")
    return {key: parse_param(spec, key) for key, spec in specs.items()}

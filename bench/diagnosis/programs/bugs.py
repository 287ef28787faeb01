"""The program bugs, declared once, and the cases built from them: each a training script with one bug and its healthy twin.

A *family* is (architecture, data set, optimiser, way in, seed); its healthy
script is the family's twin, and each of its bug cases is the same script with
one bug. The way in is how the script trains: "loop" (a hand-written loop),
"fit" (`bs.fit` with the user's module: only model-level bugs apply) or
"lightning" (a `LightningModule` with `lightning.pytorch.Trainer`: model-level
bugs, loss bugs in `training_step`, `configure_optimizers` and scheduler-interval
bugs). A family has one way in, and its bugs are drawn from those that apply
to it (`Bug.applies`), balanced over all families (`all_cases`).

`ACCEPTED` maps each bug to the babysit finding ids that name it (phase
"program", produced by the lead's program observer, plus the existing
`activation_on_scores` and `input_independent`); a case is named top-1 when
its first root cause is one of them, recalled when any finding is.

The split: `Case.half` hashes (architecture, seed) exactly as `cases.Case.half`
does; no (architecture, seed) pair is in both halves.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from .nets import ARCHS, SEQUENCE

WAYS = ("loop", "fit", "lightning")
DATASETS = {"mlp": ("mnist1d", "digits", "spiral", "tabular"), "convnet": ("mnist1d", "digits"),
            "gru": ("mnist1d", "digits"), "transformer": ("mnist1d", "digits")}  # fmt: skip
# Per seed of an (architecture, data) pair: the optimiser and the way in; the sequence layout and the
# epoch schedule alternate with the seed's parity (`families`), so fit families (even seeds) use StepLR,
# which `bs.Recipe` also has.
OPTIMIZERS = ("adam", "momentum", "momentum", "momentum", "rmsprop", "adamw", "adam", "momentum")
WAY_OF_SEED = ("loop", "loop", "fit", "lightning", "lightning", "loop", "fit", "loop")
SCHEDULES = ("step", "linear")  # StepLR(2, 0.5) / LambdaLR linear to 0, stepped once per epoch
SEEDS = range(len(OPTIMIZERS))
BUGS_PER_FAMILY = 3
HEALTHY = "healthy"
# A healthy script that freezes a pretrained body on purpose (transfer learning): it must not be flagged as an error.
FROZEN_ON_PURPOSE = "healthy_frozen"


@dataclass(frozen=True)
class Bug:
    """One program bug: the line a person writes, where it can occur, and the finding ids that name it.

    Args:
        id: a short name.
        line: the buggy line (or what it does), as a person writes it.
        accepted: babysit finding ids that name this bug.
        ways: the ways in where this line can be written.
        archs: the architectures it applies to.
        layouts: for sequence nets, the healthy layouts it breaks ("batch_first", "permute").
        schedules: the healthy epoch schedules it breaks ("step", "linear").
        optimizers: the optimisers it is written with: where the bug does no measurable harm
            with the others for a known reason, it is not drawn there (the reason is in `BUGS`).
    """

    id: str
    line: str
    accepted: frozenset[str]
    ways: tuple[str, ...] = WAYS
    archs: tuple[str, ...] = ARCHS
    layouts: tuple[str, ...] = ("batch_first", "permute")
    schedules: tuple[str, ...] = SCHEDULES
    optimizers: tuple[str, ...] = ("adam", "adamw", "momentum", "rmsprop")

    def applies(self, family: Case) -> bool:
        """Whether this bug can be written into the healthy script `family`."""
        return (
            family.way in self.ways
            and family.arch in self.archs
            and (family.arch not in SEQUENCE or family.layout in self.layouts)
            and family.schedule in self.schedules
            and family.optimizer in self.optimizers
        )


_LOOP = ("loop",)
_LOOP_LIGHTNING = ("loop", "lightning")
BUGS: dict[str, Bug] = {b.id: b for b in (
    Bug("no_zero_grad", "the loop never calls optimizer.zero_grad(): gradients add up over steps",
        frozenset({"grad_not_reset"}), _LOOP),
    Bug("zero_grad_before_step", "loss.backward(); optimizer.zero_grad(); optimizer.step()",
        frozenset({"grad_cleared_before_step"}), _LOOP),
    Bug("step_before_backward", "optimizer.zero_grad(); optimizer.step(); loss.backward()",
        frozenset({"step_before_backward"}), _LOOP),
    Bug("no_step", "optimizer.step() is never called",
        frozenset({"optimizer_never_steps"}), _LOOP),
    Bug("optimizer_on_copy", "optimizer = SGD(copy.deepcopy(model).parameters()) (another instance)",
        frozenset({"params_not_in_optimizer", "optimizer_params_not_in_model"}), _LOOP),
    Bug("optimizer_head_only", "optimizer = Adam(model.head.parameters()) while the body is meant to train",
        frozenset({"params_not_in_optimizer"}), _LOOP_LIGHTNING),
    Bug("detached_body", "scores = self.head(features.detach())",
        frozenset({"params_without_grad"})),
    # Design trials (plain loops, seeds 0-2, before the benchmark's runs): the MLP's second hidden layer left out
    # cost more than 5 points in 2 of 12 families (one hidden layer learns these sets about as well), and the
    # transformer's positional embedding left out nothing on MNIST-1D (a bag of patches classifies it as well):
    # the unused layer is the convnet's second block and the transformer's encoder.
    Bug("unused_layer", "a block defined in __init__ and never called in forward (the convnet's second block, the encoder)",
        frozenset({"params_without_grad"}), archs=("convnet", "transformer")),
    # Design trials: a no_grad block over the first layer or conv block only cost more than 5 points in 3 of 16
    # families (a random first stage feeds a trained rest well enough): the block covers the whole body.
    Bug("no_grad_branch", "the body computed under `with torch.no_grad():` (copied from an inference helper)",
        frozenset({"params_without_grad"})),
    # Only where batch norm carries the training: SGD with momentum at the rate a BN net tolerates (0.4). In the
    # design trials, SGD at 0.05 trained all 6 BN families as well in eval mode (BN's running statistics from
    # the first epoch do the normalising), Adam 5 of 6, and dropout's absence even helped on the spiral.
    Bug("eval_mode", "model.train() once before the loop; validation's model.eval() stays on for every later epoch",
        frozenset({"eval_mode_in_training"}), _LOOP, archs=("mlp", "convnet"), optimizers=("momentum",)),
    Bug("steplr_per_batch", "StepLR(step_size=4, gamma=0.5) meant per epoch, stepped every batch",
        frozenset({"lr_collapsed"}), _LOOP_LIGHTNING, schedules=("step",)),
    Bug("lambda_lr_zero", "LambdaLR(lambda t: max(0, 1 - t / epochs)) stepped every batch: the rate is 0 after `epochs` steps",
        frozenset({"lr_collapsed"}), _LOOP_LIGHTNING, schedules=("linear",)),
    # Adam and RMSProp rescale the gradients that the softmax shrinks: in the design trials with Adam it cost
    # more than 5 points in 2 of 10 families, with SGD+momentum at 0.05 in 9 of 10 (at the 0.4 the BN nets train
    # with, the verification drops some: the larger rate makes up for the smaller gradients).
    Bug("softmax_before_ce", "F.cross_entropy(F.softmax(scores, 1), y) (or a model ending in nn.Softmax)",
        frozenset({"activation_on_scores"}), optimizers=("momentum",)),
    Bug("nll_on_raw_scores", "F.nll_loss(scores, y) on raw scores: the loss goes negative",
        frozenset({"loss_below_minimum"}), _LOOP_LIGHTNING),
    Bug("log_of_log_softmax", "F.nll_loss(torch.log(F.log_softmax(scores, 1)), y): NaN loss",
        frozenset({"loss_not_finite"}), _LOOP_LIGHTNING),
    Bug("view_for_permute", "seq.view(T, N, F) where seq.permute(1, 0, 2) was meant",
        frozenset({"batch_mixing"}), archs=SEQUENCE, layouts=("permute",)),
    Bug("batch_first_missing", "nn.GRU / TransformerEncoderLayer built without batch_first=True, fed (N, T, F)",
        frozenset({"batch_mixing"}), archs=SEQUENCE, layouts=("batch_first",)),
    # Frozen on purpose (a pretrained body, the healthy twin) is information (`params_frozen`); a body frozen at its
    # random initialisation is the bug, named by `frozen_untrained` from the weights themselves.
    Bug("body_frozen", "for p in model.body.parameters(): p.requires_grad = False ('train the head first'), never undone",
        frozenset({"frozen_untrained"})),
    Bug("labels_shuffled", "x = x[torch.randperm(n)]; y = y[torch.randperm(n)] (two permutations)",
        frozenset({"input_independent"}), _LOOP),
)}  # fmt: skip
ACCEPTED: dict[str, frozenset[str]] = {b.id: b.accepted for b in BUGS.values()}
# On a frozen-on-purpose twin, `params_frozen` may be reported as information only.


@dataclass(frozen=True)
class Case:
    """One script: its family and its bug (`HEALTHY` or `FROZEN_ON_PURPOSE` for none)."""

    bug: str
    arch: str
    data: str
    optimizer: str
    way: str
    seed: int
    layout: str = "batch_first"
    schedule: str = "step"
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.family}-{self.bug}")

    @property
    def family(self) -> str:
        """The healthy twin's family: everything but the bug."""
        lay = f"-{self.layout}" if self.arch in SEQUENCE else ""
        return f"{self.arch}-{self.data}-{self.optimizer}-{self.way}{lay}-s{self.seed}"

    @property
    def healthy(self) -> bool:
        return self.bug in (HEALTHY, FROZEN_ON_PURPOSE)

    @property
    def half(self) -> str:
        """'tuning' or 'reporting', from a hash of (architecture, seed), as `cases.Case.half`."""
        digest = hashlib.sha256(f"{self.arch}:{self.seed}".encode()).digest()
        return "tuning" if digest[0] % 2 == 0 else "reporting"

    def twin(self) -> Case:
        """The same script without the bug."""
        return self.with_bug(HEALTHY)

    def with_bug(self, bug: str) -> Case:
        """The same family with `bug`."""
        return Case(bug, self.arch, self.data, self.optimizer, self.way, self.seed, self.layout, self.schedule)

    def as_loop(self) -> Case:
        """The same model, optimiser and data trained by a hand-written loop (how a fit / Lightning case is verified)."""
        return Case(self.bug, self.arch, self.data, self.optimizer, "loop", self.seed, self.layout, self.schedule)


def families() -> list[Case]:
    """The healthy script of every family, in a fixed order."""
    out = []
    for arch in ARCHS:
        for data in DATASETS[arch]:
            for seed in SEEDS:
                layout = ("batch_first", "permute")[seed % 2] if arch in SEQUENCE else "batch_first"
                out.append(Case(HEALTHY, arch, data, OPTIMIZERS[seed], WAY_OF_SEED[seed], seed, layout, SCHEDULES[seed % 2]))
    return out


def all_cases() -> list[Case]:
    """Every case: per family its healthy twin, then `BUGS_PER_FAMILY` bugs; a frozen-on-purpose twin where body_frozen is drawn.

    The bugs are drawn greedily: of the bugs that apply to the family, those drawn least
    often so far in the family's half, then least often in its way in, then those that apply
    to the fewest families (a loop-only bug has fewer places to go), then in `BUGS` order; so
    every bug kind is in both halves and meets as many ways in, architectures and data sets
    as it can.
    """
    fams = families()
    places = Counter(b for fam in fams for b in BUGS if BUGS[b].applies(fam))
    drawn: Counter[tuple[str, str]] = Counter()  # (bug, half) and (bug, way)
    order = list(BUGS)
    out: list[Case] = []
    for fam in fams:
        out.append(fam)
        fits = sorted((b for b in order if BUGS[b].applies(fam)), key=lambda b: (drawn[b, fam.half], drawn[b, fam.way], places[b], order.index(b)))
        for bug in fits[:BUGS_PER_FAMILY]:
            drawn[bug, fam.half] += 1
            drawn[bug, fam.way] += 1
            out.append(fam.with_bug(bug))
            if bug == "body_frozen":
                out.append(fam.with_bug(FROZEN_ON_PURPOSE))
    return out


def smoke_cases() -> list[Case]:
    """A few fast cases for `make test`: MLP loops on digits, three bugs the two peers see differently, with their twins."""
    momentum = Case(HEALTHY, "mlp", "digits", "momentum", "loop", 1, schedule="linear")
    adam = Case(HEALTHY, "mlp", "digits", "adam", "loop", 0, schedule="step")
    return [momentum, momentum.with_bug("zero_grad_before_step"), momentum.with_bug("detached_body"), adam, adam.with_bug("steplr_per_batch")]

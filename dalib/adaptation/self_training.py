"""Self-training: the model teaches itself on the unlabelled target.

Each is a term, so it may start from any other method's training (``dann+pseudo-label``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dalib.adaptation.base import Outputs, Term
from dalib.adaptation.blocks import ema_update
from dalib.augment import strong_augment
from dalib.engine import predict_logits
from dalib.method import cross_entropy
from dalib.pack.modules import packable
from scenarios.domain import Domain


class PseudoLabel(Term):
    """``pseudo-label``: iterative class-balanced self-training (Zou et al., "Unsupervised
    Domain Adaptation for Semantic Segmentation via Class-Balanced Self-Training", ECCV 2018).

    Training is cut into ``rounds + 1`` equal phases. The first trains the base method alone;
    at the start of round ``r`` the whole unlabelled target set is relabelled: for each class,
    the ``portion_r`` most confident of the samples predicted as that class are kept (so rare
    classes are not crowded out), ``portion_r = min(start + (r - 1) * step, 1)``. Later steps
    add the cross-entropy on a batch of the kept samples and their pseudo-labels.
    """

    def __init__(self, method, weight: float | None = None, rounds: int = 3,
                 start: float = 0.2, step: float = 0.2, batch_size: int = 0) -> None:
        super().__init__(method, weight)
        self.rounds, self.start, self.step = rounds, start, step
        self.batch_size = batch_size
        self.round = 0
        self.target: Domain | None = None
        self.kept = torch.empty(0, dtype=torch.long)
        self.labels = torch.empty(0, dtype=torch.long)

    def prepare(self, feeds: dict) -> None:
        self.target = feeds["target"]

    @torch.no_grad()
    def relabel(self, portion: float) -> None:
        """Class-balanced selection of confident pseudo-labels over the whole target set."""
        probs = F.softmax(predict_logits(self.method, self.target), 1).to(self.method.device)
        conf, pred = probs.max(1)
        kept = []
        for c in pred.unique():
            idx = torch.nonzero(pred == c).flatten()
            n = max(1, int(round(portion * len(idx))))
            kept.append(idx[conf[idx].topk(n).indices])
        self.kept = torch.cat(kept)
        self.labels = pred[self.kept]

    def forward(self, out: Outputs) -> torch.Tensor:
        current = min(self.rounds, int(self.method.progress * (self.rounds + 1)))
        if current > self.round:
            self.round = current
            self.relabel(min(1.0, self.start + (current - 1) * self.step))
        if self.round == 0 or len(self.kept) == 0:
            return out.logits_s.new_zeros(())
        m = self.method
        n = self.batch_size or len(out.xt)
        pick = torch.randint(0, len(self.kept), (n,), device=self.kept.device,
                             generator=m.generator)
        idx = self.kept[pick].to(self.target.x.device)  # inputs may live on the host
        x = self.target.x[idx].to(m.device, non_blocking=True)
        return F.cross_entropy(m.model(m.augment(x)), self.labels[pick])


@packable
class FixMatch(Term):
    """``fixmatch``: predictions on weakly augmented target images (the shared 1-pixel shift)
    whose confidence passes ``threshold`` become labels for a strongly augmented view (Sohn
    et al., "FixMatch", NeurIPS 2020; strong augmentation on tensors: contrast, brightness,
    noise, a 2-pixel shift and cutout), clamped to the range of the target data (images in
    [0, 1] stay there; standardised features keep their negative values)."""

    def __init__(self, method, weight: float | None = None, threshold: float = 0.95) -> None:
        super().__init__(method, weight)
        self.threshold = threshold
        self.range = (0.0, 1.0)

    def prepare(self, feeds: dict) -> None:
        x = feeds["target"].x
        self.range = (float(x.min()), float(x.max()))

    def forward(self, out: Outputs) -> torch.Tensor:
        conf, pseudo = F.softmax(out.logits_t.detach(), -1).max(-1)
        strong = self.method.model(self.method.draw(self._strong, out.xt_raw))
        return cross_entropy(strong, pseudo, (conf >= self.threshold).float())

    def _strong(self, x: torch.Tensor, method) -> torch.Tensor:
        """The strong view of a run's batch, with the run's generator and data range."""
        own = next(t for t in method.terms.values() if type(t) is type(self))
        return strong_augment(x, method.generator, *own.range)


@packable
class MeanTeacher(Term):
    """``mean-teacher``: a teacher whose weights are an exponential moving average
    (``ema``) of the student's gives targets on another augmentation of the target batch;
    the consistency is the squared difference of the probabilities where the teacher's
    confidence passes ``threshold`` (Tarvainen & Valpola, NeurIPS 2017; for domain
    adaptation French et al., "Self-ensembling for visual domain adaptation", ICLR 2018).
    The teacher makes the predictions."""

    default_weight = 3.0

    def __init__(self, method, weight: float | None = None, ema: float = 0.99,
                 threshold: float = 0.968) -> None:
        super().__init__(method, weight)
        self.ema = ema
        self.threshold = threshold
        teacher = copy.deepcopy(method.model)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.predictor = teacher

    def forward(self, out: Outputs) -> torch.Tensor:
        with torch.no_grad():
            self.predictor.train()
            teacher = F.softmax(self.predictor(self.method.augment(out.xt_raw)), -1)
        student = F.softmax(out.logits_t, -1)
        mask = (teacher.amax(-1) >= self.threshold).float()
        return (((student - teacher) ** 2).sum(-1) * mask).mean(-1)

    @torch.no_grad()
    def after_step(self) -> None:
        student = self.method.model
        ema_update(self.predictor, student, self.ema)
        for t, s in zip(self.predictor.buffers(), student.buffers(), strict=True):
            t.copy_(s)

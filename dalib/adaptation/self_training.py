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

    Reference: the class-balanced selection of Zou et al. (ECCV 2018, yzou2/CBST) within one
    run.
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
    et al., "FixMatch", NeurIPS 2020; for domain adaptation as TLlib's
    ``examples/domain_adaptation/image_classification/fixmatch.py``: source, weak and strong
    target views in separate forward passes; strong augmentation on tensors: contrast, brightness,
    noise, a 2-pixel shift and cutout), clamped to the range of the target data (images in
    [0, 1] stay there; standardised features keep their negative values)."""

    joint = False

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
        return cross_entropy(strong, pseudo, (conf > self.threshold).float())

    def _strong(self, x: torch.Tensor, method) -> torch.Tensor:
        """The strong view of a run's batch, with the run's generator and data range."""
        own = next(t for t in method.terms.values() if type(t) is type(self))
        return strong_augment(x, method.generator, *own.range)


@packable
class MeanTeacher(Term):
    """``mean-teacher``: self-ensembling for domain adaptation (French, Mackiewicz & Fisher,
    "Self-ensembling for visual domain adaptation", ICLR 2018; ``experiment_domainadapt_
    meanteacher.py`` of github.com/Britefury/self-ensemble-visual-domain-adapt), after
    Tarvainen & Valpola (NeurIPS 2017). A teacher whose weights are an exponential moving
    average (``ema``) of the student's predicts another augmentation of the target batch;
    the consistency is the squared difference of the probabilities, averaged over classes,
    where the teacher's confidence passes ``threshold``, averaged over the batch; the
    class-balance term (``balance`` x C x the mean binary cross-entropy of the student's
    mean target prediction against 1/C, times the share of confident samples) keeps the
    predictions from collapsing onto few classes. Student and teacher see each domain in its
    own forward pass. The teacher makes the predictions."""

    default_weight = 3.0
    joint = False

    def __init__(self, method, weight: float | None = None, ema: float = 0.99,
                 threshold: float = 0.968, balance: float = 0.005) -> None:
        super().__init__(method, weight)
        self.ema = ema
        self.threshold = threshold
        self.balance = balance
        teacher = copy.deepcopy(method.model)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.predictor = teacher

    def forward(self, out: Outputs) -> torch.Tensor:
        with torch.no_grad():
            self.predictor.train()
            teacher = F.softmax(self.predictor(self.method.augment(out.xt_raw)), -1)
        student = F.softmax(out.logits_t, -1)
        mask = (teacher.amax(-1) > self.threshold).float()
        loss = (((student - teacher) ** 2).mean(-1) * mask).mean(-1)
        if self.balance and not (isinstance(self.weight, float) and self.weight == 0):
            c = student.shape[-1]
            mean = student.mean(-2)
            bce = -(torch.log(mean + 1e-6) / c + (1 - 1 / c) * torch.log(1 - mean + 1e-6))
            # the reference adds this term at weight ``balance`` beside the consistency at
            # ``weight``: divided by the weight here, as the method multiplies by it
            loss = loss + self.balance / self.weight * bce.mean(-1) * c * mask.mean(-1)
        return loss

    @torch.no_grad()
    def after_step(self) -> None:
        student = self.method.model
        ema_update(self.predictor, student, self.ema)
        for t, s in zip(self.predictor.buffers(), student.buffers(), strict=True):
            t.copy_(s)

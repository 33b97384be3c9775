"""The built-in methods and adaptation terms, registered with the same public calls as a
user's plugin (:mod:`dalib.plugins`)."""

from __future__ import annotations

from dalib.adaptation.adversarial import CDAN, DANN, MCD, MDD
from dalib.adaptation.confusion import MCC, EntropyMin, InfoMax
from dalib.adaptation.discrepancy import CORAL, MMD, RSD
from dalib.adaptation.self_training import FixMatch, MeanTeacher, PseudoLabel
from dalib.adaptation.weighting import PADA, Gate
from dalib.baselines import AdaBN, Supervised
from dalib.continual.avalanche import AvalancheStrategy
from dalib.continual.distillation import LwF
from dalib.continual.gem import AGEM
from dalib.continual.online import MIR, GDumb
from dalib.continual.regularization import EWC, MAS, SI
from dalib.continual.replay import DER, Cumulative, Rehearsal, Replay
from dalib.generalization.alignment import (
    CORALAlignment,
    DomainAdversarial,
    MMDAlignment,
    MomentMatching,
)
from dalib.generalization.invariance import IRM, VREx
from dalib.generalization.meta import MLDG, Fish
from dalib.generalization.mixing import Mixup
from dalib.generalization.pairs import MomentMatchingPairs
from dalib.generalization.robust import GroupDRO
from dalib.generalization.style import MixStyle, SagNet
from dalib.openset.osbp import OSBP
from dalib.openset.ova import OVANet
from dalib.plugins import builtins, register_method, register_term
from dalib.testtime.entropy import EATA, SAR, SHOT, RDumb, Tent
from dalib.testtime.norm import NormAdapt
from dalib.testtime.output import LAME
from dalib.testtime.teacher import CoTTA, RoTTA
from dalib.transfer.finetune import FineTune
from dalib.transfer.regularized import BSS, L2SP


def register_builtins() -> None:
    """Register dalib's methods and terms (once, when this module is imported)."""
    # transfer baselines and methods
    register_method("source-only", Supervised, description="train on labelled source only",
                    data="source", joint=False)
    register_method("target-only", Supervised, description="train on the k labelled target "
                    "samples per class only (NTG reference)", data="target_labelled", joint=False)
    register_method("source+target", Supervised, description="train on labelled source and the k "
                    "labelled target samples per class (the 'with source' side of the NTG)",
                    data=("source", "target_labelled"), joint=False)
    register_method("target-oracle", Supervised, description="UPPER BOUND: train on all target "
                    "train labels", data="target_oracle", joint=False)
    register_method("adabn", AdaBN, description="source-only with batch-norm statistics "
                    "re-estimated on the unlabelled target")
    # adaptation terms: each is also a method (source loss + the term); '+' combines them
    register_term("dann", DANN, "adversarial: domain discriminator via gradient reversal")
    register_term("cdan", CDAN, "adversarial: discriminator on features x predictions")
    register_term("cdan-e", CDAN, "adversarial: CDAN with entropy conditioning", entropy=True)
    register_term("mdd", MDD, "adversarial: margin disparity discrepancy (DD on continuous "
                  "targets)")
    register_term("dan", MMD, "discrepancy: multi-kernel MMD")
    register_term("deep-coral", CORAL, "discrepancy: covariance alignment")
    register_term("rsd", RSD, "regression: representation subspace distance (principal angles "
                  "between source and target feature subspaces)")
    register_term("mcc", MCC, "confusion: minimum class confusion on target")
    register_term("entmin", EntropyMin, "entropy minimisation on target")
    register_term("im", InfoMax, "information maximisation on target: mean entropy minus the "
                  "entropy of the mean prediction (SHOT's objective)")
    register_term("pseudo-label", PseudoLabel, "self-training: class-balanced pseudo-label rounds")
    register_term("fixmatch", FixMatch, "self-training: weak/strong consistency")
    register_term("mean-teacher", MeanTeacher, "self-training: EMA teacher consistency")
    register_term("gate", Gate, "negative transfer: source samples weighted by a (feature, label) "
                  "discriminator gate (needs k >= 1)")
    register_term("pada", PADA, "partial adaptation: DANN with source classes weighted by the "
                  "target's predicted class mass")

    register_method("osbp", OSBP, description="open-set adaptation: an unknown output, its "
                    "target probability held at t by the classifier and pushed away by the "
                    "features through gradient reversal (Saito et al. 2018)")
    register_method("ovanet", OVANet, description="open-set / universal adaptation: one-vs-all "
                    "classifiers with hard negatives reject unknowns; open-set entropy on the "
                    "target (Saito & Saenko 2021)")
    register_method("mcd", MCD, description="adversarial: maximum classifier discrepancy (two heads)")
    register_method("linear-probe", FineTune, description="pretrain on source, then a new head on "
                    "frozen features fitted to the k labelled target samples", freeze="all")
    register_method("finetune-top", FineTune, description="pretrain on source, freeze the first "
                    "blocks (freeze = count or block name), fine-tune the rest on the k target "
                    "labels", defaults={"freeze": 1})
    register_method("finetune-full", FineTune, description="pretrain on source, fine-tune "
                    "everything on the k target labels (backbone at backbone_lr x lr)", freeze=0)
    register_method("l2-sp", L2SP, description="fine-tuning regularised towards the pretrained "
                    "weights")
    register_method("bss", BSS, description="fine-tuning with batch spectral shrinkage")

    # domain generalization: several labelled source domains, each sample's environment known
    register_method("erm", Supervised, description="empirical risk minimisation on the pooled "
                    "source domains (Vapnik 1998; the baseline of domain generalization)",
                    data="source", joint=False)
    register_method("irm", IRM, description="invariant risk minimisation: the IRMv1 penalty "
                    "across source environments (Arjovsky et al. 2019)")
    register_method("vrex", VREx, description="risk extrapolation: the variance of the source "
                    "environments' risks as a penalty (Krueger et al. 2021)")
    register_method("groupdro", GroupDRO, description="distributionally robust optimisation "
                    "over source environments, online weights (Sagawa et al. 2020)")
    register_method("mixup", Mixup, description="inter-domain Mixup: inputs and labels of two "
                    "environments mixed (Yan et al. 2020)")
    register_method("coral", CORALAlignment, description="feature means and covariances of "
                    "every pair of domains aligned (Sun & Saenko 2016, DomainBed's form)")
    register_method("mmd", MMDAlignment, description="multi-kernel MMD between every pair of "
                    "domains (Li et al. 2018, MMD-AAE)")
    register_method("dann-domains", DomainAdversarial, description="one discriminator over "
                    "every domain, discriminator and model steps in turn (Ganin et al. 2016, "
                    "DomainBed's DANN)")
    register_method("cdan-domains", DomainAdversarial, description="a discriminator over every "
                    "domain, conditioned on labels (sources) and predictions (target) (Li et "
                    "al. 2018, DomainBed's CDANN)", conditional=True)
    register_method("fish", Fish, description="gradient matching: a copy steps through each "
                    "domain in turn, the model moves towards it (Shi et al. 2022)")
    register_method("mldg", MLDG, description="meta-learning: each source domain meta-train for "
                    "the next, first-order (Li et al. 2018, DomainBed's MLDG)")
    register_method("sagnet", SagNet, description="style-agnostic: a content head on "
                    "style-randomized features, an adversarial style head (Nam et al. 2021)")
    register_method("mixstyle", MixStyle, description="feature-map statistics mixed across "
                    "domains (Zhou et al. 2021; convolutional backbones)")
    register_method("m3sda", MomentMatching, description="multi-source adaptation: moments of "
                    "every pair of sources and of each source with the target matched (Peng et "
                    "al. 2019)")
    register_method("m3sda-beta", MomentMatchingPairs, description="multi-source adaptation: "
                    "moment matching plus a classifier pair per source trained by MCD's three "
                    "steps (Peng et al. 2019, M3SDA-beta)")

    # test-time adaptation: a source-trained model adapted online on the test stream
    register_method("bn", NormAdapt, kind="test-time", description="each test batch "
                    "normalised by its own batch-norm statistics (Schneider et al. 2020)")
    register_method("tent", Tent, kind="test-time", description="entropy minimisation of the "
                    "batch-norm affine parameters (Wang et al. 2021)")
    register_method("eata", EATA, kind="test-time", description="selected, weighted entropy "
                    "with a Fisher anchor to the source weights (Niu et al. 2022)")
    register_method("sar", SAR, kind="test-time", description="confident-sample entropy, "
                    "sharpness-aware steps, reset on collapse (Niu et al. 2023)")
    register_method("rdumb", RDumb, kind="test-time", description="EATA's selected entropy, "
                    "the model reset to the source one periodically (Press et al. 2023)",
                    fisher_weight=0.0)
    register_method("shot", SHOT, kind="test-time", description="information maximisation of "
                    "the feature extractor with centroid pseudo-labels, online (Liang et al. "
                    "2020)")
    register_method("cotta", CoTTA, kind="test-time", description="mean teacher with "
                    "augmented pseudo-labels and stochastic restore (Wang et al. 2022)")
    register_method("rotta", RoTTA, kind="test-time", description="robust batch norm, a "
                    "category-balanced memory and a timeliness-weighted mean teacher (Yuan et "
                    "al. 2023)")
    register_method("lame", LAME, kind="test-time", description="output-only: Laplacian-"
                    "regularised batch assignment, the model unchanged (Boudiaf et al. 2022)")

    # continual-learning strategies
    register_method("naive", Supervised, kind="stream", description="fine-tune on each task in "
                    "turn", data="train", joint=False)
    register_method("joint", Supervised, kind="stream", description="UPPER BOUND: train on all "
                    "tasks at once", data="train", joint=True)
    register_method("cumulative", Cumulative, kind="stream", description="retrain on all tasks "
                    "seen so far")
    register_method("ewc", EWC, kind="stream", description="elastic weight consolidation (mode = "
                    "separate | online)")
    register_method("si", SI, kind="stream", description="synaptic intelligence", mode="online")
    register_method("mas", MAS, kind="stream", description="memory-aware synapses")
    register_method("lwf", LwF, kind="stream", description="learning without forgetting "
                    "(distillation)")
    register_method("replay", Replay, kind="stream", description="experience replay (reservoir or "
                    "class-balanced buffer)")
    register_method("rehearsal", Rehearsal, kind="stream", description="naive rehearsal of Hsu "
                    "et al. (each task on the union of its data and the memory)")
    register_method("agem", AGEM, kind="stream", description="averaged gradient episodic memory")
    register_method("mir", MIR, kind="stream", description="online replay of the buffer samples "
                    "a virtual step on the incoming batch interferes with most (Aljundi et al. "
                    "2019)")
    register_method("gdumb", GDumb, kind="stream", description="a greedy class-balanced memory; "
                    "a model trained from scratch on it alone before every evaluation (Prabhu "
                    "et al. 2020)")
    register_method("der", DER, kind="stream", description="dark experience replay (logit "
                    "matching)")
    register_method("der++", DER, kind="stream", description="dark experience replay with label "
                    "replay", beta=0.5)
    for _name in ("naive", "ewc", "replay", "lwf", "si", "agem"):
        register_method(f"avalanche:{_name}", AvalancheStrategy, kind="stream",
                        description=f"Avalanche's own {_name} strategy on the same model, "
                        "optimizer and budget",
                        defaults={"reset_optimizer": False},  # Avalanche 0.6 keeps the state
                        strategy=_name)


with builtins():
    register_builtins()

"""Regression under shift: RSD's loss and the squared-error source loss on fixed tensors
against the reference formulas, transcribed from Chen et al. (ICML 2021) and TLlib's
``tllib/alignment/rsd.py`` / ``examples/domain_adaptation/image_regression/rsd.py``, not
from dalib."""

import torch
import torch.nn.functional as F

from dalib.adaptation.base import Outputs
from dalib.models import build_model
from dalib.registry import build_method

N, D, W = 6, 5, 16  # batch, input and feature widths (a batch spans a proper subspace)


def tllib_rsd(f_s, f_t, trade_off=0.1):
    """TLlib's ``RepresentationSubspaceDistance.forward``: ``torch.svd`` of the transposed
    features, principal angles from the SVD of ``U_s^T U_t``, the L1 norm of their sines
    plus ``trade_off`` x the 2-norm of ``|P_s| - |P_t|``."""
    u_s, _, _ = torch.svd(f_s.t())
    u_t, _, _ = torch.svd(f_t.t())
    p_s, cosine, p_t = torch.svd(torch.mm(u_s.t(), u_t))
    sine = torch.sqrt(1 - torch.pow(cosine, 2))
    return torch.norm(sine, 1) + trade_off * torch.norm(torch.abs(p_s) - torch.abs(p_t), 2)


def _method(name, **options):
    torch.manual_seed(0)
    return build_method(name, build_model((D,), 1, hidden=(W,), batch_norm=False),
                        augmentation="none", weight_decay=0.0, **options)


def test_rsd_is_tllibs_subspace_distance_with_base_mismatch():
    g = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(N, W, generator=g), torch.randn(N, W, generator=g)
    method = _method("rsd", bmp_weight=0.3)
    term = method.terms["rsd"]
    ys = torch.randn(N, generator=g)
    got = term(Outputs(ys, None, None, f_s, f_t, torch.zeros(N, 1), torch.zeros(N, 1)))
    torch.testing.assert_close(got, tllib_rsd(f_s, f_t, 0.3), rtol=1e-4, atol=1e-5)
    # the reference's defaults: weight 0.001 (--trade-off), bmp 0.1 (--trade-off-bmp), and
    # source and target through the model in separate passes
    default = _method("rsd").terms["rsd"]
    assert default.weight == 0.001 and default.bmp_weight == 0.1 and default.joint is False


def test_rsd_total_loss_is_the_source_mse_plus_weighted_rsd():
    g = torch.Generator().manual_seed(1)
    method = _method("rsd", weight=0.5)
    xs, xt, ys = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g), \
        torch.randn(N, generator=g)
    from dalib.engine import Batch

    total, logs = method.loss({"source": Batch(xs, ys, None), "target": Batch(xt, None, None)})
    model = method.model
    y_s, f_s = model.head(model.features(xs)), model.features(xs)
    f_t = model.features(xt)
    want = F.mse_loss(y_s[:, 0], ys) + 0.5 * tllib_rsd(f_s, f_t)
    torch.testing.assert_close(total, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logs["cls"], F.mse_loss(y_s[:, 0], ys), rtol=1e-5, atol=1e-6)


def test_supervised_baselines_on_continuous_targets_are_mse():
    """source-only on continuous targets: the reference's ``F.mse_loss`` of the output (TLlib's
    image-regression examples; DomainBed's ERM with a squared-error loss)."""
    from dalib.engine import Batch

    g = torch.Generator().manual_seed(2)
    method = _method("source-only")
    x, y = torch.randn(N, D, generator=g), torch.randn(N, generator=g)
    total, _ = method.loss({"source": Batch(x, y, None)})
    torch.testing.assert_close(total, F.mse_loss(method.model(x)[:, 0], y), rtol=1e-5,
                               atol=1e-6)


def tllib_regression_mdd(y_s, y_s_adv, y_t, y_t_adv, margin=1.0):
    """TLlib's ``RegressionMarginDisparityDiscrepancy`` (``tllib/alignment/mdd.py``): the
    L1 disparity ``F.l1_loss(y_adv, y.detach())`` per element, ``-margin`` x its source mean
    plus its target mean; ``dd.py`` trains on ``mse_loss - trade_off x`` this."""
    source = -margin * F.l1_loss(y_s_adv, y_s.detach(), reduction="none")
    target = F.l1_loss(y_t_adv, y_t.detach(), reduction="none")
    return source.mean() + target.mean()


def test_mdd_on_continuous_targets_is_tllibs_regression_disparity_discrepancy():
    """The adversary's outputs pass a sigmoid as TLlib's regressor heads end in one on labels
    in [0, 1]; dalib stretches it over each factor's source range, which is [0, 1] here."""
    from dalib.engine import Batch

    g = torch.Generator().manual_seed(2)
    torch.manual_seed(0)
    method = build_method("mdd", build_model((D,), 3, hidden=(W,), batch_norm=False),
                          augmentation="none", weight_decay=0.0)
    term = method.terms["mdd"]
    ys = torch.rand(N, 3, generator=g)
    ys[0], ys[1] = 0.0, 1.0  # each factor's source range: [0, 1]
    term.prepare({"source": Batch(torch.randn(N, D, generator=g), ys, None)})
    f_s, f_t = torch.randn(N, W, generator=g), torch.randn(N, W, generator=g)
    l_s, l_t = torch.rand(N, 3, generator=g), torch.rand(N, 3, generator=g)
    got = term(Outputs(ys, None, None, f_s, f_t, l_s, l_t))
    adv_s, adv_t = torch.sigmoid(term.adversary(f_s)), torch.sigmoid(term.adversary(f_t))
    want = -tllib_regression_mdd(l_s, adv_s, l_t, adv_t)  # the loss adds -trade_off x mdd
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert term.weight == 1.0 and term.margin is None  # trade-off 1, margin 1 (dd.py)
    # a wider source range stretches the bound; the margin weighs the source disparity
    term.low, term.high, term.margin = torch.full((3,), -2.0), torch.full((3,), 3.0), 2.0
    adv_s, adv_t = (-2 + 5 * torch.sigmoid(term.adversary(f)) for f in (f_s, f_t))
    torch.testing.assert_close(term(Outputs(ys, None, None, f_s, f_t, l_s, l_t)),
                               -tllib_regression_mdd(l_s, adv_s, l_t, adv_t, margin=2.0),
                               rtol=1e-5, atol=1e-6)

"""Several domains in one scenario: the built-in multi-domain datasets, pooled sources that
keep each sample's environment, and leave-one-domain-out families."""

import pytest
import torch

from dalib.cli import main
from scenarios.datasets import load_colored_mnist, load_mnist, load_rotated_mnist
from scenarios.suite import parse_suite


def test_colored_mnist_is_domainbeds_construction():
    d = load_colored_mnist()
    assert d.x.shape == (10000, 2, 28, 28) and d.envs == ("+90%", "+80%", "-90%")
    assert d.classes == ("0-4", "5-9")
    green = d.x[:, 1].flatten(1).sum(1) > 0  # colour 1: the red channel is zeroed
    assert not bool((d.x[green, 0] > 0).any())
    for i, agree in enumerate((0.9, 0.8, 0.1)):  # colour follows the label at these rates
        m = d.env == i
        share = float((green[m].long() == d.y[m]).float().mean())
        assert abs(share - agree) < 0.02, (d.envs[i], share)
    digits = load_mnist().y
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    first = digits[order[0::3]]  # environment +90% holds every third shuffled digit
    noise = float(((first >= 5).long() != d.y[d.env == 0]).float().mean())
    assert abs(noise - 0.25) < 0.02  # 25% label noise


def test_rotated_mnist_rotates_each_environment_by_its_angle():
    d = load_rotated_mnist(angles=[0, 90])
    assert d.envs == ("0", "90") and d.x.shape == (10000, 1, 28, 28)
    upright = load_rotated_mnist(angles=[0, 90], domain="0")
    turned = load_rotated_mnist(angles=[0, 90], domain="90")
    assert len(upright) == len(turned) == 5000 and upright.env is None
    mnist = load_mnist()
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(upright.x, mnist.x[order[0::2]], atol=1e-5)  # resampled at 0 deg
    quarter = torch.rot90(mnist.x[order[1::2]], 1, dims=(2, 3))  # counter-clockwise
    assert (turned.x - quarter).abs().mean() < 0.02  # bilinear sampling: near, not exact


SUITE = {"name": "lodo", "seeds": [0], "budget": {"steps": 5}, "scenario": [{
    "name": "rm", "kind": "transfer",
    "domains": {"dataset": "rotated-mnist", "angles": [0, 30, 60],
                "shifts": [{"name": "resize", "size": 8}]},
    "methods": ["erm"]}]}


def test_a_domains_family_expands_into_one_scenario_per_held_out_domain(tmp_path):
    suite = parse_suite(SUITE, tmp_path / "s.toml")
    assert [s.name for s in suite.scenarios] == ["rm/0", "rm/30", "rm/60"]
    sc = suite.scenarios[1]
    assert sc.options["held_out"] == "30" and sc.options["family"] == "rm"
    assert [s["domain"] for s in sc.sources] == ["0", "60"]
    assert sc.options["target"]["domain"] == "30" and sc.default_selection == "source-val"
    data = sc.build(0)
    assert data.source.envs == ("0", "60")
    # every source domain keeps its share of every class in each part (training-domain
    # validation: each source domain's held-out part)
    for part in (data.source, data.source_val, data.source_test):
        counts = torch.bincount(part.env * 10 + part.y, minlength=20).float()
        assert counts.min() > 0 and counts.max() / counts.min() < 2.5
    sizes = torch.bincount(load_rotated_mnist(angles=[0, 30, 60]).env).tolist()
    assert len(data.source) + len(data.source_val) + len(data.source_test) == sizes[0] + sizes[2]
    some = parse_suite({**SUITE, "scenario": [{**SUITE["scenario"][0],
                                               "test_domains": ["60"]}]}, tmp_path / "s.toml")
    assert [s.name for s in some.scenarios] == ["rm/60"]


FAMILY = """seeds = 1
[budget]
steps = 5
[[scenario]]
name = "rm"
kind = "transfer"
methods = {methods}
domains = {domains}
{extra}
"""
ROTATED = '{ dataset = "rotated-mnist", angles = [0, 30, 60], shifts = [{ name = "resize", size = 8 }] }'


@pytest.mark.parametrize("change, expected", [
    ({"extra": 'test_domains = ["45"]'},
     "scenario[0].test_domains: is ['45'] (expected 'each' or a list of some of 0, 30, 60)"),
    ({"extra": 'source = { dataset = "mnist" }'}, "scenario[0].source: is set beside domains"),
    ({"methods": '["erm", "dann"]'}, "scenario[0].methods[1]: 'dann' trains on unlabelled "
                                      "target data, which target_data = 'none' withholds"),
    ({"methods": '["m3sda"]'}, "scenario[0].methods[0]: 'm3sda' trains on unlabelled"),
    ({"domains": '{ dataset = "uci-digits" }'}, "holds one domain"),
    ({"extra": 'held_out = "0"'}, "scenario[0].held_out: is set"),
    ({"domains": '[{ dataset = "uci-digits" }]'}, "scenario[0].domains: is"),
    ({"extra": 'target_data = "some"'}, "scenario[0].target_data: is 'some'"),
])
def test_bad_families_are_one_line_exit_2(tmp_path, capsys, change, expected):
    text = FAMILY.format(**{"methods": '["erm"]', "domains": ROTATED, "extra": "", **change})
    (tmp_path / "s.toml").write_text(text)
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_multi_source_adaptation_pools_the_sources_and_adapts_to_the_target(tmp_path):
    """A list of sources with an unlabelled target: DA methods train on the pooled sources
    (each batch knows its samples' environments) and the target's training part."""
    import json

    (tmp_path / "s.toml").write_text(FAMILY.format(
        methods='["erm", "dann", "m3sda", "dann-domains"]', domains=ROTATED,
        extra='target_data = "unlabelled"\ntest_domains = ["60"]'))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"),
                 "--no-report"]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    assert {r["method"] for r in records} == {"erm", "dann", "m3sda", "dann-domains"}
    assert all(r["status"] == "ok" for r in records)
    assert {r["selection"] for r in records} == {"bnm"}  # adaptation: dalib's default
    assert all(r["config"]["data"]["held_out"] == "60" for r in records)


LODO_FAMILY = FAMILY.replace("[budget]\nsteps = 5", "[budget]\nsteps = 30\ncheckpoints = 5")


def _records(out):
    import json

    return [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]


def test_leave_one_domain_out_validation_picks_by_the_other_domains(tmp_path):
    """DomainBed's second protocol: each held-out domain's checkpoint is the one whose mean
    accuracy over runs trained without each other domain (and tested on it) is best."""
    import pandas as pd

    (tmp_path / "s.toml").write_text(LODO_FAMILY.format(
        methods='["erm"]', domains=ROTATED, extra='selection = "leave-one-domain-out"'))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
    records = {r["scenario"]: r for r in _records(out)}
    assert sorted(records) == ["rm/0", "rm/0/validate-30", "rm/0/validate-60", "rm/30",
                               "rm/30/validate-0", "rm/30/validate-60", "rm/60",
                               "rm/60/validate-0", "rm/60/validate-30"]
    val = records["rm/30/validate-60"]["config"]["data"]
    assert [s["domain"] for s in val["source"]] == ["0"] and val["target"]["domain"] == "60"
    results = pd.read_csv(out / "results.csv")
    for held, others in (("0", ("30", "60")), ("30", ("0", "60")), ("60", ("0", "30"))):
        main_run = records[f"rm/{held}"]
        scores = [sum(records[f"rm/{held}/validate-{v}"]["checkpoints"][i]["target_acc"]
                      for v in others) / 2 for i in range(5)]
        best = max(reversed(range(5)), key=lambda i: scores[i])  # ties: the later one
        row = results[(results["scenario"] == f"rm/{held}")]
        picked = row[row["metric"] == "target_acc_lodo"]["value"].item()
        assert picked == main_run["checkpoints"][best]["target_acc"]
        assert row[row["metric"] == "lodo_val_acc"]["value"].item() == scores[best]
    report = (out / "report.md").read_text()
    assert "leave-one-domain-out validation" in report
    table = pd.read_csv(out / "tables" / "domains-rm-target_acc_lodo.csv")
    assert list(table.columns) == ["method", "0", "30", "60", "average"]


def test_a_search_selects_by_leave_one_domain_out_validation(tmp_path):
    (tmp_path / "s.toml").write_text(LODO_FAMILY.format(
        methods='[{ name = "erm", lr = [0.01, 0.0001] }]', domains=ROTATED,
        extra='selection = "leave-one-domain-out"\ntest_domains = ["60"]\n'
              'search = { select = "leave-one-domain-out" }'))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--no-report"]) == 0
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    lodo = results[(results["metric"] == "lodo_val_acc") & (results["scenario"] == "rm/60")]
    assert len(lodo) == 2  # one per configuration
    best = lodo.loc[lodo["value"].idxmax(), "method"]
    chosen = results[(results["method"] == "erm") & (results["scenario"] == "rm/60")]
    trial = chosen[chosen["metric"] == "selected_trial"]["value"].item()
    assert best == ("erm[lr=0.01]", "erm[lr=0.0001]")[int(trial)]
    expected = results[(results["method"] == best) & (results["metric"] == "target_acc_lodo")
                       & (results["scenario"] == "rm/60")]["value"].item()
    assert chosen[chosen["metric"] == "target_acc"]["value"].item() == expected
    assert not (results["scenario"].str.contains("validate") & (results["method"] == "erm")
                ).any()  # validation runs pick nothing themselves


@pytest.mark.parametrize("domains, extra, expected", [
    ('[{ dataset = "rotated-mnist", domain = "0" }, { dataset = "rotated-mnist", domain = "15" }]',
     'selection = "leave-one-domain-out"', "three or more domains"),
    (ROTATED, 'selection = "leave-one-domain-out"\ntarget_data = "unlabelled"',
     "target_data = 'none'"),
    (ROTATED, 'search = { select = "leave-one-domain-out" }',
     "not part of a leave-one-domain-out family"),
])
def test_leave_one_domain_out_needs_its_setting(tmp_path, capsys, domains, extra, expected):
    (tmp_path / "s.toml").write_text(LODO_FAMILY.format(
        methods='[{ name = "erm", lr = [0.01, 0.001] }]', domains=domains, extra=extra))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err


def test_domain_generalization_feeds_no_target_data(tmp_path):
    """Methods that align the target where there is one (dann-domains, coral, ...) see only
    the source domains when target_data = 'none'."""
    from dalib.engine import Budget, transfer_samplers
    from dalib.models import model_for
    from dalib.registry import build_method

    for target_data, feeds, outputs in (("none", {"source"}, 2),
                                        ("unlabelled", {"source", "target"}, 3)):
        table = {**SUITE["scenario"][0], "target_data": target_data}
        data = parse_suite({**SUITE, "scenario": [table]}, tmp_path / "s.toml").scenarios[0].build(0)
        method = build_method("dann-domains", model_for(data))
        samplers, _ = transfer_samplers(method, data, Budget(steps=2), torch.device("cpu"), 0)
        assert set(samplers) == feeds and method.discriminator.outputs == outputs


@pytest.mark.slow  # whole sweeps of several leave-one-out families
def test_leave_one_source_out_reports_each_source_domains_effect(tmp_path):
    import pandas as pd

    (tmp_path / "s.toml").write_text(LODO_FAMILY.replace("seeds = 1", "seeds = 2").format(
        methods='["erm"]', domains=ROTATED,
        extra='leave_one_source_out = true\ntest_domains = ["0", "60"]'))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["scenario"].unique()) == ["rm/0", "rm/0/without-30", "rm/0/without-60",
                                                     "rm/60", "rm/60/without-0",
                                                     "rm/60/without-30"]
    acc = results[results["metric"] == "target_acc"].set_index(["scenario", "seed"])["value"]
    effects = pd.read_csv(out / "tables" / "source-effects-rm.csv")
    assert len(effects) == 4
    row = effects[(effects["held_out"] == 0) & (effects["source"] == 30)].iloc[0]
    # the effect of adding 30 degrees to the sources of held-out 0: with it (trained on 30
    # and 60) minus without it (trained on 60 alone), paired by seed
    by_hand = [acc["rm/0", s] - acc["rm/0/without-30", s] for s in (0, 1)]
    assert row["mean"] == pytest.approx(sum(by_hand) / 2) and row["n"] == 2
    assert not row["hurts"]  # two seeds never support a mark
    assert (out / "figures" / "source-effects-rm.png").is_file()
    report = (out / "report.md").read_text()
    assert "Negative transfer across domains" in report
    # the family table holds the held-out domains only
    table = pd.read_csv(out / "tables" / "domains-rm-target_acc.csv")
    assert list(table.columns) == ["method", "0", "60", "average"]


def _digit_domains():
    """UCI digits in three domains: as they are, shifted a pixel right, and at half
    contrast."""
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).reshape(-1, 8, 8)
    order = np.random.default_rng(0).permutation(len(x))
    parts = np.array_split(order, 3)
    return {"upright": (x[parts[0]], y[parts[0]]),
            "shifted": (np.roll(x[parts[1]], 1, axis=2), y[parts[1]]),
            "faint": (0.5 * x[parts[2]], y[parts[2]])}


def write_domain_table(path):
    import pandas as pd

    frames = []
    for site, (x, y) in _digit_domains().items():
        frame = pd.DataFrame(x.reshape(len(x), -1), columns=[f"p{i}" for i in range(64)])
        frames.append(frame.assign(digit=y, site=site))
    pd.concat(frames).to_csv(path, index=False)


def write_domain_folder(root):
    import numpy as np
    from PIL import Image

    for site, (x, y) in _digit_domains().items():
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / site / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i}.png")


def test_a_table_with_a_domain_column_is_a_family(tmp_path):
    write_domain_table(tmp_path / "digits.csv")
    table = '{ table = "digits.csv", label = "digit", domain_column = "site" }'
    suite = parse_suite({**SUITE, "scenario": [{"name": "t", "kind": "transfer",
                                                "domains": {"table": "digits.csv",
                                                            "label": "digit",
                                                            "domain_column": "site"},
                                                "methods": ["erm"]}]}, tmp_path / "s.toml")
    assert [s.name for s in suite.scenarios] == ["t/faint", "t/shifted", "t/upright"]
    data = suite.scenarios[0].build(0)
    assert data.source.envs == ("shifted", "upright") and data.source.x.shape[1] == 64
    assert len(data.target_train) + len(data.target_test) == 599  # the faint third
    (tmp_path / "bad.toml").write_text(FAMILY.format(
        methods='["erm"]', extra="", domains=table.replace('"site"', '"place"')))
    assert main(["run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "o")]) == 2


def _hand_written_erm(train, test, seed, steps=300, batch=64, standardize=False):
    """ERM on the pooled source domains written out in PyTorch: dalib's MLP (64-128-10, batch
    norm), AdamW (lr 1e-3, weight decay 5e-4), ``steps`` batches drawn with replacement."""
    import numpy as np
    from torch import nn

    x = torch.tensor(np.concatenate([a for a, _ in train]).reshape(-1, 64), dtype=torch.float32)
    y = torch.tensor(np.concatenate([b for _, b in train]))
    xt = torch.tensor(test[0].reshape(-1, 64), dtype=torch.float32)
    if standardize:
        mean, std = x.mean(0), x.std(0)
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant pixel maps to 0
        x, xt = (x - mean) / std, (xt - mean) / std
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return 100.0 * float((model(xt).argmax(1) == torch.tensor(test[1])).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["table", "folder"])
def test_multi_domain_files_match_a_hand_written_erm_under_each_protocol(tmp_path, kind):
    """A CSV with a domain column and a root/domain/class/image folder run leave-one-domain-out
    under training-domain and leave-one-domain-out validation (and the oracle bound); dalib's
    ERM lands where a hand-written pooled ERM does on every held-out domain."""
    import pandas as pd

    if kind == "table":
        write_domain_table(tmp_path / "digits.csv")
        domains = '{ table = "digits.csv", label = "digit", domain_column = "site" }'
    else:
        write_domain_folder(tmp_path / "digits")
        domains = '{ folder = "digits" }'
    (tmp_path / "s.toml").write_text(f"""seeds = 3
[budget]
steps = 300
batch_size = 64
[model]
arch = "mlp"
hidden = [128]
[optim]
augmentation = "none"
[[scenario]]
name = "d"
kind = "transfer"
domains = {domains}
selection = "leave-one-domain-out"
methods = ["erm"]
""")
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--no-report"]) == 0
    results = pd.read_csv(out / "results.csv")
    parts = _digit_domains()
    for held in parts:
        mine = results[results["scenario"] == f"d/{held}"]
        values = {m: mine[mine["metric"] == m]["value"].to_numpy()
                  for m in ("target_acc", "target_acc_lodo", "target_acc_last",
                            "target_acc_oracle")}
        assert all(len(v) == 3 for v in values.values()), held
        assert (values["target_acc"] <= values["target_acc_oracle"]).all()
        assert (values["target_acc_lodo"] <= values["target_acc_oracle"]).all()
        train = [parts[d] for d in parts if d != held]
        reference = [_hand_written_erm(train, parts[held], seed,
                                       standardize=kind == "table") for seed in range(3)]
        gap = values["target_acc_last"].mean() - sum(reference) / 3
        # measured here: gaps of -2.5 to +2.0 points; a seed's sd is up to 5 points on the
        # shifted domain, so 8 points is about two standard errors of the difference
        assert abs(gap) < 8, (held, values["target_acc_last"], reference)


@pytest.mark.slow  # whole sweeps of several leave-one-out families
def test_a_resumed_domain_generalization_sweep_equals_an_uninterrupted_one(tmp_path):
    """Leave-one-domain-out with its validation runs and leave-one-source-out runs, packed:
    records lost mid-sweep are re-run in the same packs, and every derived row (the
    leave-one-domain-out picks among them) comes out the same, bit for bit."""
    import pandas as pd

    (tmp_path / "s.toml").write_text(LODO_FAMILY.replace("seeds = 1", "seeds = 2").format(
        methods='["erm", "vrex", "mixup"]', domains=ROTATED,
        extra='selection = "leave-one-domain-out"\nleave_one_source_out = true\n'
              'test_domains = ["30"]'))
    full, part = tmp_path / "full", tmp_path / "part"
    run = ["run", str(tmp_path / "s.toml"), "--no-report", "--out"]
    assert main([*run, str(full)]) == 0
    assert main([*run, str(part)]) == 0
    records = sorted((part / "runs").glob("*.json"))
    assert len(records) == 5 * 3 * 2  # (held-out + 2 validation + 2 without) x methods x seeds
    for path in records[::3]:  # as if the sweep had stopped before writing these
        path.unlink()
    (part / "results.csv").unlink()
    assert main([*run, str(part)]) == 0

    def table(out):
        t = pd.read_csv(out / "results.csv")
        return t.sort_values(["scenario", "method", "seed", "metric"], ignore_index=True)

    pd.testing.assert_frame_equal(table(full), table(part))
    assert (table(part)["metric"] == "target_acc_lodo").sum() == 3 * 2


def test_a_missing_multi_domain_folder_names_the_layout(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(FAMILY.format(methods='["erm"]', extra="",
                                                   domains='{ folder = "PACS" }'))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scenario[0].domains.folder" in err
    assert "root/domain/class/image" in err and not (tmp_path / "out").exists()

"""Method cards (`samplers.Method`): what one method is lives in its own module, and the engine, the grids, the regimes
and the reports read the card. A toy method added by one card and one registry call runs through the fair protocol end
to end; no module outside a method's own compares a name against a method's."""
import ast
from pathlib import Path

import pytest
import torch

from dynaprune import cache, grids, regimes, report, samplers
from dynaprune.samplers.base import DynamicSampler, Method, keep
from dynaprune.train import run, train_indices

LIB = Path(samplers.__file__).resolve().parents[1]


class LowestIndices(DynamicSampler):
    """A toy method: the keep_ratio n samples of lowest index, shuffled; its knob ``stride`` (its "paper's" regime: 1)
    only changes the order."""

    version = 7

    def __init__(self, n, *, keep_ratio=0.5, stride=1, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.keep_ratio, self.stride = float(keep_ratio), int(stride)

    def _plan(self, epoch, g):
        return self._shuffle(torch.arange(self._k(self.keep_ratio)), g), None


def _regime(epochs):
    """The toy's "paper": stride = 1."""
    return {"stride": 1}


def _outside(options, epochs):
    return None if int(options.get("stride", 1)) == 1 else f"outside the toy's regime: stride {options['stride']}"


@pytest.fixture
def toy():
    samplers.register("toy_lowest", Method(LowestIndices, "lowest indices (toy)", budget=keep, regime=_regime,
                                           outside=_outside))
    try:
        yield "toy_lowest"
    finally:
        samplers.unregister("toy_lowest")
    assert "toy_lowest" not in samplers.METHODS


def test_a_toy_method_added_by_its_card_runs_through_the_protocol(toy, tmp_path, monkeypatch):
    """One card and one `register` call: the grids give it its budget and its regime, the engine trains it under the
    fair protocol (validation split, warm-up, drop_last) with exact budgets, the cache keys its version, the reports
    name it and label a run outside its regime."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    assert toy in grids.ratio_methods() and toy not in grids.own_budget() and toy not in grids.fixed_methods()
    c = grids.fair_config("smoke", toy, keep_ratio=0.25, seed=3, epochs=2)
    assert c.options("sampler_options") == {"keep_ratio": 0.25, "stride": 1} and c.val_size > 0 and c.drop_last
    assert regimes.outside(toy, c.options("sampler_options"), c.epochs) is None
    assert "stride 2" in regimes.outside(toy, {"stride": 2}, c.epochs)
    r = run(c)
    k, b = round(0.25 * len(train_indices(c))), c.batch_size
    assert [rec["backpropagated"] for rec in r.records] == [k // b * b] * 2   # drop_last: whole batches of the k planned
    assert all(rec["val_acc"] == rec["val_acc"] for rec in r.records)     # evaluated on the validation split
    assert cache.load(c) is not None
    ratios = [x for _, x in grids.curve_cells("smoke", methods=["random"])]
    assert grids.curve_cells("smoke", methods=[toy]) == [(toy, x) for x in ratios]
    assert report.display_name(cache.label_of(dict(sampler=toy, sampler_options=c.sampler_options, epochs_scale=1.0))) \
        == "lowest indices (toy) (stride=1)"
    assert report.target_share(dict(sampler=toy, sampler_options=c.sampler_options)) == 0.25
    # its version keys the cache: a new version is a new run
    key = cache.key(c)
    LowestIndices.version = 8
    try:
        assert cache.key(c) != key
    finally:
        LowestIndices.version = 7


def test_register_refuses_a_taken_name_or_a_bare_class_and_changes_nothing():
    before = dict(samplers.METHODS)
    with pytest.raises(ValueError, match="taken"):
        samplers.register("ucb", Method(LowestIndices, "x"))
    with pytest.raises(TypeError, match="Method card"):
        samplers.register("toy_bare", LowestIndices)
    with pytest.raises(ValueError, match="built-in"):
        samplers.unregister("ucb")
    assert samplers.METHODS == before and set(samplers.SAMPLERS) == set(before)


def test_every_card_is_complete_and_its_regime_is_inside():
    """Each built-in card builds its sampler from its regime (with its placeholders for static inputs), names a paper
    in the bibliography or none (ours), and its regime is inside by its own label."""
    keys = set(__import__("re").findall(r"@\w+\{([^,]+),", (LIB.parents[1] / "references.bib").read_text()))
    for name, m in samplers.METHODS.items():
        assert m.name and (m.paper is None or m.paper in keys), name
        opts = {**(m.budget(0.5, 20, {"el2n_models": 1, "el2n_epochs": 1}) if m.budget else {}), **m.regime(20)}
        if m.own_budget:
            opts = dict(m.regime(20))
        assert grids.unreachable(name, opts, 20) is None, name
        assert m.outside(dict(m.regime(20)), 20) is None, name


# modules that are a method's own code besides its sampler module: EL2N's and forgetting's scorer
OWN_CODE = {"static_scores.py"}


def test_no_module_outside_a_methods_own_compares_against_its_name():
    """The engine, grids, regimes and reports read cards: no comparison (==, !=, in) against a method's name anywhere in
    the library outside the samplers and the methods' own code (full training, the protocol's reference, is exempt)."""
    names = set(samplers.METHODS) - {"full"}
    hits = []
    for p in sorted(LIB.glob("*.py")):
        if p.name in OWN_CODE:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare):
                for side in (node.left, *node.comparators):
                    vals = [side] if isinstance(side, ast.Constant) else list(getattr(side, "elts", []))
                    hits += [f"{p.name}:{node.lineno} {v.value}" for v in vals
                             if isinstance(v, ast.Constant) and v.value in names]
    assert not hits, hits


def test_a_methods_claims_are_read_from_its_card_and_the_claims_table():
    from dynaprune import claims
    assert {c.key for c in claims.of("seta")} >= {"seta_lossless"}
    assert all(c.paper == "Raju" or "ucb" in c.curve for c in claims.of("ucb")) and claims.of("ucb")
    assert all(c.paper == "InfoBatch" or "infobatch" in c.curve for c in claims.of("infobatch"))

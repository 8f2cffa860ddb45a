"""Paper complexity figures through ``paper_complexity`` — U-SAM Table 5 (thop convention at 224×224), RCSegNeXt
Tables 4 and 8, staging Table 2 — and the thop-style counter itself."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from procto.nets import list_models, paper_complexity
from procto.nets.complexity import USAM_TABLE5, paper_complexity_names, thop_counts, torch_counts
from procto.nets.complexity import paper_complexity as paper_complexity_impl

REL = 0.005  # Table 5 figures are reproduced within 0.5 %


def _close(value: float, target: float, rel: float = REL) -> bool:
    return abs(value - target) <= rel * target


@pytest.fixture(scope="module")
def counts() -> dict:
    return {name: paper_complexity(name) for name in ("sam_b", "sam_b_lora", "usam_b", "usam_b_lora")}


def test_sam_b_matches_table5_and_spec(counts):
    c = counts["sam_b"]
    assert _close(c["params"], 90.21e6) and _close(c["macs"], 17.08e9)
    # the spec's reference thop figures for SAM-B (2-token decoder) are reproduced exactly
    assert c["params"] == 90_208_290
    assert abs(c["macs"] - 17.0824e9) < 0.0001e9
    assert c["params_tunable"] == c["params"]
    assert c["model_kwargs"] == {"num_classes": 2}


def test_usam_b_matches_table5(counts):
    c = counts["usam_b"]
    assert _close(c["params"], 103.36e6), c["params"]
    assert _close(c["macs"], 25.07e9), c["macs"]
    assert _close(c["params_tunable"], 103.36e6)


def test_usam_b_lora_tunable_matches_table5(counts):
    c = counts["usam_b_lora"]
    assert _close(c["params_tunable"], 17.68e6), c["params_tunable"]
    assert _close(c["params_tunable_thop"], 17.68e6)
    assert _close(c["params"], 103.51e6) and _close(c["macs"], 25.10e9)


def test_sam_b_lora_matches_table5(counts):
    c = counts["sam_b_lora"]
    assert _close(c["params"], 90.36e6) and _close(c["macs"], 17.11e9)
    assert _close(c["params_tunable"], 3.93e6), c["params_tunable"]


def test_torch_counts_beside_thop_counts(counts):
    for name, c in counts.items():
        assert c["params_torch"] > c["params"], name  # pos_embed, rel-pos tables, tokens, LayerNorm2d, unused modules
        assert c["params_tunable_torch"] <= c["params_torch"]
        p, tp, g = USAM_TABLE5[name]
        assert c["paper"]["params"] == round(p * 1e6)
    assert counts["usam_b"]["params_torch"] - counts["usam_b"]["params"] > 150_528 + 41_472  # pos_embed + rel-pos


def test_default_sam_b_reported_beside_paper_construction():
    c = paper_complexity_impl("sam_b", with_default=True)
    d = c["default_model"]  # the 3-class SAM-B: one more mask token than the 2-token model Table 5 counted
    assert d["params"] - c["params"] == 139_808 + 257
    assert _close(d["params"], 90.21e6) and _close(d["macs"], 17.08e9)


def test_unknown_name_raises():
    with pytest.raises(ValueError, match="no paper complexity"):
        paper_complexity("not_a_model")


# ------------------------------------------------------------------------------------- RCSegNeXt and staging

#: RCSegNeXt paper, Table 8 (and Table 1 "Ours"): #Para(M) as printed, and the exact count of the construction.
RCSEGNEXT_TABLE8 = {"rcsegnext_b": (2_759_363, "2.76 M"), "rcsegnext_l": (10_767_651, "10.77 M")}
#: RCSegNeXt paper, Table 4 (ablation of the blocks): #P(M).
RCSEGNEXT_TABLE4 = {"rcsegnext_b_plain": 22.14, "rcsegnext_b_conv": 22.07, "rcsegnext_b_convnext": 5.54,
                    "rcsegnext_b_res2net": 8.11, "rcsegnext_b_res2next": 5.52, "rcsegnext_b": 2.76}
#: Staging paper, Table 2, "# params".
STAGING_TABLE2 = {
    "staging_f_r2d": 2_796_001, "staging_f_r3d": 8_291_873, "staging_f_r2plus1d": 8_294_563,
    "staging_f_mc2": 2_799_137, "staging_f_mc3": 2_872_865, "staging_f_mc4": 3_130_913, "staging_f_mc5": 4_163_105,
    "staging_f_rmc2": 8_288_737, "staging_f_rmc3": 8_215_009, "staging_f_rmc4": 7_956_961,
    "staging_f_rmc5": 6_924_769,
}


@pytest.mark.parametrize("name", sorted(RCSEGNEXT_TABLE8))
def test_rcsegnext_b_and_l_match_table8(name):
    n, text = RCSEGNEXT_TABLE8[name]
    c = paper_complexity(name)
    assert c["params"] == n
    assert c["params_text"] == text
    assert c["params_tunable"] == n
    assert c["macs"] is None  # the paper gives no MACs
    assert c["paper"]["params"] == round(float(text.split()[0]) * 1e6)
    assert c["params_torch"] > n  # the deep-supervision heads are built but not counted


def test_rcsegnext_ablation_rows_match_table4():
    for name, m in RCSEGNEXT_TABLE4.items():
        c = paper_complexity(name)
        assert round(c["params"] / 1e6, 2) == m, name
        assert c["paper"]["params"] == round(m * 1e6) and c["macs"] is None


@pytest.mark.parametrize("name", sorted(STAGING_TABLE2))
def test_staging_variants_match_table2(name):
    c = paper_complexity(name)
    assert c["params"] == STAGING_TABLE2[name]
    assert c["paper"]["params"] == STAGING_TABLE2[name]
    assert c["params_tunable"] == c["params"]
    assert c["macs"] is None  # Table 2 has no MACs column


def test_every_registered_model_has_a_paper_count():
    assert set(list_models()) <= set(paper_complexity_names())
    assert paper_complexity("rcsegnext_b_grouped")["paper"] is None  # registered, but in no table of the paper


def test_results_are_fresh_dicts():
    a = paper_complexity("staging_f_r2d")
    a["params"] = 0
    a["paper"]["params"] = 0
    assert paper_complexity("staging_f_r2d")["params"] == 2_796_001
    assert paper_complexity("staging_f_r2d")["paper"]["params"] == 2_796_001


class _Toy(nn.Module):
    """A little of everything thop treats differently."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.seq = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 2, bias=False))
        self.tok = nn.Embedding(5, 4)  # not a thop type: not counted
        self.table = nn.Parameter(torch.zeros(7))  # a bare parameter: not counted
        self.unused = nn.Linear(100, 100)  # never runs: not counted
        self.twice = nn.Linear(2, 2)  # runs twice: MACs twice, parameters once
        self.seq[0].requires_grad_(False)

    def forward(self, x):
        y = self.up(self.bn(self.conv(x)))  # (1, 4, 8, 8)
        y = y.flatten(2).transpose(1, 2) + self.tok.weight[0]
        y = self.seq(y)
        return self.twice(self.twice(y)) + self.table.sum()


def test_counter_follows_thop_convention():
    m = _Toy()
    x = torch.zeros(1, 3, 4, 4)
    c = thop_counts(m, (x,))
    params = (3 * 8 * 9 + 8) + 16 + (8 * 4 * 4 + 4) + (4 * 16 + 16) + 32 + 32 + (2 * 2 + 2)
    assert c["params"] == params
    assert c["params_tunable"] == params - (4 * 16 + 16)
    macs = (8 * 16 * 27) + 4 * (8 * 16) + (4 * 64 * 8 * 4) + (64 * 16 * 4) + 4 * (64 * 16) + (64 * 2 * 16) + 2 * (64 * 2 * 2)
    assert c["macs"] == macs
    assert torch_counts(m)["params_torch"] == sum(p.numel() for p in m.parameters())
    try:
        import thop  # noqa: F401  (test extra)
        from thop import profile
    except Exception:  # pragma: no cover - thop absent or broken on this Python
        return
    t_macs, t_params = profile(m, (x,), verbose=False)
    assert int(t_params) == c["params"] and int(t_macs) == c["macs"]

"""U-SAM training: the authors' recipe (three learning-rate groups, poly decay, 0.4 CE + 0.6 Dice, clipping),
checkpoint/resume, the SAM-checkpoint option, and end to end on phantom CT: `procto train usam` on CPU, then
`procto predict usam --evaluate` on held-out phantom cases (Tables 2/4 layout) and volume inference with prompts."""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from procto.cli import app
from procto.errors import InputError
from procto.infer.usam import load_model
from procto.train.usam import (
    USamLoss,
    USamTrainConfig,
    poly_factor,
    train_usam,
    usam_param_groups,
)

TINY = {"encoder_depth": 1, "encoder_embed_dim": 64, "cnn_channels": [8, 8, 16, 16]}
runner = CliRunner()


def _synthetic_care(root, n=12, size=32, seed=0):
    """A small CARE folder: a bright ring (class 1) with a brighter blob on it (class 2) per slice."""
    (root / "train_npz").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = rng.uniform(10, size - 10, 2)
        d = np.hypot(yy - cy, xx - cx)
        lab = (d < 7).astype(np.uint8)
        lab[(d < 7) & (yy < cy - 2)] = 2
        img = rng.normal(0.1, 0.02, (size, size)) + 0.4 * (lab == 1) + 0.6 * (lab == 2)
        np.savez(root / "train_npz" / f"c{i // 4}_{i % 4:03d}.npz", image=img, label=lab)
    return root


# --------------------------------------------------------------------------------------------------- recipe
def test_param_groups_follow_the_authors_grouping():
    from procto.nets import create_model

    model = create_model("usam_b", img_size=32, **TINY)
    groups = {g["name"]: g for g in usam_param_groups(model, 1e-3, 2e-4, 3e-4, 1e-4)}
    assert [groups[k]["lr"] for k in ("decoder", "vit", "backbone")] == [1e-3, 2e-4, 3e-4]
    assert all(g["weight_decay"] == 1e-4 for g in groups.values())
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("image_encoder.") for p in groups["vit"]["params"])
    assert all(names[id(p)].startswith("down_path.") for p in groups["backbone"]["params"])
    dec = {names[id(p)].split(".")[0] for p in groups["decoder"]["params"]}
    assert dec == {"mask_decoder", "prompt_encoder"}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(trainable) and len(set(ids)) == len(ids)
    assert not any("patch_embed" in names[i] for i in ids)  # U-SAM's unused patch embedding stays frozen
    # SAM baseline: no CNN adapter; LoRA: only the adapters of the ViT train
    sam = create_model("sam_b", img_size=32, encoder_depth=1, encoder_embed_dim=64)
    assert not usam_param_groups(sam)[2]["params"]
    lora = create_model("usam_b_lora", img_size=32, **TINY)
    vit = usam_param_groups(lora)[1]["params"]
    lnames = {id(p): n for n, p in lora.named_parameters()}
    assert vit and all(".lora_" in lnames[id(p)] for p in vit)


def test_poly_decay():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100) == pytest.approx(0.5**0.9)
    assert poly_factor(100, 100) == 0.0
    # warm-up: linear for w iterations, then the authors' shifted poly
    assert poly_factor(0, 100, warmup_iterations=10) == 0.0
    assert poly_factor(5, 100, warmup_iterations=10) == pytest.approx(0.5)
    assert poly_factor(50, 100, warmup_iterations=10) == pytest.approx(0.6**0.9)


def test_loss_is_0_4_ce_plus_0_6_dice():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    out = USamLoss()(logits, target)
    prob = torch.softmax(logits, 1)
    dice_terms = []
    for c in range(3):
        t = (target == c).float()
        p = prob[:, c]
        dice_terms.append(1 - (2 * (p * t).sum() + 1e-5) / ((p * p).sum() + (t * t).sum() + 1e-5))
    expected_dice = torch.stack(dice_terms).mean()
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert out["loss_dice"].item() == pytest.approx(expected_dice.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.4 * ce.item() + 0.6 * expected_dice.item(), rel=1e-5)
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert USamLoss()(perfect, target)["loss"].item() < 1e-3


class HandWrittenUSamLoss(torch.nn.Module):
    """The loss as procto wrote it before using MONAI (the authors' definition), kept as the reference."""

    def __init__(self, num_classes: int = 3, ce_weight: float = 0.4, dice_weight: float = 0.6, smooth: float = 1e-5):
        super().__init__()
        self.num_classes, self.ce_weight, self.dice_weight, self.smooth = num_classes, ce_weight, dice_weight, smooth

    def dice_loss(self, logits, target):
        prob = torch.softmax(logits.float(), dim=1)
        onehot = torch.nn.functional.one_hot(target.long(), self.num_classes).permute(0, 3, 1, 2).float()
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        den = (prob * prob).sum(dims) + (onehot * onehot).sum(dims)
        return (1.0 - (2 * inter + self.smooth) / (den + self.smooth)).mean()

    def forward(self, logits, target):
        ce = torch.nn.functional.cross_entropy(logits.float(), target.long())
        dl = self.dice_loss(logits, target)
        return {"loss": self.ce_weight * ce + self.dice_weight * dl, "loss_ce": ce, "loss_dice": dl}


@pytest.mark.parametrize("shape,classes,weights", [((2, 3, 8, 8), 3, (0.4, 0.6)), ((4, 3, 16, 12), 3, (0.4, 0.6)),
                                                    ((3, 2, 8, 8), 2, (1.0, 1.0)), ((1, 4, 5, 7), 4, (0.3, 0.9))])
def test_monai_dice_ce_equals_the_hand_written_loss(shape, classes, weights):
    """USamLoss is MONAI's DiceCELoss (softmax, one-hot target, squared prediction, batch Dice, background included,
    smoothing 1e-5): value and gradient equal the hand-written definition, also when a class is absent from the
    target and for perfect predictions."""
    from monai.losses import DiceCELoss

    torch.manual_seed(sum(shape))
    target = torch.randint(0, classes, (shape[0], *shape[2:]))
    target[target == classes - 1] = 0  # one class absent
    for logits in (torch.randn(shape) * 3,
                   torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float() * 30):
        ours_in = logits.clone().requires_grad_(True)
        ref_in = logits.clone().requires_grad_(True)
        ours = USamLoss(classes, *weights)(ours_in, target)
        ref = HandWrittenUSamLoss(classes, *weights)(ref_in, target)
        for key in ("loss", "loss_ce", "loss_dice"):
            torch.testing.assert_close(ours[key], ref[key], rtol=1e-5, atol=1e-7, msg=key)
        ours["loss"].backward()
        ref["loss"].backward()
        torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-4, atol=1e-8)
        monai = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True, batch=True,
                           smooth_nr=1e-5, smooth_dr=1e-5, lambda_ce=weights[0], lambda_dice=weights[1])
        torch.testing.assert_close(monai(logits, target[:, None]), ref["loss"].detach(), rtol=1e-5, atol=1e-7)


def test_training_log_checkpoints_and_resume(tmp_path):
    data = _synthetic_care(tmp_path / "data")
    common = dict(img_size=32, model_kwargs=TINY, batch_size=4, epochs=2, prompt="mixed", threads=1, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        straight = train_usam(data, tmp_path / "a", USamTrainConfig(**common))
        assert torch.get_num_threads() == 2  # threads=1 held for that run only
    finally:
        torch.set_num_threads(threads)
    assert straight.iterations == 6 and straight.epochs == 2
    for name in ("model.pt", "last.pt", "log.csv", "config.json"):
        assert (tmp_path / "a" / name).is_file()
    with open(tmp_path / "a" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    lr = [float(r["lr"]) for r in rows]
    # poly decay, applied before each step: after 3 of 6 iterations the last rate was (1 - 2/6)^0.9
    assert lr[0] == pytest.approx(1e-3 * (1 - 2 / 6) ** 0.9, rel=1e-4)
    assert float(rows[0]["lr_vit"]) == pytest.approx(1e-4 * (1 - 2 / 6) ** 0.9, rel=1e-4)
    assert all(math.isfinite(float(r["loss"])) for r in rows)

    # interrupted after the first epoch, then resumed: the same weights as the uninterrupted run
    train_usam(data, tmp_path / "b", USamTrainConfig(**common, max_steps=3))
    resumed = train_usam(data, tmp_path / "b", USamTrainConfig(**common), resume=True)
    assert resumed.iterations == 6
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    model, info = load_model(tmp_path / "b" / "model.pt")
    assert info["variant"] == "usam_b" and info["prompt"] == "mixed" and model.img_size == 32
    assert not model.training
    with pytest.raises(InputError, match="nothing to resume"):
        train_usam(data, tmp_path / "c", USamTrainConfig(**common), resume=True)
    with pytest.raises(InputError, match="not a readable model checkpoint"):
        load_model(tmp_path / "a" / "log.csv")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a procto U-SAM checkpoint"):
        load_model(tmp_path / "other.pt")

    # procto's one checkpoint format: plain types and tensors; the prompt settings come from the record (or from
    # explicit arguments), not from attributes on the model
    from procto.infer.usam import USamPredictor

    record = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert record["task"] == "usam" and record["model"] == "usam_b" and record["config"]["prompt"] == "mixed"
    assert record["extra"]["data"]["window"] == [-125.0, 275.0] and "training" in torch.load(
        tmp_path / "b" / "last.pt", weights_only=True)
    assert not hasattr(model, "procto_prompt_info")
    assert USamPredictor(tmp_path / "b" / "model.pt").point_label_mode == "positive"
    assert USamPredictor(tmp_path / "b" / "model.pt", point_labels="class").point_label_mode == "class"
    record["config"]["point_labels"], record["config"]["box_mode"] = "class", "class"
    torch.save(record, tmp_path / "b" / "class_points.pt")  # the same weights, recorded as trained with class labels
    from_record = USamPredictor(tmp_path / "b" / "class_points.pt")
    assert (from_record.point_label_mode, from_record.box_mode) == ("class", "class")


def test_sam_checkpoint_option(tmp_path):
    from procto.nets import create_model

    data = _synthetic_care(tmp_path / "data", n=4)
    torch.manual_seed(11)
    kwargs = {"img_size": 32, "encoder_depth": 1, "encoder_embed_dim": 64}
    source = create_model("sam_b", num_classes=2, **kwargs)  # SAM's own 2-token decoder, like the official files
    ckpt = tmp_path / "sam_tiny.pth"
    sd = {k: v for k, v in source.state_dict().items() if not k.startswith("norm_")}
    torch.save(sd, ckpt)
    messages = []
    cfg = USamTrainConfig(variant="sam_b", model_kwargs={"encoder_depth": 1, "encoder_embed_dim": 64}, img_size=32,
                          epochs=1, batch_size=4, lr=0.0, lr_vit=0.0, lr_backbone=0.0, threads=1,
                          sam_checkpoint=str(ckpt))
    result = train_usam(data, tmp_path / "run", cfg, log=messages.append)
    assert any(m.startswith("SAM checkpoint") for m in messages)
    trained = torch.load(result.model_path, weights_only=False)["state_dict"]
    for k in ("image_encoder.blocks.0.attn.qkv.weight", "image_encoder.neck.0.weight",
              "prompt_encoder.point_embeddings.1.weight"):
        torch.testing.assert_close(trained[k], sd[k])
    bad = tmp_path / "bad.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 3, 3, 7)}, bad)
    with pytest.raises(InputError):
        train_usam(data, tmp_path / "run2", USamTrainConfig(**{**cfg.__dict__, "sam_checkpoint": str(bad)}))


def test_cli_errors(tmp_path):
    res = runner.invoke(app, ["train", "usam", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "CARE folder not found" in res.output
    res = runner.invoke(app, ["predict", "usam", "--model", str(tmp_path / "none.pt"), "--evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "checkpoint not found" in res.output
    res = runner.invoke(app, ["predict", "usam", "--model", str(tmp_path / "none.pt"), "-i", str(tmp_path / "x.nii")])
    assert res.exit_code == 2 and "--evaluate" in res.output
    help_text = runner.invoke(app, ["train", "usam", "--help"]).output
    assert "--sam-checkpoint" in help_text and "--prompt" in help_text
    assert "--evaluate" in runner.invoke(app, ["predict", "usam", "--help"]).output


# --------------------------------------------------------------------------------------------------- end to end
#: Phantom CT with a pelvic field of view (150 mm over 96 px = 1.56 mm pixels): the rectum is about as many pixels
#: wide as in the real CARE slices (whole-body FOV at 224 px), at a fifth of the pixels — what a CPU can train in the
#: time of a test.  The model: U-SAM with a 2-block, 192-wide ViT, CNN widths 16/32/64/128, 96 × 96 input.
PHANTOM = {"shape": (32, 96, 96), "fov_mm": 150}
E2E_MODEL = ["--img-size", "96", "--encoder-depth", "2", "--encoder-embed-dim", "192", "--cnn-channels",
             "16,32,64,128"]


@pytest.fixture(scope="module")
def phantom_care(tmp_path_factory):
    from procto.phantom import make_case
    from procto.preprocess.care import volumes_to_care

    root = tmp_path_factory.mktemp("care")

    def cases(seeds):
        for s in seeds:
            c = make_case(s, "ct", **PHANTOM)
            yield c.case_id, c.image, c.label

    volumes_to_care(root, "train", cases(range(12)))
    volumes_to_care(root, "test", cases(range(1000, 1004)))  # held-out patients
    return root


@pytest.mark.slow
def test_end_to_end_phantom_ct(phantom_care, tmp_path):
    t0 = time.perf_counter()
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "usam", "--data", str(phantom_care), "--out", str(out), "--variant", "usam_b",
                              "--epochs", "5", "--batch-size", "8", "--prompt", "mixed", "--point-labels", "class",
                              "--lr-vit", "1e-3", "--lr-backbone", "1e-3", "--threads", "1", *E2E_MODEL])
    assert res.exit_code == 0, res.output
    t_train = time.perf_counter() - t0
    table = tmp_path / "table.csv"
    res = runner.invoke(app, ["predict", "usam", "--model", str(out / "model.pt"), "--evaluate", str(phantom_care),
                              "--prompts", "none,points3,boxes", "--csv", str(table)])
    assert res.exit_code == 0, res.output
    assert "3 points/class" in res.output and "Tumour" in res.output
    with open(table, newline="") as f:
        rows = {r["setting"]: r for r in csv.DictReader(f)}
    mean = {s: float(r["mean_dice"]) for s, r in rows.items()}
    print(f"\nU-SAM phantom CT e2e: train {t_train:.0f} s, mean Dice {mean}, "
          f"normal/tumour (3 points) {rows['points3']['normal_dice']}/{rows['points3']['tumour_dice']}")
    assert mean["points3"] >= 0.80
    # box prompts do at least as well as no prompt (this small model reads little from the rectum box, whose
    # location the phantom's anatomy already gives away; 0.002 allows for the numerical noise of that)
    assert mean["boxes"] >= mean["none"] - 0.002
    with open(tmp_path / "table_per_case.csv", newline="") as f:
        per_case = list(csv.DictReader(f))
    assert {r["case"] for r in per_case} == {f"phantom_ct_{s}" for s in range(1000, 1004)}

    # volume inference with user prompts in original-slice pixels, written in the input geometry
    from procto.io import read_image, write_image
    from procto.metrics import dice
    from procto.phantom import make_case
    from procto.preprocess.prompts import prompts_from_label, prompts_to_json

    case = make_case(1000, "ct", **PHANTOM)
    write_image(case.image, tmp_path / "ct.nii.gz")
    prompts = prompts_from_label(case.label.array, "points", 3, seed=5)
    (tmp_path / "points.json").write_text(json.dumps(prompts_to_json(prompts)))
    res = runner.invoke(app, ["predict", "usam", "--model", str(out / "model.pt"), "-i", str(tmp_path / "ct.nii.gz"),
                              "-o", str(tmp_path / "seg.nii.gz"), "--points", str(tmp_path / "points.json")])
    assert res.exit_code == 0, res.output
    seg = read_image(tmp_path / "seg.nii.gz")
    assert seg.shape == case.image.shape and seg.same_geometry(case.image)
    zs = sorted(prompts)
    ref = case.label.array[zs]
    assert dice(seg.array[zs] > 0, ref > 0) > 0.8
    assert not seg.array[[z for z in range(seg.shape[0]) if z not in prompts]].any()  # only prompted slices
    print(f"e2e wall time {time.perf_counter() - t0:.0f} s")

"""CoSAM's 2.5D sequence detector (procto.nets.cosam_detector): outputs in training and evaluation, window checks, the
RPN's neighbour-fused centre-slice features, the sequence head over all L slices, torchvision's post-processing,
learning on a synthetic square, determinism, no weights downloaded."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.roi_heads import RoIHeads

from procto.errors import InputError
from procto.nets.cosam_detector import (SequenceDetector, SequenceRoIHeads, build_cosam_detector, check_window,
                                        fusion_range)

SIZE = 96
LOSS_KEYS = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
BOX = [30.0, 40.0, 50.0, 60.0]  # x1, y1, x2, y2 of the bright square


def _small(window: int, seed: int = 0, **kwargs) -> SequenceDetector:
    torch.manual_seed(seed)
    return build_cosam_detector(window=window, small=True, **{"min_size": SIZE, "max_size": SIZE, **kwargs})


def _square_windows(batch: int, window: int, size: int = SIZE) -> torch.Tensor:
    x = torch.full((batch, window, size, size), 0.2)
    x[:, :, 40:60, 30:50] = 0.9
    return x


def _targets(n: int) -> list[dict]:
    return [{"boxes": torch.tensor([BOX]), "labels": torch.tensor([1])} for _ in range(n)]


@pytest.fixture(scope="module")
def det9() -> SequenceDetector:
    return _small(9, seed=1).eval()


@pytest.fixture(scope="module")
def windows9() -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.rand(1, 9, SIZE, SIZE, generator=g)


# ------------------------------------------------------------------------------------------------------ outputs
def test_training_returns_the_four_losses_and_the_sampled_proposals_in_input_pixels():
    # input 96 px, resized to 120 inside: sampled boxes must come back at 96-px coordinates
    det = _small(5, min_size=120, max_size=120).train()
    windows = _square_windows(2, 5)
    targets = _targets(1) + [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}]  # N0
    losses, sampled = det(windows, targets)
    assert set(losses) == LOSS_KEYS
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert len(sampled) == 2
    for s in sampled:
        n = len(s["boxes"])
        assert s["boxes"].shape == (n, 4) and s["features"].shape == (n, det.d_model) and s["labels"].shape == (n,)
        assert s["features"].requires_grad and set(s["labels"].unique().tolist()) <= {0, 1}
        assert n <= 512  # torchvision's 512 RoIs per image
    # the reference box joins the proposals (torchvision adds the targets) and is a positive, in input pixels
    pos = sampled[0]["boxes"][sampled[0]["labels"] == 1]
    assert len(pos) >= 1
    assert torch.isclose(pos, torch.tensor(BOX), atol=1e-3).all(dim=1).any()
    assert int(sampled[1]["labels"].sum()) == 0  # a window without nodes has only negatives
    sum(losses.values()).backward()
    assert det.roi_heads.box_head.query.grad is not None


def test_eval_returns_boxes_scores_labels_features_in_input_pixels():
    det = _small(5, min_size=128, max_size=128).eval()
    windows = torch.rand(2, 5, SIZE, SIZE)
    with torch.no_grad():
        out = det(windows)
    assert len(out) == 2
    for o in out:
        assert set(o) == {"boxes", "scores", "labels", "features"}
        k = len(o["boxes"])
        assert 0 < k <= 100
        assert o["boxes"].shape == (k, 4) and o["scores"].shape == (k,) and o["labels"].shape == (k,)
        assert o["features"].shape == (k, det.d_model)
        assert (o["boxes"] >= 0).all() and (o["boxes"][:, 2:] <= SIZE + 1e-4).all()
        assert (o["boxes"][:, 2:] > o["boxes"][:, :2]).all()
        assert (o["scores"] > 0.05).all() and (o["scores"][:-1] >= o["scores"][1:]).all()
        assert (o["labels"] == 1).all()


def test_chunked_evaluation_equals_one_pass():
    det = _small(5, seed=4).eval()
    windows = torch.rand(2, 5, SIZE, SIZE)
    outs = []
    for chunk in (None, 7):  # 7 proposals at a time, window by window
        det.roi_heads.eval_chunk = chunk
        with torch.no_grad():
            outs.append(det(windows))
    for a, b in zip(*outs):
        assert len(a["boxes"]) == len(b["boxes"]) > 0
        for key in ("boxes", "scores", "features"):
            assert torch.allclose(a[key], b[key], atol=1e-4), key


def test_no_detection_above_the_threshold_gives_empty_outputs():
    det = _small(5, box_score_thresh=1.0).eval()
    with torch.no_grad():
        o = det(torch.rand(1, 5, SIZE, SIZE))[0]
    assert o["boxes"].shape == (0, 4) and o["features"].shape == (0, det.d_model)


def test_postprocess_is_torchvisions_and_keeps_each_boxs_proposal_feature():
    torch.manual_seed(3)
    heads = _small(5, num_classes=3).roi_heads
    ref = RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 100)
    proposals = [torch.rand(40, 2) * 50, torch.rand(30, 2) * 50]
    proposals = [torch.cat([p, p + 5 + torch.rand(len(p), 2) * 30], dim=1) for p in proposals]
    logits, deltas = torch.randn(70, 3) * 2, torch.randn(70, 12) * 0.1
    feats = torch.arange(70, dtype=torch.float32)[:, None]  # a proposal's feature = its index
    shapes = [(64, 64), (64, 64)]
    got = heads.postprocess_sequences(logits, deltas, proposals, shapes, feats)
    boxes, scores, labels = ref.postprocess_detections(logits, deltas, proposals, shapes)
    flat = torch.cat(proposals)
    for g, b, s, lab in zip(got, boxes, scores, labels):
        assert torch.equal(g["boxes"], b) and torch.equal(g["scores"], s) and torch.equal(g["labels"], lab)
        for box, label, f in zip(g["boxes"], g["labels"], g["features"][:, 0].long()):
            decoded = ref.box_coder.decode(deltas[f][None], [flat[f][None]])[0, label]
            clipped = torchvision.ops.clip_boxes_to_image(decoded[None], (64, 64))[0]
            assert torch.allclose(clipped, box)


# ------------------------------------------------------------------------------------------------------ windows
@pytest.mark.parametrize("window", [3, 4, 6, 16, 17, 0, -9, 2.5])
def test_bad_window_sizes_are_refused(window):
    with pytest.raises(InputError, match="odd number of slices from 5 to 15"):
        check_window(window)
    with pytest.raises(ValueError):
        build_cosam_detector(window=window, small=True)


def test_valid_windows_and_the_fusion_range():
    assert [w for w in range(0, 20) if _ok(w)] == [5, 7, 9, 11, 13, 15]
    assert fusion_range(9) == (2, 7) and fusion_range(5) == (0, 5) and fusion_range(15, 5) == (5, 10)
    assert fusion_range(5, 7) == (0, 5)  # clamped to the window


def _ok(w: int) -> bool:
    try:
        check_window(w)
        return True
    except InputError:
        return False


def test_forward_checks_its_input(det9):
    with pytest.raises(InputError, match="windows of 9 slices"):
        det9(torch.rand(1, 7, SIZE, SIZE))
    with pytest.raises(InputError, match=r"\(B, L, H, W\)"):
        det9(torch.rand(9, SIZE, SIZE))
    with pytest.raises(InputError, match="floats"):
        det9(torch.zeros(1, 9, SIZE, SIZE, dtype=torch.uint8))


def test_training_checks_its_targets():
    det = _small(5).train()
    x = torch.rand(1, 5, SIZE, SIZE)
    with pytest.raises(ValueError, match="one target dict per window"):
        det(x)
    with pytest.raises(ValueError, match="x2 > x1"):
        det(x, [{"boxes": torch.tensor([[10.0, 10.0, 10.0, 20.0]]), "labels": torch.tensor([1])}])
    losses, _ = det(x, [{"boxes": torch.tensor([BOX])}])  # labels default to ones
    assert set(losses) == LOSS_KEYS


# ------------------------------------------------------------------------------------------------------ stage 1
def _rpn_input(det: SequenceDetector, windows: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    seen: dict = {}
    h1 = det.rpn.head.register_forward_pre_hook(lambda m, args: seen.__setitem__("rpn", [t.clone() for t in args[0]]))
    h2 = det.backbone.register_forward_hook(lambda m, args, out: seen.__setitem__("backbone", dict(out)))
    try:
        with torch.no_grad():
            det(windows)
    finally:
        h1.remove()
        h2.remove()
    return seen["rpn"], seen["backbone"]


def test_rpn_sees_the_centre_slice_fused_with_its_two_neighbours_each_side(det9, windows9):
    base, feats = _rpn_input(det9, windows9)
    # by hand: 0.5 · mean of slices 2…6 + 0.5 · slice 4, on every FPN level (incl. the max-pool level)
    assert len(base) == len(feats) == 5
    for got, f in zip(base, feats.values()):
        assert torch.allclose(got, 0.5 * f[2:7].mean(dim=0, keepdim=True) + 0.5 * f[4:5], atol=1e-5)
    for j in range(9):
        changed = windows9.clone()
        changed[0, j] = torch.rand(SIZE, SIZE)
        rpn, _ = _rpn_input(det9, changed)
        same = all(torch.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(base, rpn))
        assert same == (abs(j - 4) > 2), f"slice {j}"


# ------------------------------------------------------------------------------------------------------ stage 2
def test_sequence_features_depend_on_every_slice(det9, windows9):
    box = [torch.tensor([[20.0, 20.0, 60.0, 70.0]])]
    with torch.no_grad():
        base = det9.sequence_features(windows9, box)[0]
        assert base.shape == (1, det9.d_model)
        for j in range(9):
            changed = windows9.clone()
            changed[0, j] = torch.rand(SIZE, SIZE)
            assert not torch.allclose(det9.sequence_features(changed, box)[0], base, atol=1e-4), f"slice {j}"


def test_slice_zero_changes_f_det_but_not_the_proposals(det9, windows9):
    seen: list = []

    def grab_proposals(module, args):
        seen.append([p.clone() for p in args[1]])

    def grab_tokens(module, args, out):
        seen.append((args[0].shape, out.clone()))

    h1 = det9.roi_heads.register_forward_pre_hook(grab_proposals)
    h2 = det9.roi_heads.box_head.register_forward_hook(grab_tokens)
    chunk, det9.roi_heads.eval_chunk = det9.roi_heads.eval_chunk, None  # one pass of the sequence head per forward
    changed = windows9.clone()
    changed[0, 0] = 1.0 - changed[0, 0]
    try:
        with torch.no_grad():
            det9(windows9)
            det9(changed)
    finally:
        h1.remove()
        h2.remove()
        det9.roi_heads.eval_chunk = chunk
    (p0, (shape0, f0)), (p1, (_, f1)) = (seen[0], seen[1]), (seen[2], seen[3])
    assert torch.allclose(p0[0], p1[0], atol=1e-6, rtol=0)  # slice 0 is outside the RPN's fused range
    n = len(p0[0])
    assert tuple(shape0[:3]) == (n, 9, det9.backbone.out_channels)  # each proposal pooled on all 9 slices
    assert f0.shape == (n, det9.d_model)
    assert not torch.allclose(f0, f1, atol=1e-4)


# ------------------------------------------------------------------------------------------------------ training
def test_a_few_steps_on_a_bright_square_reduce_the_loss():
    det = _small(5).train()
    windows, targets = _square_windows(1, 5), _targets(1)
    opt = torch.optim.Adam([p for p in det.parameters() if p.requires_grad], lr=1e-4)
    history = []
    for _ in range(8):
        losses, _ = det(windows, targets)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()} | {"total": float(loss.detach())})
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    assert history[-1]["loss_objectness"] < history[0]["loss_objectness"]


def test_deterministic_under_manual_seed():
    windows, targets = _square_windows(1, 5), _targets(1)
    runs = []
    for _ in range(2):
        det = _small(5, seed=7).train()
        torch.manual_seed(11)
        losses, sampled = det(windows, targets)
        det.eval()
        with torch.no_grad():
            out = det(windows)[0]
        runs.append((losses, sampled[0], out))
    (l0, s0, o0), (l1, s1, o1) = runs
    assert all(torch.equal(l0[k], l1[k]) for k in LOSS_KEYS)
    assert torch.equal(s0["boxes"], s1["boxes"]) and torch.equal(s0["labels"], s1["labels"])
    assert torch.equal(o0["boxes"], o1["boxes"]) and torch.equal(o0["scores"], o1["scores"])


# ------------------------------------------------------------------------------------------------------ building
def test_default_detector_is_resnet50_fpn_built_without_downloading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a weight download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    det = build_cosam_detector()
    assert det.window == 9 and det.d_model == 256
    assert isinstance(det.roi_heads, SequenceRoIHeads)
    # torchvision's ResNet-50-FPN, every layer trainable, BatchNorm (no frozen statistics without weights)
    ref = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5,
                              norm_layer=torch.nn.BatchNorm2d)
    assert [n for n, _ in det.backbone.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert all(p.requires_grad for p in det.parameters())
    head = det.roi_heads.box_head
    assert len(head.encoder.layers) == 2 and len(head.decoder.layers) == 1
    assert head.encoder.layers[0].self_attn.num_heads == 8 and head.pos_embed.shape == (1, 9, 256)
    assert det.roi_heads.box_predictor.cls_score.out_features == 2
    assert det.roi_heads.box_predictor.bbox_pred.out_features == 8
    assert det.roi_heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert (det.roi_heads.score_thresh, det.roi_heads.nms_thresh, det.roi_heads.detections_per_img) == (0.05, 0.5, 100)
    assert det.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert det.transform.min_size == (800,) and det.transform.max_size == 1333
    assert det.transform.image_mean == [0.485, 0.456, 0.406]


def test_small_preset_and_overrides():
    det = build_cosam_detector(window=7, small=True, d_model=64, encoder_layers=1, heads=2)
    assert det.backbone.out_channels == 64 and det.d_model == 64 and det.window == 7
    assert det.transform.min_size == (224,) and det.transform.max_size == 224
    assert len(det.roi_heads.box_head.encoder.layers) == 1
    assert len(list(det.backbone.body.layer1.children())) == 2  # ResNet-18: 2 basic blocks per stage
    det = build_cosam_detector(window=5, small=True, box_detections_per_img=3, min_size=SIZE, max_size=SIZE).eval()
    with torch.no_grad():
        assert len(det(torch.rand(1, 5, SIZE, SIZE))[0]["boxes"]) <= 3
    with pytest.raises(TypeError, match="unknown detector arguments"):
        build_cosam_detector(window=5, small=True, box_head=None)


def test_registered_as_cosam_detector():
    from procto.nets import create_model

    torch.manual_seed(0)
    det = create_model("cosam_detector", window=5, small=True)
    assert isinstance(det, SequenceDetector) and det.window == 5

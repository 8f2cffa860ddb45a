"""U-SAM / SAM baseline: architecture facts, forward with and without prompts, LoRA, SAM checkpoint loading."""

from __future__ import annotations

import math

import pytest
import torch

from procto.nets import create_model, list_models
from procto.nets.sam_checkpoint import load_sam_checkpoint, resize_pos_embed, resize_rel_pos
from procto.nets.usam import USam
from procto.nets.usam_blocks import LoRAQKV

B = 2
SIZE = 224


@pytest.fixture(scope="module")
def usam() -> USam:
    torch.manual_seed(0)
    return create_model("usam_b").eval()


@pytest.fixture(scope="module")
def sam_b():
    torch.manual_seed(1)
    return create_model("sam_b").eval()


@pytest.fixture(scope="module")
def usam_lora():
    torch.manual_seed(2)
    return create_model("usam_b_lora")


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(B, 3, SIZE, SIZE, generator=g)


@pytest.fixture(scope="module")
def sam1024_checkpoint(tmp_path_factory):
    """A SAM ViT-B checkpoint as the official file is laid out (1024 input), built locally with random weights."""
    from segment_anything import sam_model_registry

    torch.manual_seed(4)
    sam = sam_model_registry["vit_b"](checkpoint=None)
    sd = sam.state_dict()
    for k, v in sd.items():  # SAM zero-initialises its position tables: give them values worth resizing
        if k.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")) or k == "mask_decoder.mask_tokens.weight":
            v.copy_(torch.randn_like(v))
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(sd, path)
    del sam
    return path, sd


# ------------------------------------------------------------------------------------------------ registry / facts
def test_registered_names():
    names = set(list_models("*sam*"))
    assert {"sam_b", "usam_b", "usam_b_lora", "sam_b_lora", "usam_l", "usam_h"} <= names


def test_usam_architecture_follows_spec(usam):
    enc = usam.image_encoder
    assert tuple(enc.pos_embed.shape) == (1, 14, 14, 768)
    for blk in enc.blocks:
        assert tuple(blk.attn.rel_pos_h.shape) == (27, 64) and tuple(blk.attn.rel_pos_w.shape) == (27, 64)
    assert usam.down_path.channels == (32, 64, 128, 256, 768)
    dec = usam.mask_decoder
    assert dec.num_mask_tokens == 32 and len(dec.output_hypernetworks_mlps) == 32
    assert not hasattr(dec, "output_upscaling")
    assert dec.head.out.out_channels == 3 and dec.head.out.bias is None
    assert (dec.up4.up.in_channels, dec.up4.convs[0].conv.in_channels, dec.up4.convs[0].conv.out_channels) == (256, 512, 128)
    assert (dec.up1.up.in_channels, dec.up1.convs[0].conv.in_channels, dec.up1.convs[0].conv.out_channels) == (32, 64, 32)
    # the patch embedding exists (checkpoint keys) but never runs: f4 replaces it
    assert not any(p.requires_grad for p in enc.patch_embed.parameters())


def test_patch_embedding_never_runs(usam, images):
    ran = []
    h = usam.image_encoder.patch_embed.register_forward_hook(lambda *a: ran.append(1))
    with torch.no_grad():
        usam(images[:1])
    h.remove()
    assert ran == []


# ------------------------------------------------------------------------------------------------ forward
def test_forward_without_prompt(usam, images):
    with torch.no_grad():
        out = usam(images, return_aux=True)
        logits = usam(images)
    assert tuple(logits.shape) == (B, 3, SIZE, SIZE)
    assert torch.equal(out["logits"], logits)
    assert tuple(out["lowres_logits"].shape) == (B, 3, SIZE // 2, SIZE // 2)
    assert tuple(out["iou"].shape) == (B, 32)
    assert tuple(out["mask_tokens"].shape) == (B, 32, 256)  # CoSAM's collaborative classifier reads these
    assert torch.isfinite(logits).all()


def test_mask_tokens_depend_on_the_box_prompt(usam, images):
    with torch.no_grad():
        a = usam(images, boxes=torch.tensor([[10.0, 10.0, 60.0, 60.0]] * B), return_aux=True)["mask_tokens"]
        b = usam(images, boxes=torch.tensor([[100.0, 100.0, 200.0, 180.0]] * B), return_aux=True)["mask_tokens"]
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_forward_with_points_and_boxes(usam, images):
    pts = torch.tensor([[[60.0, 80.0], [120.0, 100.0], [30.0, 200.0]]] * B)
    labels = torch.tensor([[1, 1, 0]] * B)
    boxes = torch.tensor([[40.0, 50.0, 150.0, 170.0]] * B)
    boxes_k = torch.tensor([[[40.0, 50.0, 150.0, 170.0], [80.0, 90.0, 120.0, 130.0]]] * B)
    boxes_k[1, 1] = float("nan")  # padding: the second image has one box only
    with torch.no_grad():
        for kwargs in (
            dict(points=pts, point_labels=labels),
            dict(boxes=boxes),
            dict(boxes=boxes_k, points=(pts, labels)),
        ):
            y = usam(images, **kwargs)
            assert tuple(y.shape) == (B, 3, SIZE, SIZE), kwargs.keys()
            assert torch.isfinite(y).all()


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Clearly different (random weights: prompts move the logits by ~1 % of their scale; repeats are exact)."""
    return bool((a - b).abs().max() > 1e-3 * a.abs().mean())


def test_prompts_change_the_output(usam, images):
    x = images[:1].expand(2, -1, -1, -1)
    boxes = torch.tensor([[20.0, 20.0, 90.0, 90.0], [120.0, 110.0, 210.0, 200.0]])
    with torch.no_grad():
        by_box = usam(x, boxes=boxes)
        by_pts = usam(x, points=boxes[:, None, :2])
        again = usam(x[:1], boxes=boxes[:1])
    assert torch.allclose(again[0], by_box[0], atol=2e-6)  # same image and box: same logits
    assert _differ(by_box[0], by_box[1])  # same image, different boxes: different logits
    assert _differ(by_pts[0], by_pts[1])
    assert _differ(by_box[0], by_pts[0])


def test_bad_inputs_raise(usam):
    with pytest.raises(ValueError, match="224"):
        usam(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="boxes"):
        usam(torch.zeros(2, 3, SIZE, SIZE), boxes=torch.zeros(3, 4))


def test_one_image_with_k_prompts_equals_k_copies_in_outputs_and_gradients(usam):
    torch.manual_seed(0)
    image = torch.rand(1, 3, SIZE, SIZE)
    boxes = torch.tensor([[20.0, 20.0, 90.0, 90.0], [120.0, 110.0, 210.0, 200.0], [60.0, 40.0, 160.0, 150.0]])
    usam.eval()

    def run(images):
        usam.zero_grad()
        out = usam(images, boxes=boxes, return_aux=True)
        (out["logits"].square().mean() + out["mask_tokens"].mean()).backward()
        return out, {n: p.grad.clone() for n, p in usam.named_parameters() if p.grad is not None}

    shared, g_shared = run(image)
    copies, g_copies = run(image.expand(3, -1, -1, -1))
    usam.zero_grad()
    for key in ("logits", "mask_tokens", "iou"):
        assert torch.allclose(shared[key], copies[key], atol=1e-5), key
    assert g_shared.keys() == g_copies.keys() and any(n.startswith("down_path.") for n in g_shared)
    for name in g_shared:
        assert torch.allclose(g_shared[name], g_copies[name], rtol=1e-3, atol=1e-6), name


def test_sam_b_forward_gives_one_map_per_class(sam_b, images):
    assert sam_b.mask_decoder.num_mask_tokens == 3
    assert tuple(sam_b.image_encoder.pos_embed.shape) == (1, 14, 14, 768)
    with torch.no_grad():
        out = sam_b(images, boxes=torch.tensor([[40.0, 50.0, 150.0, 170.0]] * B), return_aux=True)
        plain = sam_b(images, points=torch.tensor([[[60.0, 80.0]]] * B))
    assert tuple(out["logits"].shape) == (B, 3, SIZE, SIZE)
    assert tuple(out["lowres_logits"].shape) == (B, 3, 56, 56)
    assert tuple(plain.shape) == (B, 3, SIZE, SIZE)


# ------------------------------------------------------------------------------------------------ LoRA
def test_lora_variant_freezes_encoder(usam_lora):
    enc = usam_lora.image_encoder
    wrapped = [m for m in enc.modules() if isinstance(m, LoRAQKV)]
    assert len(wrapped) == 12 and all(w.rank == 4 and w.targets == "qv" for w in wrapped)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert sum(p.numel() for n, p in enc.named_parameters() if p.requires_grad) == 12 * 2 * (768 * 4 + 4 * 768)
    for part in (usam_lora.down_path, usam_lora.mask_decoder, usam_lora.prompt_encoder):
        assert all(p.requires_grad for p in part.parameters())


def test_lora_variant_backward_reaches_adapters_only(usam_lora, images):
    usam_lora.train()
    usam_lora.zero_grad(set_to_none=True)
    usam_lora(images[:1], boxes=torch.tensor([[40.0, 50.0, 150.0, 170.0]])).logsumexp(1).mean().backward()
    enc = usam_lora.image_encoder
    assert enc.blocks[5].attn.qkv.lora_b_v.weight.grad.abs().sum() > 0
    assert enc.blocks[5].attn.qkv.base.weight.grad is None and enc.neck[0].weight.grad is None
    assert usam_lora.down_path.inc.conv.weight.grad.abs().sum() > 0
    assert usam_lora.mask_decoder.mask_tokens.weight.grad is not None
    assert usam_lora.prompt_encoder.point_embeddings[2].weight.grad is not None
    usam_lora.zero_grad(set_to_none=True)
    usam_lora.eval()


def test_lora_rank_option():
    m = create_model("usam_b_lora", lora_rank=8)
    assert all(w.rank == 8 for w in m.image_encoder.modules() if isinstance(w, LoRAQKV))


def test_lora_qkv_starts_as_identity_and_trains():
    base = torch.nn.Linear(16, 48)
    layer = LoRAQKV(base, rank=2)
    x = torch.randn(3, 5, 16)
    assert torch.allclose(layer(x), base(x))
    layer(x).sum().backward()
    assert layer.lora_b_q.weight.grad is not None and layer.lora_b_q.weight.grad.abs().sum() > 0
    with torch.no_grad():
        layer.lora_b_v.weight.fill_(0.1)
    y, ref = layer(x), base(x)
    assert torch.allclose(y[..., :32], ref[..., :32]) and not torch.allclose(y[..., 32:], ref[..., 32:])


# ------------------------------------------------------------------------------------------------ checkpoints
SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def _accounted(report, key: str) -> bool:
    mlp = ".".join(key.split(".")[:3])
    return key in report.loaded or key in report.resized or key in report.adapted or mlp in report.adapted \
        or key in report.new


def test_load_1024_checkpoint_into_224_usam(usam, sam1024_checkpoint):
    path, src = sam1024_checkpoint
    report = load_sam_checkpoint(usam, path)
    assert report.ok and report.missing == [] and report.mismatched == {}
    sd = usam.state_dict()
    for k in sd:
        if k.startswith(SAM_PARTS):
            assert _accounted(report, k), k
    # only procto's adapter modules are new
    assert report.new and all(k.startswith(USam.new_key_prefixes) or k.startswith("norm_") for k in report.new)
    assert any(k.startswith("down_path.") for k in report.new) and any(".up1." in k for k in report.new)
    assert sorted(report.unexpected) == sorted(k for k in src if k.startswith("mask_decoder.output_upscaling."))
    # copied tensors equal the source
    for k in ("image_encoder.blocks.0.attn.qkv.weight", "image_encoder.neck.2.weight",
              "image_encoder.patch_embed.proj.weight", "mask_decoder.transformer.layers.1.mlp.lin2.weight",
              "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "prompt_encoder.point_embeddings.2.weight",
              "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight", "image_encoder.blocks.0.attn.rel_pos_h"):
        assert torch.equal(sd[k], src[k]), k
    assert torch.equal(sd["mask_decoder.mask_tokens.weight"][:4], src["mask_decoder.mask_tokens.weight"])
    assert torch.equal(sd["mask_decoder.iou_prediction_head.layers.2.bias"][:4],
                       src["mask_decoder.iou_prediction_head.layers.2.bias"])
    # resized tables
    assert report.resized["image_encoder.pos_embed"] == ((1, 64, 64, 768), (1, 14, 14, 768))
    assert torch.allclose(sd["image_encoder.pos_embed"], resize_pos_embed(src["image_encoder.pos_embed"], (14, 14)))
    for i in (2, 5, 8, 11):
        k = f"image_encoder.blocks.{i}.attn.rel_pos_w"
        assert report.resized[k] == ((127, 64), (27, 64))
        assert torch.allclose(sd[k], resize_rel_pos(src[k], 27))
    with torch.no_grad():
        assert torch.isfinite(usam(torch.rand(1, 3, SIZE, SIZE))).all()


def test_resizing_keeps_smooth_tables_smooth():
    ramp = torch.linspace(-1, 1, 64).view(1, 1, 64, 1).expand(1, 64, 64, 8)
    small = resize_pos_embed(ramp, (14, 14))
    assert small.shape == (1, 14, 14, 8)
    assert (small[0, 0, 1:, 0] > small[0, 0, :-1, 0]).all() and small[0, :, 5, 0].std() < 1e-5
    rel = torch.linspace(0, 1, 127).view(127, 1).expand(127, 4)
    r = resize_rel_pos(rel, 27)
    assert r.shape == (27, 4) and math.isclose(float(r[13, 0]), 0.5, abs_tol=1e-6)


def test_load_into_sam_b_and_lora_models(sam_b, usam_lora, sam1024_checkpoint):
    path, src = sam1024_checkpoint
    r = load_sam_checkpoint(sam_b, src)  # in-memory state dict
    assert r.ok and r.unexpected == [] and r.new == ["norm_mean", "norm_std"]
    assert torch.equal(sam_b.state_dict()["mask_decoder.output_upscaling.0.weight"],
                       src["mask_decoder.output_upscaling.0.weight"])
    r = load_sam_checkpoint(usam_lora, path)
    assert r.ok
    sd = usam_lora.state_dict()
    assert torch.equal(sd["image_encoder.blocks.3.attn.qkv.base.weight"], src["image_encoder.blocks.3.attn.qkv.weight"])
    assert any(".lora_a_q." in k for k in r.new)
    # loading keeps the LoRA variant's encoder frozen
    assert all(".lora_" in n for n, p in usam_lora.image_encoder.named_parameters() if p.requires_grad)


def test_token_policies(sam1024_checkpoint):
    _, src = sam1024_checkpoint
    m = create_model("usam_b")
    init_tok = m.mask_decoder.mask_tokens.weight.detach().clone()
    r = load_sam_checkpoint(m, src, extra_tokens="tile")
    tok = m.mask_decoder.mask_tokens.weight
    assert torch.equal(tok[5], src["mask_decoder.mask_tokens.weight"][1])
    assert torch.equal(m.mask_decoder.output_hypernetworks_mlps[6].layers[0].weight,
                       src["mask_decoder.output_hypernetworks_mlps.2.layers.0.weight"])
    assert "tiled" in r.adapted["mask_decoder.mask_tokens.weight"]
    m2 = create_model("usam_b")
    with torch.no_grad():
        m2.mask_decoder.mask_tokens.weight.copy_(init_tok)
    load_sam_checkpoint(m2, src, extra_tokens="skip")
    assert torch.equal(m2.mask_decoder.mask_tokens.weight, init_tok)


def test_bad_checkpoints_raise(usam, sam1024_checkpoint, tmp_path):
    _, src = sam1024_checkpoint
    before = usam.image_encoder.neck[0].weight.detach().clone()
    bad = dict(src)
    bad["image_encoder.neck.0.weight"] = torch.zeros(256, 1024, 1, 1)  # a ViT-L neck
    with pytest.raises(ValueError, match="mismatched"):
        load_sam_checkpoint(usam, bad)
    assert torch.equal(usam.image_encoder.neck[0].weight, before)  # nothing written
    partial = {k: v for k, v in src.items() if not k.startswith("image_encoder.blocks.4.")}
    with pytest.raises(ValueError, match="missing"):
        load_sam_checkpoint(usam, partial)
    with pytest.raises(ValueError, match="never downloads"):
        load_sam_checkpoint(usam, "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth")
    with pytest.raises(FileNotFoundError):
        load_sam_checkpoint(usam, tmp_path / "absent.pth")

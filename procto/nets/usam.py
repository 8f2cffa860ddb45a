"""U-SAM (Zhang et al., "Segmenting rectal cancer and normal rectum in CT with U-SAM", Commun. Med. 2025) and the
fine-tuned SAM baseline of its tables, at 224×224 input, built on Meta's ``segment_anything`` modules.

Registered models (``procto.nets.create_model``):

===================  =====================================================================================
``sam_b``            SAM ViT-B fine-tuned (Table 2/5 "SAM-B"): image encoder (patch embedding), prompt encoder,
                     SAM's mask decoder with one mask token per class; the 56×56 masks are bilinearly resized to
                     224×224 and read as class logits (token i = class i: 0 background, 1 normal rectum,
                     2 tumour).  ``num_classes=2`` gives SAM's own 2-token decoder (``num_multimask_outputs=1``),
                     the construction Table 5 counted.
``sam_b_lora``       ``sam_b`` with a frozen image encoder and rank-4 LoRA on q and v (Table 5 "SAM-B+LoRA").
``usam_b``           U-SAM ViT-B: CNN down path (f0 … f4 = 32, 64, 128, 256, 768 channels); f4 replaces the
                     patch embedding as the ViT's tokens; SAM's two-way transformer decoder with 32 mask tokens;
                     UP blocks fuse f3 … f0 by skip connections; full-resolution head with one logit map per class.
``usam_b_lora``      ``usam_b`` with a frozen image encoder and rank-4 LoRA on q and v (Table 5 "U-SAM-B+LoRA").
``sam_l``/``sam_h``, ``usam_l``/``usam_h`` (and ``*_lora``): the same with ViT-L/ViT-H encoders (Table 5);
                     every builder also takes ``encoder="vit_b" | "vit_l" | "vit_h"``.
===================  =====================================================================================

Facts followed (``../shared/spec/usam.md``, the authors' code): 224 input (pos_embed 14×14, window size 14, rel-pos
tables (27, head_dim)); the CNN blocks are Conv3×3+BN+ReLU; ``transformer_dim // 8 = 32`` mask tokens with a
256→256→32 hypernetwork MLP each; ``UpBlock`` = ConvTranspose2d(k2, s2) then concat skip then 2 × Conv3×3+BN+ReLU;
head Conv3×3+BN+ReLU+Conv1×1 (no bias), low-resolution head the same at H/2 (with bias); input normalisation with
the CARE statistics (mean 0.1364736, std 0.23238614 on min–max normalised slices); the unused ``PatchEmbed`` of the
authors' U-SAM encoder is kept (so SAM checkpoints load key for key; it is frozen since it never runs).

Prompts (optional, per image, in pixel coordinates of the 224×224 input, SAM's (x, y) order):

* ``points``: ``(B, N, 2)`` coordinates with ``point_labels`` ``(B, N)`` (1 foreground, 0 background, -1 padding;
  default all 1), or a ``(coords, labels)`` tuple;
* ``boxes``: ``(B, 4)`` or ``(B, K, 4)`` as ``[x1, y1, x2, y2]``; a box with a NaN is padding (both corners become
  SAM's "not a point" embedding).

``forward`` returns logits ``(B, num_classes, 224, 224)``; with ``return_aux=True`` a dict with ``logits``,
``lowres_logits`` (the H/2 head for U-SAM, the 56×56 masks for SAM), ``iou`` (the IoU head's output) and
``mask_tokens`` (the two-way transformer's mask-token outputs ``(B, T, 256)``: CoSAM's collaborative classifier reads
their mean).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

from procto.nets.registry import register_model
from procto.nets.usam_blocks import DownPath, SegHead, UpBlock, apply_lora

#: SAM's ViT encoders (segment_anything/build_sam.py).
ENCODERS: dict[str, dict] = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
PROMPT_EMBED_DIM = 256
PATCH_SIZE = 16
WINDOW_SIZE = 14
IMG_SIZE = 224
#: Intensity statistics the authors normalise CARE slices with (min–max normalised CT, 3 identical channels).
CARE_PIXEL_MEAN = (0.1364736, 0.1364736, 0.1364736)
CARE_PIXEL_STD = (0.23238614, 0.23238614, 0.23238614)


# ----------------------------------------------------------------------------------------------------------- modules
class TokenImageEncoderViT(ImageEncoderViT):
    """SAM's ``ImageEncoderViT`` fed with a CNN feature map instead of its patch embedding (U-SAM).

    ``forward(f4)`` takes ``(B, embed_dim, H/16, W/16)`` features, adds ``pos_embed`` (resized on the fly if the grid
    differs), runs the blocks and the neck.  ``patch_embed`` exists (checkpoint compatibility) but never runs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = self.neck[0].in_channels
        if x.dim() != 4 or x.shape[1] != width:
            raise ValueError(f"expected (B, {width}, h, w) token features, got {tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)
        if self.pos_embed is not None:
            pos = self.pos_embed
            if pos.shape[1:3] != x.shape[1:3]:
                pos = F.interpolate(pos.permute(0, 3, 1, 2), size=x.shape[1:3], mode="bicubic",
                                    align_corners=False).permute(0, 2, 3, 1)
            x = x + pos
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


class SamMaskDecoder(MaskDecoder):
    """SAM's ``MaskDecoder`` for a batch of images, each with its own prompt set.

    Same modules and keys as SAM's; ``forward`` returns *all* ``num_mask_tokens`` masks ``(B, T, 4h, 4w)`` and IoU
    predictions ``(B, T)`` (no multimask slicing: procto reads token i as class i).
    """

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):  # type: ignore[override]
        b = image_embeddings.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_out), mask_tokens_out


class USamMaskDecoder(MaskDecoder):
    """U-SAM's mask decoder: SAM's two-way transformer, ``num_mask_tokens`` mask tokens with hypernetwork MLPs, and
    UP blocks fusing the CNN skip features instead of SAM's ``output_upscaling``.

    ``src`` (256 × H/16) → up4 (+f3) → 128 × H/8 → up3 (+f2) → 64 × H/4 → up2 (+f1) → 32 × H/2; the hypernetwork MLPs
    of the mask tokens multiply these features into ``num_mask_tokens`` maps at H/2 (→ ``lowres_head``); up1 (+f0)
    → 32 × H → ``head`` → ``num_classes`` logits.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_classes: int = 3,
        num_mask_tokens: int | None = None,
        skip_channels: Sequence[int] = (32, 64, 128, 256),
        n_conv: int = 2,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        num_mask_tokens = transformer_dim // 8 if num_mask_tokens is None else int(num_mask_tokens)
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_mask_tokens - 1,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        del self.output_upscaling  # replaced by the UP blocks
        s0, s1, s2, s3 = (int(c) for c in skip_channels)
        c = transformer_dim
        self.num_classes = int(num_classes)
        self.up4 = UpBlock(c, s3, c // 2, n_conv)
        self.up3 = UpBlock(c // 2, s2, c // 4, n_conv)
        self.up2 = UpBlock(c // 4, s1, c // 8, n_conv)
        self.up1 = UpBlock(num_mask_tokens, s0, c // 8, n_conv)
        self.head = SegHead(c // 8, num_classes, bias=False)
        self.lowres_head = SegHead(num_mask_tokens, num_classes, bias=True)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,  # type: ignore[override]
                skips: Sequence[torch.Tensor]):
        f0, f1, f2, f3 = skips
        b = image_embeddings.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse_prompt_embeddings], dim=1)
        src = image_embeddings + dense_prompt_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        x = self.up4(src.transpose(1, 2).reshape(b, c, h, w), f3)
        x = self.up3(x, f2)
        x = self.up2(x, f1)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = x.shape
        maps = (hyper_in @ x.reshape(b, c, h * w)).reshape(b, -1, h, w)
        logits = self.head(self.up1(maps, f0))
        lowres = self.lowres_head(maps)
        return logits, lowres, self.iou_prediction_head(iou_out), mask_tokens_out


class _PromptableSegmenter(nn.Module):
    """Input normalisation and prompt embedding shared by :class:`SamSegmenter` and :class:`USam`."""

    image_encoder: nn.Module
    prompt_encoder: PromptEncoder
    #: State-dict key prefixes of modules SAM checkpoints do not have (reported as "new" by the checkpoint loader).
    new_key_prefixes: tuple[str, ...] = ()

    def _init_common(self, img_size: int, in_channels: int, num_classes: int, pixel_mean, pixel_std,
                     train_prompt_encoder: bool) -> None:
        self.img_size = int(img_size)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.train_prompt_encoder = bool(train_prompt_encoder)
        # Named norm_* (not SAM's pixel_*) so that a SAM checkpoint's ImageNet statistics never overwrite them.
        mean = torch.as_tensor(pixel_mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(pixel_std, dtype=torch.float32).reshape(-1)
        if bool((mean == mean[0]).all()) and bool((std == std[0]).all()):
            mean, std = mean[:1], std[:1]  # one value for every channel
        if mean.numel() not in (1, self.in_channels) or std.numel() != mean.numel():
            raise ValueError(f"pixel_mean/pixel_std need 1 or {self.in_channels} values, got {pixel_mean}, {pixel_std}")
        self.register_buffer("norm_mean", mean.view(-1, 1, 1))
        self.register_buffer("norm_std", std.view(-1, 1, 1))
        if not self.train_prompt_encoder:
            self.prompt_encoder.requires_grad_(False)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] == 1 and self.in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[1] != self.in_channels or tuple(images.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, {self.img_size}, {self.img_size}), "
                f"got {tuple(images.shape)}"
            )
        return (images.float() - self.norm_mean) / self.norm_std

    def embed_prompts(self, batch: int, points=None, point_labels=None, boxes=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse ``(B, n, 256)`` and dense ``(B, 256, h, w)`` prompt embeddings for a batch of ``batch`` images."""
        pe = self.prompt_encoder
        device = pe.no_mask_embed.weight.device
        sparse = [torch.empty((batch, 0, pe.embed_dim), device=device)]
        if points is not None:
            if isinstance(points, (tuple, list)):
                points, point_labels = points
            coords = torch.as_tensor(points, dtype=torch.float32, device=device)
            if coords.dim() == 2:
                coords = coords.unsqueeze(1)
            if coords.dim() != 3 or coords.shape[0] != batch or coords.shape[-1] != 2:
                raise ValueError(f"points must be (B={batch}, N, 2) pixel coordinates, got {tuple(coords.shape)}")
            if point_labels is None:
                labels = torch.ones(coords.shape[:2], dtype=torch.long, device=device)
            else:
                labels = torch.as_tensor(point_labels, device=device).long().reshape(coords.shape[:2])
            sparse.append(pe._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            b = torch.as_tensor(boxes, dtype=torch.float32, device=device)
            if b.dim() == 2:
                b = b.unsqueeze(1)
            if b.dim() != 3 or b.shape[0] != batch or b.shape[-1] != 4:
                raise ValueError(f"boxes must be (B={batch}, 4) or (B, K, 4) as [x1, y1, x2, y2], got {tuple(b.shape)}")
            k = b.shape[1]
            pad = torch.isnan(b).any(dim=-1).reshape(-1)
            emb = pe._embed_boxes(torch.nan_to_num(b).reshape(-1, 4))  # (B*K, 2, C)
            if pad.any():
                emb = torch.where(pad[:, None, None], pe.not_a_point_embed.weight.expand_as(emb), emb)
            sparse.append(emb.reshape(batch, 2 * k, pe.embed_dim))
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, *pe.image_embedding_size)
        return torch.cat(sparse, dim=1), dense

    @staticmethod
    def _prompt_batch(images: torch.Tensor, points, boxes) -> int:
        """Prompt sets per forward: the image batch, or K when one image comes with K prompt sets (B = 1, prompts of
        first dimension K) — that image is encoded once and its features shared by the K prompts (the same outputs and
        gradients as K copies, at the cost of one)."""
        batch = images.shape[0]
        if batch == 1:
            for prompt in (boxes, points[0] if isinstance(points, (tuple, list)) else points):
                if prompt is not None and len(prompt) > 1:
                    return len(prompt)
        return batch

    def _prompts(self, batch, points, point_labels, boxes):
        if self.train_prompt_encoder:
            return self.embed_prompts(batch, points, point_labels, boxes)
        with torch.no_grad():  # the authors' code: prompt embeddings without gradient
            return self.embed_prompts(batch, points, point_labels, boxes)


class SamSegmenter(_PromptableSegmenter):
    """SAM fine-tuned for semantic segmentation: one mask token per class (the paper's SAM baseline)."""

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: SamMaskDecoder,
                 *, img_size: int = IMG_SIZE, in_channels: int = 3, pixel_mean=CARE_PIXEL_MEAN,
                 pixel_std=CARE_PIXEL_STD, train_prompt_encoder: bool = True) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self._init_common(img_size, in_channels, mask_decoder.num_mask_tokens, pixel_mean, pixel_std,
                          train_prompt_encoder)

    def forward(self, images: torch.Tensor, points=None, point_labels=None, boxes=None, return_aux: bool = False):
        x = self._check_images(images)
        batch = self._prompt_batch(x, points, boxes)
        sparse, dense = self._prompts(batch, points, point_labels, boxes)
        emb = self.image_encoder(x).expand(batch, -1, -1, -1)
        masks, iou, tokens = self.mask_decoder(emb, self.prompt_encoder.get_dense_pe(), sparse, dense)
        logits = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        if return_aux:
            return {"logits": logits, "lowres_logits": masks, "iou": iou, "mask_tokens": tokens}
        return logits


class USam(_PromptableSegmenter):
    """U-SAM: SAM with the U-shaped CNN adapter (down path feeding the ViT, UP blocks with skips in the decoder)."""

    new_key_prefixes = (
        "down_path.",
        "mask_decoder.up4.",
        "mask_decoder.up3.",
        "mask_decoder.up2.",
        "mask_decoder.up1.",
        "mask_decoder.head.",
        "mask_decoder.lowres_head.",
    )

    def __init__(self, down_path: DownPath, image_encoder: TokenImageEncoderViT, prompt_encoder: PromptEncoder,
                 mask_decoder: USamMaskDecoder, *, img_size: int = IMG_SIZE, pixel_mean=CARE_PIXEL_MEAN,
                 pixel_std=CARE_PIXEL_STD, train_prompt_encoder: bool = True) -> None:
        super().__init__()
        self.down_path = down_path
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        in_channels = down_path.inc.conv.in_channels
        self._init_common(img_size, in_channels, mask_decoder.num_classes, pixel_mean, pixel_std, train_prompt_encoder)
        # The authors keep SAM's patch embedding in the encoder although f4 replaces it: it never runs, so freeze it.
        self.image_encoder.patch_embed.requires_grad_(False)

    def forward(self, images: torch.Tensor, points=None, point_labels=None, boxes=None, return_aux: bool = False):
        x = self._check_images(images)
        batch = self._prompt_batch(x, points, boxes)
        sparse, dense = self._prompts(batch, points, point_labels, boxes)
        f4, skips = self.down_path(x)
        emb = self.image_encoder(f4).expand(batch, -1, -1, -1)
        skips = [f.expand(batch, -1, -1, -1) for f in skips]
        logits, lowres, iou, tokens = self.mask_decoder(emb, self.prompt_encoder.get_dense_pe(), sparse, dense, skips)
        if return_aux:
            return {"logits": logits, "lowres_logits": lowres, "iou": iou, "mask_tokens": tokens}
        return logits


# ---------------------------------------------------------------------------------------------------------- builders
def _encoder_config(encoder: str, depth: int | None = None, embed_dim: int | None = None,
                    num_heads: int | None = None) -> dict:
    """The ViT settings of ``encoder``, optionally shrunk (``depth``/``embed_dim``/``num_heads``: small encoders for
    CPU tests and quick experiments; a shrunk encoder no longer matches SAM checkpoints or Table 5)."""
    try:
        cfg = dict(ENCODERS[encoder])
    except KeyError:
        raise ValueError(f"unknown SAM encoder {encoder!r}; known: {', '.join(ENCODERS)}") from None
    if depth is None and embed_dim is None and num_heads is None:
        return cfg
    if depth is not None:
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"encoder_depth must be >= 1, got {depth}")
        if depth != cfg["depth"]:
            # global attention in every 4th block counted from the end, as SAM's ViTs (2, 5, 8, 11 for 12 blocks)
            cfg["global_attn_indexes"] = tuple(range(depth - 1, -1, -max(1, depth // 4)))[::-1][-4:]
        cfg["depth"] = depth
    if embed_dim is not None:
        cfg["embed_dim"] = int(embed_dim)
        if num_heads is None:
            num_heads = max(1, cfg["embed_dim"] // 64)
    if num_heads is not None:
        cfg["num_heads"] = int(num_heads)
    if cfg["embed_dim"] % cfg["num_heads"]:
        raise ValueError(f"encoder_embed_dim {cfg['embed_dim']} is not divisible by {cfg['num_heads']} heads")
    return cfg


def build_image_encoder(encoder: str = "vit_b", img_size: int = IMG_SIZE, token_input: bool = False,
                        encoder_depth: int | None = None, encoder_embed_dim: int | None = None,
                        encoder_num_heads: int | None = None) -> ImageEncoderViT:
    """SAM's ViT image encoder at ``img_size`` (pos_embed ``img_size/16`` square, window 14, rel-pos tables sized for
    ``img_size``).  ``token_input=True`` gives U-SAM's :class:`TokenImageEncoderViT`.  ``encoder_depth``,
    ``encoder_embed_dim``, ``encoder_num_heads`` override the ViT's size (default: the named encoder's)."""
    if img_size % PATCH_SIZE:
        raise ValueError(f"img_size must be a multiple of {PATCH_SIZE}, got {img_size}")
    cfg = _encoder_config(encoder, encoder_depth, encoder_embed_dim, encoder_num_heads)
    cls = TokenImageEncoderViT if token_input else ImageEncoderViT
    return cls(
        depth=cfg["depth"],
        embed_dim=cfg["embed_dim"],
        img_size=img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg["num_heads"],
        patch_size=PATCH_SIZE,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg["global_attn_indexes"],
        window_size=WINDOW_SIZE,
        out_chans=PROMPT_EMBED_DIM,
    )


def build_prompt_encoder(img_size: int = IMG_SIZE) -> PromptEncoder:
    """SAM's prompt encoder for ``img_size`` inputs (image embedding ``img_size/16`` square)."""
    e = img_size // PATCH_SIZE
    return PromptEncoder(embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(e, e), input_image_size=(img_size, img_size),
                         mask_in_chans=16)


def build_two_way_transformer() -> TwoWayTransformer:
    """SAM's two-way transformer of the mask decoder (depth 2, 8 heads, MLP 2048)."""
    return TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8)


def build_sam_segmenter(encoder: str = "vit_b", img_size: int = IMG_SIZE, num_classes: int = 3, in_channels: int = 3,
                        lora: bool = False, lora_rank: int = 4, lora_alpha: float | None = None,
                        lora_targets: str = "qv", freeze_image_encoder: bool | None = None,
                        pixel_mean=CARE_PIXEL_MEAN, pixel_std=CARE_PIXEL_STD,
                        train_prompt_encoder: bool = True, encoder_depth: int | None = None,
                        encoder_embed_dim: int | None = None, encoder_num_heads: int | None = None) -> SamSegmenter:
    """The paper's SAM baseline: SAM at ``img_size`` whose decoder has ``num_classes`` mask tokens (token i → class i).

    ``lora=True``: rank-``lora_rank`` adapters on the encoder's q and v, encoder frozen (``freeze_image_encoder``
    defaults to ``lora``).  ``encoder_depth``/``encoder_embed_dim``/``encoder_num_heads``: a smaller ViT (tests).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels != 3:
        raise ValueError("SAM's patch embedding takes 3-channel images; repeat a grey slice to 3 channels")
    image_encoder = build_image_encoder(encoder, img_size, encoder_depth=encoder_depth,
                                        encoder_embed_dim=encoder_embed_dim, encoder_num_heads=encoder_num_heads)
    decoder = SamMaskDecoder(transformer_dim=PROMPT_EMBED_DIM, transformer=build_two_way_transformer(),
                             num_multimask_outputs=num_classes - 1, iou_head_depth=3, iou_head_hidden_dim=256)
    model = SamSegmenter(image_encoder, build_prompt_encoder(img_size), decoder, img_size=img_size,
                         in_channels=in_channels, pixel_mean=pixel_mean, pixel_std=pixel_std,
                         train_prompt_encoder=train_prompt_encoder)
    _finish_encoder(model, lora, lora_rank, lora_alpha, lora_targets, freeze_image_encoder)
    return model


def build_usam(encoder: str = "vit_b", img_size: int = IMG_SIZE, num_classes: int = 3, in_channels: int = 3,
               cnn_channels: Sequence[int] = (32, 64, 128, 256), num_mask_tokens: int | None = None, n_conv: int = 2,
               lora: bool = False, lora_rank: int = 4, lora_alpha: float | None = None, lora_targets: str = "qv",
               freeze_image_encoder: bool | None = None, pixel_mean=CARE_PIXEL_MEAN, pixel_std=CARE_PIXEL_STD,
               train_prompt_encoder: bool = True, encoder_depth: int | None = None,
               encoder_embed_dim: int | None = None, encoder_num_heads: int | None = None) -> USam:
    """U-SAM with a ViT-``encoder`` at ``img_size``.

    ``cnn_channels``: widths of f0 … f3 (f4 has the ViT's width); ``num_mask_tokens`` defaults to 256 // 8 = 32 (the
    hypernetwork output width, so the token maps feed ``up1``).  ``lora=True``: rank-``lora_rank`` adapters on the
    encoder's q and v with the encoder frozen (``freeze_image_encoder`` defaults to ``lora``); the CNN adapter,
    prompt encoder and decoder stay trainable.  ``encoder_depth``/``encoder_embed_dim``/``encoder_num_heads``: a
    smaller ViT (CPU tests; f4 then has ``encoder_embed_dim`` channels).
    """
    cfg = _encoder_config(encoder, encoder_depth, encoder_embed_dim, encoder_num_heads)
    if len(tuple(cnn_channels)) != 4:
        raise ValueError(f"cnn_channels needs the 4 widths of f0 … f3, got {tuple(cnn_channels)}")
    down = DownPath(in_channels, (*cnn_channels, cfg["embed_dim"]), n_conv)
    decoder = USamMaskDecoder(transformer_dim=PROMPT_EMBED_DIM, transformer=build_two_way_transformer(),
                              num_classes=num_classes, num_mask_tokens=num_mask_tokens, skip_channels=cnn_channels,
                              n_conv=n_conv)
    vit = build_image_encoder(encoder, img_size, token_input=True, encoder_depth=encoder_depth,
                              encoder_embed_dim=encoder_embed_dim, encoder_num_heads=encoder_num_heads)
    model = USam(down, vit, build_prompt_encoder(img_size),
                 decoder, img_size=img_size, pixel_mean=pixel_mean, pixel_std=pixel_std,
                 train_prompt_encoder=train_prompt_encoder)
    _finish_encoder(model, lora, lora_rank, lora_alpha, lora_targets, freeze_image_encoder)
    return model


def _finish_encoder(model, lora, rank, alpha, targets, freeze) -> None:
    freeze = lora if freeze is None else freeze
    if lora:
        apply_lora(model.image_encoder, rank=rank, alpha=alpha, targets=targets, freeze=freeze)
    elif freeze:
        model.image_encoder.requires_grad_(False)


# ---------------------------------------------------------------------------------------------------------- registry
_SIZE = {"b": "vit_b", "l": "vit_l", "h": "vit_h"}


def _register_family() -> None:
    for size, enc in _SIZE.items():
        for lora in (False, True):
            suffix = "_lora" if lora else ""

            def sam_builder(_enc=enc, _lora=lora, **kwargs) -> SamSegmenter:
                kwargs.setdefault("encoder", _enc)
                kwargs.setdefault("lora", _lora)
                return build_sam_segmenter(**kwargs)

            def usam_builder(_enc=enc, _lora=lora, **kwargs) -> USam:
                kwargs.setdefault("encoder", _enc)
                kwargs.setdefault("lora", _lora)
                return build_usam(**kwargs)

            sam_builder.__doc__ = f"SAM-{size.upper()}{'+LoRA' if lora else ''} baseline; see build_sam_segmenter."
            usam_builder.__doc__ = f"U-SAM-{size.upper()}{'+LoRA' if lora else ''}; see build_usam."
            register_model(f"sam_{size}{suffix}")(sam_builder)
            register_model(f"usam_{size}{suffix}")(usam_builder)


_register_family()

# Checkpoint loading lives in procto.nets.sam_checkpoint; re-exported here for convenience.
from procto.nets.sam_checkpoint import SamCheckpointReport, load_sam_checkpoint  # noqa: E402

__all__ = [
    "ENCODERS",
    "CARE_PIXEL_MEAN",
    "CARE_PIXEL_STD",
    "TokenImageEncoderViT",
    "SamMaskDecoder",
    "USamMaskDecoder",
    "SamSegmenter",
    "USam",
    "build_image_encoder",
    "build_prompt_encoder",
    "build_two_way_transformer",
    "build_sam_segmenter",
    "build_usam",
    "load_sam_checkpoint",
    "SamCheckpointReport",
]

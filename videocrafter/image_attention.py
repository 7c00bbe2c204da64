"""VideoCrafter1 image-to-video: image cross-attention in the spatial transformers' attn2.

Official code: AILab-CVC/VideoCrafter (VideoCrafter1) `lvdm/modules/attention.py` `CrossAttention` with
`img_cross_attention=True` (`configs/inference_i2v_512_v1.0.yaml`, `use_image_attention: true`);
docs/videocrafter2.md, "Image-to-video (VideoCrafter1)".

The context is the text tokens followed by the image tokens. attn2 splits it after the first 77 tokens:
the text part goes through `to_k`/`to_v`, the image part through the extra `to_k_ip`/`to_v_ip`, and the
two attentions (separate softmaxes, same query) are added: `attn(q, k, v) + 1.0 * attn(q, k_ip, v_ip)`.
A context of 77 tokens or fewer (no image tokens) gives the text attention alone, as the official einsum
path does (an attention over zero keys contributes zero). Temporal transformers never see the image.
"""

from __future__ import annotations

import torch

from comfy.ldm.modules.attention import CrossAttention, optimized_attention, optimized_attention_masked

TEXT_TOKENS = 77
IMAGE_ATTENTION_SCALE = 1.0


class ImageCrossAttention(CrossAttention):
    """ComfyUI's CrossAttention plus the image keys/values `to_k_ip`, `to_v_ip` (checkpoint keys)."""

    def __init__(self, query_dim, context_dim, heads, dim_head, text_tokens=TEXT_TOKENS, image_scale=IMAGE_ATTENTION_SCALE,
                 attn_precision=None, dtype=None, device=None, operations=None):
        super().__init__(query_dim, context_dim=context_dim, heads=heads, dim_head=dim_head, attn_precision=attn_precision,
                         dtype=dtype, device=device, operations=operations)
        inner = heads * dim_head
        self.text_tokens = text_tokens
        self.image_scale = image_scale
        self.to_k_ip = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)
        self.to_v_ip = operations.Linear(context_dim, inner, bias=False, dtype=dtype, device=device)

    def split(self, context: torch.Tensor | None):
        """(text tokens, image tokens or None)."""
        if context is None or context.shape[1] <= self.text_tokens:
            return context, None
        return context[:, :self.text_tokens], context[:, self.text_tokens:]

    def image_attention(self, q: torch.Tensor, image: torch.Tensor, image_value: torch.Tensor | None = None,
                        transformer_options=None) -> torch.Tensor:
        """`scale * attn(q, to_k_ip(image), to_v_ip(image))`, q after `to_q` `[B, tokens, heads*dim_head]`."""
        k_ip = self.to_k_ip(image)
        v_ip = self.to_v_ip(image if image_value is None else image_value)
        out = optimized_attention(q, k_ip, v_ip, self.heads, attn_precision=self.attn_precision,
                                  transformer_options=transformer_options or {})
        return out * self.image_scale if self.image_scale != 1.0 else out

    def forward(self, x, context=None, value=None, mask=None, transformer_options={}):
        text, image = self.split(context)
        if image is None:
            return super().forward(x, context=context, value=value, mask=mask, transformer_options=transformer_options)
        value_text, value_image = self.split(value) if value is not None else (text, None)
        q = self.to_q(x)
        k = self.to_k(text)
        v = self.to_v(value_text)
        if mask is None:
            out = optimized_attention(q, k, v, self.heads, attn_precision=self.attn_precision,
                                      transformer_options=transformer_options)
        else:
            out = optimized_attention_masked(q, k, v, self.heads, mask, attn_precision=self.attn_precision,
                                             transformer_options=transformer_options)
        out = out + self.image_attention(q, image, value_image, transformer_options)
        return self.to_out(out)


def context_with_image_tokens(context: torch.Tensor, tokens: torch.Tensor, text_tokens: int = TEXT_TOKENS) -> torch.Tensor:
    """The VideoCrafter1 I2V context: the first `text_tokens` tokens of `context` `[B, L, C]` (a longer context
    is cut, so image tokens already there are replaced) followed by `tokens` `[1, n, C]` broadcast over B:
    `[B, min(L, text_tokens) + n, C]`, in the dtype and on the device of `context`.

    Raises ValueError when the widths C differ (the text encoder and the image encoder come from different models).
    Official: `c_crossattn = cat(text [B, 77, C], image [B, 16, C])` (FIFO+ fork `scripts/evaluation/funcs.py`;
    docs/videocrafter2.md, "Image-to-video (VideoCrafter1)").
    """
    if context.shape[-1] != tokens.shape[-1]:
        raise ValueError(f"the text context is {context.shape[-1]} wide but the image tokens are "
                         f"{tokens.shape[-1]}: the CLIP and the image encoder come from different models")
    image = tokens.to(context.device, context.dtype).expand(context.shape[0], -1, -1)
    return torch.cat([context[:, :text_tokens], image], dim=1)


def add_image_cross_attention(spatial_transformer, context_dim: int, dtype=None, device=None, operations=None) -> None:
    """Give every block of a ComfyUI `SpatialTransformer` an `ImageCrossAttention` as attn2 (same keys + ip)."""
    for block in spatial_transformer.transformer_blocks:
        old = block.attn2
        block.attn2 = ImageCrossAttention(old.to_q.in_features, context_dim, old.heads, old.dim_head,
                                          attn_precision=old.attn_precision, dtype=dtype, device=device,
                                          operations=operations)

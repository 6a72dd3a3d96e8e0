"""The reference loop (nerdyrodent/VQGAN-CLIP generate.py) restated from its formulas, for the tests
(loop.py checked against it) and bench.py only. Its kornia augmentations are loop.py's torch
restatement; the rest is the reference's arithmetic (one cutout resampled at a time, one_hot @
codebook quantisation, the Prompt module).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image


def sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x != 0, torch.sin(math.pi * x) / (math.pi * x), x.new_ones([]))


def lanczos(x: torch.Tensor, a: float) -> torch.Tensor:
    inside = torch.logical_and(-a < x, x < a)
    out = torch.where(inside, sinc(x) * sinc(x / a), x.new_zeros([]))
    return out / out.sum()


def ramp(ratio: float, width: float) -> torch.Tensor:
    """Sample positions 0, ratio, 2 ratio, ... accumulated one step at a time, mirrored about 0."""
    n = math.ceil(width / ratio + 1)
    out = torch.empty([n])
    current = 0.0
    for i in range(n):
        out[i] = current
        current += ratio
    return torch.cat([-out[1:].flip([0]), out])[1:-1]


def resample(image: torch.Tensor, size: tuple[int, int], align_corners: bool = True) -> torch.Tensor:
    n, c, h, w = image.shape
    dh, dw = size
    x = image.view([n * c, 1, h, w])
    if dh < h:
        kernel = lanczos(ramp(dh / h, 2), 2).to(x.device, x.dtype)
        pad = (kernel.shape[0] - 1) // 2
        x = F.conv2d(F.pad(x, (0, 0, pad, pad), "reflect"), kernel[None, None, :, None])
    if dw < w:
        kernel = lanczos(ramp(dw / w, 2), 2).to(x.device, x.dtype)
        pad = (kernel.shape[0] - 1) // 2
        x = F.conv2d(F.pad(x, (pad, pad, 0, 0), "reflect"), kernel[None, None, None, :])
    return F.interpolate(x.view([n, c, h, w]), size, mode="bicubic", align_corners=align_corners)


class ReplaceGrad(torch.autograd.Function):
    """x_forward in the forward pass; the gradient goes to x_backward (summed to its shape)."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


def vector_quantize(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """x (..., dim) -> nearest codes as one_hot @ codebook, gradient straight to x."""
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    x_q = F.one_hot(d.argmin(-1), codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)


def prompt_loss(cutout_embeddings: torch.Tensor, embed: torch.Tensor, weight: float, stop: float) -> torch.Tensor:
    """The reference's Prompt.forward: sign first, then the stop, then |weight| times the mean."""
    weight_t, stop_t = torch.as_tensor(weight), torch.as_tensor(stop)
    input_normed = F.normalize(cutout_embeddings.unsqueeze(1), dim=2)
    embed_normed = F.normalize(embed.unsqueeze(0), dim=2)
    dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
    dists = dists * weight_t.sign()
    return weight_t.abs() * replace_grad(dists, torch.maximum(dists, stop_t)).mean()


def resize_image(image: Image.Image, out_size: tuple[int, int]) -> Image.Image:
    """Image prompts: the same aspect ratio, area at most out_size's."""
    ratio = image.size[0] / image.size[1]
    area = min(image.size[0] * image.size[1], out_size[0] * out_size[1])
    size = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
    return image.resize(size, Image.LANCZOS)


def make_cutouts_update(image: torch.Tensor, cut_size: int, cutn: int, cut_pow: float = 1.0) -> torch.Tensor:
    """MakeCutoutsUpdate: each crop resampled on its own, then the Colab's augmentations and noise."""
    from vqgan_clip import loop

    side_y, side_x = image.shape[2:4]
    max_size = min(side_x, side_y)
    min_size = min(side_x, side_y, cut_size)
    cutouts = []
    for _ in range(cutn):
        size = int(torch.rand([]) ** cut_pow * (max_size - min_size) + min_size)
        offset_x = torch.randint(0, side_x - size + 1, ())
        offset_y = torch.randint(0, side_y - size + 1, ())
        cutout = image[:, :, offset_y:offset_y + size, offset_x:offset_x + size]
        cutouts.append(resample(cutout, (cut_size, cut_size)))
    batch = torch.cat(cutouts, dim=0)
    batch = loop.random_flip(batch, 0.5)
    batch = loop.color_jitter(batch, 0.7, saturation=0.01, hue=0.01)
    batch = loop.random_sharpness(batch, 0.4, 0.3)
    batch = loop.random_affine(batch, 0.8, degrees=30, translate=0.1, padding_mode="border")
    batch = loop.random_perspective(batch, 0.4, 0.2)
    facs = batch.new_empty([cutn, 1, 1, 1]).uniform_(0, 0.1)
    return batch + facs * torch.randn_like(batch)


def reference_initial_z(vqgan, width: int, height: int, device) -> torch.Tensor:
    """Random tokens as one_hot @ codebook, shaped (1, dim, tokens_y, tokens_x)."""
    f = vqgan.downsampling_factor
    codebook = vqgan.codebook
    toks_x, toks_y = width // f, height // f
    one_hot = F.one_hot(torch.randint(codebook.shape[0], [toks_y * toks_x], device=device), codebook.shape[0]).float()
    return (one_hot @ codebook).view([-1, toks_y, toks_x, codebook.shape[1]]).permute(0, 3, 1, 2)


def reference_step(vqgan, clip_model, z, optimizer, targets, mean, std, cut_size: int, cutn: int, z_min, z_max):
    """One iteration of the reference's train(): synth, cutouts, prompts, Adam, clamp of z."""
    from vqgan_clip.loop import clamp_with_grad

    optimizer.zero_grad(set_to_none=True)
    z_q = vector_quantize(z.movedim(1, 3), vqgan.codebook).movedim(3, 1)
    out = clamp_with_grad(vqgan.decode(z_q).add(1).div(2), 0, 1)
    embeddings = clip_model.encode_image((make_cutouts_update(out, cut_size, cutn) - mean) / std).float()
    loss = sum(prompt_loss(embeddings, embed, weight, stop) for embed, weight, stop in targets)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        z.copy_(z.maximum(z_min).minimum(z_max))
    return loss

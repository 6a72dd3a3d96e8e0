"""VQGAN (Esser, Rombach, Ommer 2021, "Taming Transformers for High-Resolution Image Synthesis").

The article's (002) encoder -> codebook (nearest code) -> decoder, in taming-transformers' module
layout, so the official checkpoints load strictly without taming or pytorch-lightning installed.

    model = load_vqgan("data/checkpoints/vqgan_imagenet_f16_16384.yaml",
                       "data/checkpoints/vqgan_imagenet_f16_16384.ckpt")
    z_q, loss_terms, indices = model.encode(images_in_minus1_1)
    images = model.decode(z_q)

Images are tensors in [-1, 1], shape (batch, 3, height, width), as in taming.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab import LabError
from lab.checkpoint import load_state_dict_strict
from lab.paths import read_text_file
from lab.safe_load import IncompleteFileError, load_torch

# Where the official files are published (named in error messages; never downloaded).
OFFICIAL_SOURCES = (
    "the official VQGAN checkpoints are published by CompVis with taming-transformers "
    "(https://github.com/CompVis/taming-transformers, section 'Overview of pretrained models': "
    "'ImageNet (f=16), 1024' and 'ImageNet (f=16), 16384'); each comes as a checkpoints/last.ckpt "
    "and a configs/model.yaml. Save them as data/checkpoints/<name>.ckpt and data/checkpoints/<name>.yaml "
    "(see vqgan_clip/README.md)"
)

DDCONFIG_KEYS = ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution",
                 "in_channels", "out_ch", "dropout", "double_z")


def normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    """Two (GroupNorm, swish, 3x3 conv) stages plus a skip; a 1x1 conv on the skip when widths change."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with 1x1 convs for q, k, v and output."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        batch, channels, height, width = h.shape
        # softmax(q k^T / sqrt(c)) v over the height*width positions (taming's AttnBlock), computed with
        # PyTorch's fused attention, which gives the same result with less memory.
        q, k, v = (t.reshape(batch, 1, channels, height * width).transpose(2, 3) for t in (self.q(h), self.k(h), self.v(h)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(batch, channels, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 conv after padding one pixel right and bottom (taming)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Double the resolution by nearest-neighbour interpolation followed by a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(block_in: int, block_out: int, count: int, dropout: float, attention: bool) -> tuple[nn.Module, int]:
    """One resolution level of taming's Encoder or Decoder, and its output width: `count` ResNet blocks
    (.block), each followed by self-attention (.attn) at the resolutions the ddconfig names."""
    level = nn.Module()
    level.block, level.attn = nn.ModuleList(), nn.ModuleList()
    for _ in range(count):
        level.block.append(ResnetBlock(block_in, block_out, dropout))
        block_in = block_out
        if attention:
            level.attn.append(AttnBlock(block_in))
    return level, block_in


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    for index, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[index](h)
    return h


def _middle(channels: int, dropout: float) -> nn.Module:
    """ResNet block, attention, ResNet block: the bottleneck of both Encoder and Decoder."""
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


class Encoder(nn.Module):
    """Image -> latent grid: conv_in, len(ch_mult) levels with a downsampling between them, the middle,
    then GroupNorm, swish and conv_out."""

    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution,
                 in_channels, out_ch=3, dropout=0.0, double_z=False, **_unused):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, stride=1, padding=1)
        current_resolution = resolution
        in_ch_mult = (1, *tuple(ch_mult))
        self.down = nn.ModuleList()
        for level in range(self.num_resolutions):
            down, block_in = _level(ch * in_ch_mult[level], ch * ch_mult[level], num_res_blocks, dropout,
                                    current_resolution in attn_resolutions)
            if level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                current_resolution //= 2
            self.down.append(down)
        self.mid = _middle(block_in, dropout)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level, down in enumerate(self.down):
            h = _run_level(down, h)
            if level != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent grid -> image: the mirror of the Encoder, num_res_blocks + 1 blocks per level, upsampling between."""

    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, z_channels, resolution,
                 in_channels=3, out_ch, dropout=0.0, double_z=False, **_unused):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        current_resolution = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, stride=1, padding=1)
        self.mid = _middle(block_in, dropout)
        ups: list[nn.Module] = []
        for level in reversed(range(self.num_resolutions)):
            up, block_in = _level(block_in, ch * ch_mult[level], num_res_blocks + 1, dropout,
                                  current_resolution in attn_resolutions)
            if level != 0:
                up.upsample = Upsample(block_in)
                current_resolution *= 2
            ups.insert(0, up)
        # Stored lowest level first, as in taming, so the key names match: decoder.up.0 is full resolution.
        self.up = nn.ModuleList(ups)
        self.norm_out = normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(range(self.num_resolutions)):
            h = _run_level(self.up[level], h)
            if level != 0:
                h = self.up[level].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook: each latent vector replaced by its nearest code, the gradient passed straight through.

    VQ-VAE's loss (van den Oord et al. 2017, eq. 3): codebook ||sg[z] - e||^2 and commitment ||z - sg[e]||^2.
    taming's VQModel trains with VectorQuantizer2(legacy=True): commitment + beta * codebook (beta on
    the codebook term, the reverse of the paper); legacy=False gives the paper's codebook + beta * commitment.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = True):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def nearest_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (batch, height, width) of the nearest code to each vector of z (batch, dim, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
        codes = self.embedding.weight
        # ||z - e||^2 = ||z||^2 + ||e||^2 - 2 z.e, without building the (N, K, D) difference tensor.
        distances = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2.0 * flat @ codes.t()
        return distances.argmin(1).reshape(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for indices (batch, height, width) as a latent (batch, dim, height, width)."""
        return self.embedding(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        indices = self.nearest_indices(z)
        z_q = self.lookup(indices)
        codebook = F.mse_loss(z_q, z.detach())
        commitment = F.mse_loss(z, z_q.detach())
        total = commitment + self.beta * codebook if self.legacy else codebook + self.beta * commitment
        loss_terms = {"codebook": codebook, "commitment": commitment, "total": total}
        z_q = z + (z_q - z).detach()
        return z_q, loss_terms, indices


class VQModel(nn.Module):
    """taming's VQGAN autoencoder. encode(x) -> (z_q with a straight-through gradient, loss_terms
    {"codebook", "commitment", "total"}, indices); decode(z_q) -> image in [-1, 1], not clamped."""

    def __init__(self, embed_dim: int, n_embed: int, ddconfig: dict[str, Any], beta: float = 0.25):
        super().__init__()
        missing = [key for key in DDCONFIG_KEYS if key not in ddconfig]
        if missing:
            raise LabError(f"the VQGAN ddconfig lacks {', '.join(missing)}; a taming model.yaml gives all of "
                           f"{', '.join(DDCONFIG_KEYS)} under model.params.ddconfig")
        if ddconfig["ch"] % 32 or any((ddconfig["ch"] * m) % 32 for m in ddconfig["ch_mult"]):
            raise LabError(f"ddconfig ch={ddconfig['ch']} with ch_mult={ddconfig['ch_mult']} gives widths that are not "
                           "multiples of 32, which GroupNorm(32) needs; use a ch that is a multiple of 32")
        self.embed_dim, self.n_embed = int(embed_dim), int(n_embed)
        self.ddconfig = dict(ddconfig)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(self.n_embed, self.embed_dim, beta=beta)
        z_channels = ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(z_channels * (2 if ddconfig["double_z"] else 1), self.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.embed_dim, z_channels, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VQModel:
        """Build from the parsed official model.yaml ({"model": {"params": {...}}}) or its params dict."""
        params = config.get("model", config)
        params = params.get("params", params)
        for key in ("embed_dim", "n_embed", "ddconfig"):
            if key not in params:
                raise LabError(f"the VQGAN config has no {key}; expected the taming layout "
                               "model: {params: {embed_dim, n_embed, ddconfig: {...}}}")
        return cls(params["embed_dim"], params["n_embed"], params["ddconfig"])

    @property
    def codebook(self) -> torch.Tensor:
        """The codes (n_embed, embed_dim) that the VQGAN+CLIP loop snaps its latent to."""
        return self.quantize.embedding.weight

    @property
    def downsampling_factor(self) -> int:
        """Pixels per latent token along each side: 2^(levels - 1), 16 for the official f16 models."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        return self.quantize(self.quant_conv(self.encoder(x)))

    def encode_unquantized(self, x: torch.Tensor) -> torch.Tensor:
        """The latent before the codebook (what the VQGAN+CLIP loop optimises when it starts from an image)."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z_q, loss_terms, _ = self.encode(x)
        return self.decode(z_q), loss_terms


class GumbelQuantize(nn.Module):
    """taming's GumbelQuantize (Jang et al. 2017, "Categorical Reparameterization with Gumbel-Softmax"):
    `proj` gives logits over the codes `embed`; training mixes them by a Gumbel-softmax one-hot, eval
    mode takes the argmax (no noise), so encoding an image gives the same latent every time."""

    def __init__(self, num_hiddens: int, embed_dim: int, n_embed: int, kl_weight: float = 5e-4,
                 temperature: float = 1.0):
        super().__init__()
        self.n_embed, self.embed_dim, self.kl_weight, self.temperature = n_embed, embed_dim, kl_weight, temperature
        self.proj = nn.Conv2d(num_hiddens, n_embed, 1)
        self.embed = nn.Embedding(n_embed, embed_dim)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embed(indices).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        logits = self.proj(z)
        if self.training:
            one_hot = F.gumbel_softmax(logits, tau=self.temperature, dim=1, hard=True)
        else:
            one_hot = F.one_hot(logits.argmax(1), self.n_embed).permute(0, 3, 1, 2).to(logits.dtype)
        z_q = torch.einsum("bnhw,nd->bdhw", one_hot, self.embed.weight)
        # taming's KL term to the uniform prior: sum q log(q * n_embed), averaged over positions.
        q = F.softmax(logits, dim=1)
        kl = self.kl_weight * torch.sum(q * torch.log(q * self.n_embed + 1e-10), dim=1).mean()
        return z_q, {"kl": kl, "total": kl}, one_hot.argmax(1)


class GumbelVQ(VQModel):
    """taming's GumbelVQ (vqgan_gumbel_f8_8192): VQModel's encoder and decoder with GumbelQuantize
    (`quantize.proj`, `quantize.embed`) in place of the nearest-code quantiser."""

    def __init__(self, embed_dim: int, n_embed: int, ddconfig: dict[str, Any], kl_weight: float = 1e-8):
        super().__init__(embed_dim, n_embed, ddconfig)
        self.quantize = GumbelQuantize(ddconfig["z_channels"], self.embed_dim, self.n_embed, kl_weight=kl_weight)

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embed.weight


MODEL_TARGETS = {"taming.models.vqgan.VQModel": VQModel, "taming.models.vqgan.GumbelVQ": GumbelVQ}


def build_vqgan(config: dict[str, Any]) -> VQModel:
    """The model a taming model.yaml describes, by its `target` (VQModel when the yaml names none)."""
    model = config.get("model", config)
    target = model.get("target", "taming.models.vqgan.VQModel") if isinstance(model, dict) else None
    if target not in MODEL_TARGETS:
        raise LabError(f"the VQGAN config's target {target!r} is not supported; supported: "
                       f"{' and '.join(MODEL_TARGETS)}")
    return MODEL_TARGETS[target].from_config(config)


# -----------------------------------------------------------------------------------------------
# Loading


def read_yaml_config(yaml_path: Path | str) -> dict[str, Any]:
    """The parsed model.yaml (PyYAML safe_load), with a clear error when it is missing or unreadable."""
    import yaml

    yaml_path = Path(yaml_path)
    if not yaml_path.is_file():
        raise LabError(f"VQGAN config {yaml_path} not found; {OFFICIAL_SOURCES}")
    try:
        config = yaml.safe_load(read_text_file(yaml_path, "VQGAN config"))
    except yaml.YAMLError as error:
        raise LabError(f"cannot parse VQGAN config {yaml_path}: {error}") from None
    if not isinstance(config, dict):
        raise LabError(f"VQGAN config {yaml_path} is not a YAML mapping; expected the taming model.yaml")
    return config


def read_vqgan_state_dict(ckpt_path: Path | str) -> dict[str, torch.Tensor]:
    """The weights of a Lightning .ckpt ({"state_dict": ...}) or a plain state_dict, read by
    lab.safe_load.load_torch: Lightning's pickled objects become inert stand-ins (nothing from the
    file runs), and a file asking for anything a checkpoint never needs (os.system, ...) is refused."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise LabError(f"VQGAN checkpoint {ckpt_path} not found; {OFFICIAL_SOURCES}")
    try:
        loaded = load_torch(ckpt_path, "VQGAN checkpoint", stand_ins=True)
    except IncompleteFileError:
        raise LabError(f"cannot read {ckpt_path}: the file is incomplete; download it again "
                       "(python -m vqgan_clip.download resumes a partial download)") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise LabError(f"{ckpt_path} is neither a Lightning checkpoint with a state_dict nor a plain state_dict")
    return loaded


def strip_training_entries(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the training-only `loss.` entries (LPIPS and discriminator) of the official checkpoints."""
    return {key: value for key, value in state_dict.items() if not key.startswith("loss.")}


def load_vqgan(yaml_path: Path | str, ckpt_path: Path | str, device: str | torch.device = "cpu") -> VQModel:
    """Build the VQGAN described by model.yaml (VQModel or GumbelVQ, by its target) and load its weights
    strictly (eval mode, no gradients)."""
    config = read_yaml_config(yaml_path)
    model = build_vqgan(config)
    state_dict = strip_training_entries(read_vqgan_state_dict(ckpt_path))
    load_state_dict_strict(model, state_dict, f"VQGAN checkpoint {ckpt_path} (for {yaml_path})")
    model.eval().requires_grad_(False)
    return model.to(device)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(model: VQModel) -> str:
    millions = parameter_count(model) / 1e6
    return (f"VQGAN f{model.downsampling_factor}, codebook {model.n_embed}x{model.embed_dim}, "
            f"{millions:.1f} M parameters, {int(math.log2(model.downsampling_factor))} downsamplings")

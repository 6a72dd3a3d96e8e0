"""Train a small CLIP on the captioned shapes world. Run: python -m vqgan_clip.train_clip [--quick]

CLIP (Radford et al. 2021) judges the picture against the words in the article's loop. Here: an
open_clip CLIP of a small config (ViT image tower, causal text transformer, the real 49408-token
BPE tokenizer), trained with CLIP's symmetric contrastive loss on `shapes_world`. Measured on the
held-out "test" split (with colour-shape pairs unseen in training): text->image and image->text
top-1 among 100, zero-shot colour, shape and position accuracy. SHIP=true writes the fp16 weights
and config to SHIP_DIR for `python -m vqgan_clip.generate`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lab import LabError, exit_on_lab_error
from lab.checkpoint import resume, save_checkpoint
from lab.plots import save_figure
from lab.schedules import cosine_factor
from vqgan_clip import shapes_world as world
from vqgan_clip import training
from vqgan_clip.vqgan import parameter_count

# -----------------------------------------------------------------------------
# Constants. The defaults made the shipped model (3000 steps: 29 min on 2 CPU cores shared with another
# training); --set changes any of them.
TRAIN_SCENES = 12_000      # pictures rendered once and reused every epoch (captions re-drawn each time) {> 0}
STEPS = 3000               # optimisation steps {> 0}
BATCH_SIZE = 128           # pairs per contrastive batch (CLIP's negatives are the rest of the batch) {>= 2}
LEARNING_RATE = 1.5e-3     # AdamW peak step size, after a linear warm-up, then cosine decay (CLIP paper) {> 0}
WARMUP_STEPS = 100         # linear warm-up steps {>= 0}
WEIGHT_DECAY = 0.05        # AdamW decoupled weight decay on matrices (not on gains, biases, embeddings) {>= 0}
NOISE_STD = 0.03           # Gaussian pixel noise on training pictures (in 0..1 units): robustness for the loop {>= 0}
SHAPE_NEGATIVES = 2        # extra image->text negatives per picture: its caption with one shape swapped (0: plain CLIP) {>= 0}
SHAPE_TWINS = True         # each picture gets a twin drawn with one shape swapped, an extra text->image negative
CHECKPOINT_EVERY = 500     # steps between checkpoints (Ctrl+C also saves; a rerun resumes) {> 0}
EMBED_DIM = 64             # shared image-text embedding width {> 0}
VISION_TOWER = "vit"       # "vit" (ViT-B/32's kind) or "resnet" (open_clip's ModifiedResNet, RN50's kind; see README)
VISION_WIDTH = 64          # ViT width (64 patch tokens of 8x8 + a class token); ResNet: stem width (try 8) {> 0}
VISION_LAYERS = 2          # ViT blocks {> 0}
PATCH_SIZE = 8             # ViT patch side, pixels {> 0}
RESNET_LAYERS = (1, 1, 1, 1)  # ResNet bottleneck blocks per stage (RN50: 3, 4, 6, 3)
TEXT_WIDTH = 64            # text transformer width (its token table is 49408 x TEXT_WIDTH) {> 0}
TEXT_LAYERS = 2            # text transformer blocks {> 0}
TEXT_HEADS = 4             # text attention heads {> 0}
CONTEXT_LENGTH = 24        # tokens per caption (the longest caption here is about 20) {> 2}
EVAL_SCENES = 2000         # held-out test scenes for the zero-shot probes (retrieval uses groups of 100) {> 0}
EVAL_UNTRAINED = True      # also measure the untrained model (the chance baseline, measured)
SHIP = False               # write fp16 weights + config to SHIP_DIR (the shipped small model)
SHIP_DIR = "data/vqgan_clip_small"  # where SHIP writes {nonempty}
TORCH_THREADS = 1          # torch CPU threads (0: torch's default). 1 is fastest on a shared 2-core machine {>= 0}
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"TRAIN_SCENES": 2000, "STEPS": 60, "EVAL_SCENES": 400, "VISION_LAYERS": 1, "TEXT_LAYERS": 1}
DRY_RUN = {"TRAIN_SCENES": 256, "STEPS": 2, "EVAL_SCENES": 200, "BATCH_SIZE": 16}
# -----------------------------------------------------------------------------

ARCHITECTURE = ["EMBED_DIM", "VISION_TOWER", "VISION_WIDTH", "VISION_LAYERS", "PATCH_SIZE", "RESNET_LAYERS",
                "TEXT_WIDTH", "TEXT_LAYERS", "TEXT_HEADS", "CONTEXT_LENGTH"]
# Pictures enter CLIP as (x - 0.5) / 0.5 per channel: the world's statistics are not ImageNet's.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def clip_config(cfg) -> dict:
    """The model in open_clip's model_configs/*.json layout: vision_cfg "layers" a list gives a
    ModifiedResNet (as RN50.json), a number a VisionTransformer (as ViT-B-32.json)."""
    if cfg.VISION_TOWER == "resnet":
        vision = {"image_size": world.IMAGE_SIZE, "layers": list(cfg.RESNET_LAYERS), "width": cfg.VISION_WIDTH,
                  "head_width": 32}
    else:
        vision = {"image_size": world.IMAGE_SIZE, "layers": cfg.VISION_LAYERS, "width": cfg.VISION_WIDTH,
                  "head_width": 32, "patch_size": cfg.PATCH_SIZE}
    return {
        "embed_dim": cfg.EMBED_DIM,
        "vision_cfg": vision,
        "text_cfg": {"context_length": cfg.CONTEXT_LENGTH, "vocab_size": 49408, "width": cfg.TEXT_WIDTH,
                     "heads": cfg.TEXT_HEADS, "layers": cfg.TEXT_LAYERS},
        "preprocess_cfg": {"mean": list(IMAGE_MEAN), "std": list(IMAGE_STD)},
    }


def build_clip(config: dict) -> torch.nn.Module:
    """An open_clip CLIP from a config dict (the preprocess entry is not a model argument)."""
    from open_clip.model import CLIP

    args = {k: v for k, v in config.items() if k != "preprocess_cfg"}
    return CLIP(**args, output_dict=False)


def make_tokenizer(context_length: int):
    """open_clip's real CLIP tokenizer (49408-token byte-pair vocabulary), padded to context_length."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def to_model_input(images_uint8: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """uint8 (N, H, W, 3) pictures -> normalised float (N, 3, H, W) as the CLIP expects."""
    x = torch.as_tensor(np.asarray(images_uint8), device=device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], device, batch: int = 512) -> torch.Tensor:
    out = [F.normalize(model.encode_text(tokenizer(texts[i:i + batch]).to(device)), dim=-1)
           for i in range(0, len(texts), batch)]
    return torch.cat(out)


@torch.no_grad()
def encode_images(model, images_uint8: np.ndarray, device, batch: int = 256) -> torch.Tensor:
    out = [F.normalize(model.encode_image(to_model_input(images_uint8[i:i + batch], device)), dim=-1)
           for i in range(0, len(images_uint8), batch)]
    return torch.cat(out)


def retrieval_top1(model, tokenizer, scenes: list[dict], images: np.ndarray, device, group: int = 100):
    """Text->image and image->text top-1 accuracy within groups of `group` held-out scenes."""
    t2i, i2t, n = 0.0, 0.0, 0
    for start in range(0, len(scenes) - group + 1, group):
        image_features = encode_images(model, images[start:start + group], device)
        text_features = encode_texts(model, tokenizer, [s["caption"] for s in scenes[start:start + group]], device)
        similarity = text_features @ image_features.t()
        target = torch.arange(group, device=device)
        t2i += (similarity.argmax(1) == target).float().sum().item()
        i2t += (similarity.argmax(0) == target).float().sum().item()
        n += group
    if n == 0:
        raise LabError(f"retrieval needs at least {group} evaluation scenes; raise EVAL_SCENES")
    return t2i / n, i2t / n


def attribute_probe_captions(scene: dict, attribute: str) -> tuple[list[str], int]:
    """Captions of one single-shape scene with one attribute varied, and the index of the true one."""
    shape = scene["shapes"][0]
    colour, kind, position, background = shape["colour"], shape["shape"], shape["position"], scene["background"]
    if attribute == "colour":
        options = [c for c in world.COLOUR_NAMES if c != background]
        texts = [f"a {c} {kind} on a {background} background" for c in options]
        return texts, options.index(colour)
    if attribute == "shape":
        texts = [f"a {colour} {s} on a {background} background" for s in world.SHAPES]
        return texts, world.SHAPES.index(kind)
    if attribute == "position":
        texts = [f"a {colour} {kind} {world.POSITION_PHRASES[p]}" for p in world.POSITION_NAMES]
        return texts, world.POSITION_NAMES.index(position)
    raise LabError(f"unknown attribute {attribute!r}")


def zero_shot_accuracy(model, tokenizer, scenes: list[dict], images: np.ndarray, device) -> dict[str, float]:
    """Zero-shot accuracy per attribute on single-shape scenes, overall and on held-out pairs."""
    single = [i for i, s in enumerate(scenes) if len(s["shapes"]) == 1]
    held = {i for i in single if (scenes[i]["shapes"][0]["colour"], scenes[i]["shapes"][0]["shape"])
            in world.HELD_OUT_PAIRS}
    image_features = encode_images(model, images[single], device)
    probes = {(a, i): attribute_probe_captions(scenes[i], a) for a in ("colour", "shape", "position") for i in single}
    unique = sorted({text for texts, _ in probes.values() for text in texts})
    text_features = dict(zip(unique, encode_texts(model, tokenizer, unique, device), strict=True))
    results = {}
    for attribute in ("colour", "shape", "position"):
        correct, correct_held = [], []
        for row, index in enumerate(single):
            texts, truth = probes[(attribute, index)]
            scores = torch.stack([text_features[t] for t in texts]) @ image_features[row]
            hit = float(scores.argmax().item() == truth)
            correct.append(hit)
            if index in held:
                correct_held.append(hit)
        results[f"{attribute}_accuracy"] = float(np.mean(correct))
        results[f"{attribute}_accuracy_held_out_pairs"] = float(np.mean(correct_held)) if correct_held else None
    results["held_out_pair_scenes"] = len(held)
    return results


def evaluate(model, tokenizer, scenes, images, device) -> dict[str, float]:
    model.eval()
    t2i, i2t = retrieval_top1(model, tokenizer, scenes, images, device)
    metrics = {"text_to_image_top1_of_100": t2i, "image_to_text_top1_of_100": i2t}
    metrics.update(zero_shot_accuracy(model, tokenizer, scenes, images, device))
    return metrics


def learning_rate(step: int, cfg) -> float:
    """Linear warm-up, then cosine decay to zero (the CLIP paper's schedule)."""
    if step < cfg.WARMUP_STEPS:
        return cfg.LEARNING_RATE * (step + 1) / cfg.WARMUP_STEPS
    return cfg.LEARNING_RATE * cosine_factor(step - cfg.WARMUP_STEPS, cfg.STEPS - cfg.WARMUP_STEPS)


def make_optimizers(model, cfg) -> list[torch.optim.Optimizer]:
    """AdamW for the network; SparseAdam for the 49408-row token table, of which a caption touches ~40
    rows (a dense update of the whole table would cost more than the rest of the model together)."""
    model.token_embedding.sparse = True
    named = [(n, p) for n, p in model.named_parameters() if n != "token_embedding.weight"]
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n)]
    dense = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.WEIGHT_DECAY},
                               {"params": rest, "weight_decay": 0.0}], lr=cfg.LEARNING_RATE, betas=(0.9, 0.98))
    sparse = torch.optim.SparseAdam([model.token_embedding.weight], lr=cfg.LEARNING_RATE, betas=(0.9, 0.98))
    return [dense, sparse]


def contrastive_loss(model, images: torch.Tensor, tokens: torch.Tensor, negatives: torch.Tensor | None = None,
                     negative_images: torch.Tensor | None = None):
    """CLIP's symmetric cross-entropy over the batch's image-text cosine similarities (paper, fig. 3).

    `negatives` (tokens of K hard-negative captions per picture) join the texts each picture is scored
    against, as the batch rarely holds a caption differing in the shape alone (what the shape probe
    asks); `negative_images` join the pictures each caption is scored against."""
    image_features, text_features, logit_scale = model(images, tokens)
    logits = logit_scale * image_features @ text_features.t()
    target = torch.arange(len(images), device=images.device)
    text_logits = logits.t()
    if negative_images is not None and len(negative_images):
        twin_features = F.normalize(model.encode_image(negative_images), dim=-1)
        text_logits = torch.cat([text_logits, logit_scale * text_features @ twin_features.t()], dim=1)
    text_loss = F.cross_entropy(text_logits, target)
    if negatives is not None and len(negatives):
        negative_features = F.normalize(model.encode_text(negatives), dim=-1)
        logits = torch.cat([logits, logit_scale * image_features @ negative_features.t()], dim=1)
    return (F.cross_entropy(logits, target) + text_loss) / 2


def swap_one_shape(scene: dict, slot: int, count: int, rng: np.random.Generator) -> list[dict]:
    """Up to `count` copies of the scene with shape `slot` changed to another shape, skipping swaps
    that would show a held-out colour-shape pair (those stay unseen)."""
    colour, kind = scene["shapes"][slot]["colour"], scene["shapes"][slot]["shape"]
    others = [s for s in world.SHAPES if s != kind and (colour, s) not in world.HELD_OUT_PAIRS]
    swapped = []
    for other in rng.permutation(others)[:count]:
        shapes = [dict(shape) for shape in scene["shapes"]]
        shapes[slot]["shape"] = str(other)
        swapped.append({**scene, "shapes": shapes})
    return swapped


def shape_swapped_captions(scene: dict, count: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random caption of the scene and `count` captions of the same template with one shape changed."""
    templates = world.ONE_SHAPE_TEMPLATES if len(scene["shapes"]) == 1 else world.TWO_SHAPE_TEMPLATES
    template = templates[rng.integers(len(templates))]
    slot = int(rng.integers(len(scene["shapes"])))
    negatives = [world.caption_for(other, template) for other in swap_one_shape(scene, slot, count, rng)]
    negatives += negatives[:1] * (count - len(negatives))  # a held-out skip left too few: repeat one
    return world.caption_for(scene, template), negatives


def shape_twins(scenes: list[dict], seed: int) -> np.ndarray:
    """One picture per scene with one shape swapped (a "twin"): a caption must pick its picture over one
    differing in the shape alone (SHAPE_NEGATIVES' text->image counterpart, what makes the tower see shape)."""
    rng = np.random.default_rng([seed, 7])
    twins = []
    for scene in scenes:
        swapped = swap_one_shape(scene, int(rng.integers(len(scene["shapes"]))), 1, rng)
        twins.append(swapped[0] if swapped else scene)
    return world.render_scenes(twins)


def ship(model, config: dict, cfg, seconds: float) -> Path:
    """Write fp16 weights and the open_clip JSON config where generate.py finds the small model."""
    target = training.ship_folder(cfg)
    state = {k: v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.cpu()
             for k, v in model.state_dict().items()}
    torch.save(state, target / "clip.pt")
    (target / "clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"shipped {target / 'clip.pt'} ({(target / 'clip.pt').stat().st_size / 1e6:.1f} MB) after {seconds:.0f} s")
    return target / "clip.pt"


def plot_curve(path: Path, losses: list[float]) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("contrastive loss")
    ax.set_title("small CLIP on the shapes world")
    return save_figure(fig, path, dpi=100)


def check_settings(cfg) -> None:
    if cfg.TRAIN_SCENES < cfg.BATCH_SIZE:
        raise LabError(f"BATCH_SIZE={cfg.BATCH_SIZE} must be <= TRAIN_SCENES={cfg.TRAIN_SCENES}")
    if cfg.VISION_TOWER not in ("vit", "resnet"):
        raise LabError(f"VISION_TOWER={cfg.VISION_TOWER!r} is not one of 'vit', 'resnet'")
    if cfg.VISION_TOWER == "resnet" and (len(cfg.RESNET_LAYERS) != 4 or min(cfg.RESNET_LAYERS) < 1
                                         or world.IMAGE_SIZE % 32):
        raise LabError(f"RESNET_LAYERS={cfg.RESNET_LAYERS} must be four block counts >= 1 (the image side "
                       f"{world.IMAGE_SIZE} must be a multiple of 32, the ResNet's downsampling)")
    if cfg.VISION_TOWER == "vit" and cfg.VISION_WIDTH % 32:
        raise LabError(f"VISION_WIDTH={cfg.VISION_WIDTH} must be a multiple of 32 (the head width)")
    if cfg.TEXT_WIDTH % cfg.TEXT_HEADS:
        raise LabError(f"TEXT_WIDTH={cfg.TEXT_WIDTH} must be divisible by TEXT_HEADS={cfg.TEXT_HEADS}")
    if cfg.VISION_TOWER == "vit" and world.IMAGE_SIZE % cfg.PATCH_SIZE:
        raise LabError(f"PATCH_SIZE={cfg.PATCH_SIZE} must divide the image size {world.IMAGE_SIZE}")


def render_data(cfg) -> dict:
    started = time.time()
    train_scenes = world.make_scenes("train", 0, cfg.TRAIN_SCENES, seed=cfg.SEED)
    data = {"train_scenes": train_scenes, "train_images": world.render_scenes(train_scenes),
            "train_twins": shape_twins(train_scenes, cfg.SEED) if cfg.SHAPE_TWINS else None,
            "eval_scenes": world.make_scenes("test", 0, cfg.EVAL_SCENES, seed=cfg.SEED)}
    data["eval_images"] = world.render_scenes(data["eval_scenes"])
    print(f"rendered {len(train_scenes)} training and {len(data['eval_scenes'])} test scenes in "
          f"{time.time() - started:.1f} s")
    return data


def train(run, model, tokenizer, optimizers, ckpt, data, config, device) -> tuple[dict, bool]:
    """The contrastive training loop, saving every CHECKPOINT_EVERY steps; returns (progress, interrupted)."""
    cfg = run.cfg
    state = ckpt.state or {}
    progress = {"losses": state.get("losses", []), "seconds": state.get("seconds", 0.0)}
    train_scenes, train_images, train_twins = data["train_scenes"], data["train_images"], data["train_twins"]

    def noisy_input(pictures: np.ndarray) -> torch.Tensor:
        """Training pictures as model input, with the pixel noise that makes CLIP robust for the loop."""
        x = to_model_input(pictures, device)
        return x + cfg.NOISE_STD / 0.5 * torch.randn_like(x)

    def save(done: int, seconds: float) -> None:
        save_checkpoint(ckpt.path, {"model": model.state_dict(), "optimizer": [o.state_dict() for o in optimizers],
                                    "losses": progress["losses"], "config": config, "seconds": seconds,
                                    **ckpt.meta(done)})

    def one_step(step: int, bar) -> None:
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, cfg)
        # Each step draws from its own seeded generator, so a resumed run sees the same batches and captions.
        rng = np.random.default_rng([cfg.SEED, step])
        batch = rng.choice(len(train_scenes), size=cfg.BATCH_SIZE, replace=False)
        images = noisy_input(train_images[batch])
        twins = noisy_input(train_twins[batch]) if train_twins is not None else None
        if cfg.SHAPE_NEGATIVES > 0:
            pairs = [shape_swapped_captions(train_scenes[i], cfg.SHAPE_NEGATIVES, rng) for i in batch]
            tokens = tokenizer([caption for caption, _ in pairs]).to(device)
            negatives = tokenizer([text for _, texts in pairs for text in texts]).to(device)
            loss = contrastive_loss(model, images, tokens, negatives, twins)
        else:
            tokens = tokenizer([world.random_caption(train_scenes[i], rng) for i in batch]).to(device)
            loss = contrastive_loss(model, images, tokens, negative_images=twins)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        with torch.no_grad():  # CLIP clips the learned temperature at 100 (paper, section 2.5)
            model.logit_scale.clamp_(0, math.log(100))
        progress["losses"].append(float(loss.detach()))
        bar.set_postfix(loss=f"{progress['losses'][-1]:.3f}", temp=f"{model.logit_scale.exp().item():.0f}")
        run.log_scalars(step, loss=progress["losses"][-1], lr=learning_rate(step, cfg),
                        temperature=model.logit_scale.exp().item())

    model.train()
    return progress, training.run_steps(cfg, ckpt, progress, "CLIP", one_step, save)


def report(run, model, tokenizer, config, progress, before, data, device, interrupted) -> dict:
    losses = progress["losses"]
    metrics = evaluate(model, tokenizer, data["eval_scenes"], data["eval_images"], device)
    metrics.update(train_seconds=round(progress["seconds"], 1), steps=progress["steps"],
                   final_loss=float(np.mean(losses[-20:])), parameters_millions=parameter_count(model) / 1e6,
                   chance_top1_of_100=0.01)
    if before is not None:
        metrics.update({f"untrained_{k}": v for k, v in before.items() if isinstance(v, float)})
    run.add_artifact(plot_curve(run.path("clip_loss.png"), losses), "small CLIP contrastive loss")
    return training.finish(run, metrics, interrupted, lambda: ship(model, config, run.cfg, progress["seconds"]))


@exit_on_lab_error
def main(argv=None):
    run, device = training.start(globals(), argv, check_settings)
    cfg = run.cfg
    config = clip_config(cfg)
    model = build_clip(config).to(device)
    tokenizer = make_tokenizer(cfg.CONTEXT_LENGTH)
    optimizers = make_optimizers(model, cfg)
    print(f"small CLIP: {parameter_count(model) / 1e6:.2f} M parameters")
    data = render_data(cfg)
    ckpt = resume(run, "clip.pt", architecture=ARCHITECTURE + ["TRAIN_SCENES", "SEED", "SHAPE_TWINS"],
                  steps=cfg.STEPS, map_location=device)
    if ckpt.state is not None:
        model.load_state_dict(ckpt.state["model"])
        for optimizer, state in zip(optimizers, ckpt.state["optimizer"], strict=True):
            optimizer.load_state_dict(state)
    before = (evaluate(model, tokenizer, data["eval_scenes"], data["eval_images"], device)
              if ckpt.step == 0 and cfg.EVAL_UNTRAINED else None)
    progress, interrupted = train(run, model, tokenizer, optimizers, ckpt, data, config, device)
    return report(run, model, tokenizer, config, progress, before, data, device, interrupted)


if __name__ == "__main__":
    main()

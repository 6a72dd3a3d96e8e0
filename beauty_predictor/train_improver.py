"""Train the improver that makes photos more predictable. Run: python -m beauty_predictor.train_improver [--quick] [--set VARIANT=residual]

Article 001: loss = k1*MAE(X,Y) + k2*MAE(Y,Z), X the photos, Y the improver's output, Z the picture
rebuilt from centres predicted on Y; k1 = k2 = 0.5; a hand-written tf.GradientTape loop, the
predictor frozen. Its one reported result, "Похоже на сглаживание" (it looks like smoothing), is
measured here (beauty_predictor.metrics). VARIANT (beauty_predictor.settings): article (the
article's plain improver), residual (identity start, beyond the article), contrast (the second
experiment, maximise MAE(Y,Z_bad)/MAE(Y,Z_good)), deep (a U-Net). Outputs: improver_<variant>/.
"""

from __future__ import annotations

from beauty_predictor import claims
from beauty_predictor import common as bc
from beauty_predictor import metrics as bmetrics
from beauty_predictor import model as bm
from beauty_predictor.improve import measure, predict_in_chunks, rebuild_in_chunks, term_names, train_improver
from beauty_predictor.saving import resume_training, save_checkpoint_file, save_training
from beauty_predictor.settings import ImproverSettings, check_variant, settings_dict
from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard
from lab.paths import REPO_ROOT

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VARIANT = "article"          # "article" (plain, from random weights), "residual", "contrast" or "deep"
K1 = 0.5                     # weight of MAE(X,Y), likeness to the original (article) {>= 0}
K2 = 0.5                     # weight of MAE(Y,Z), predictability (article) {>= 0}
PHOTOS_DIR = "data/photos"   # a folder of photos (default: the bundled ones, exported on demand) {nonempty}
HELD_OUT_PHOTOS = ["chelsea", "china", "coffee"]  # held out by photo; if absent, every 5th photo
MAX_SIDE = 512               # larger photos are shrunk so their longer side is this many pixels {>= 128}
WIDTH = 32                   # channels of the improver's convolutions {> 0}
DEPTH = 4                    # 3x3 convolutions before the output layer ("deep" is a U-Net of fixed depth) {> 0}
CROP = 128                   # side of the training crops (a multiple of 32: 16 cells each) {>= 64}
STEPS = 1500                 # optimisation steps {> 0}
BATCH_SIZE = 8               # crops per step {> 0}
LEARNING_RATE = 1e-3         # Adam's step size {> 0}
CHECKPOINT_EVERY = 100       # save the improver every this many steps (article: save_period) {> 0}
EVAL_CROPS = 64              # fixed held-out 128x128 crops for the figures in run.json {> 0}
PANEL_PHOTOS = 3             # held-out photos shown before/after {> 0}
PANEL_SIZE = 256             # side of the central square of each photo in the panels {>= 64}
SEED = 0                     # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"              # "auto", "cpu" or "gpu" (TensorFlow)
SHIP_FILE = ""               # after a complete run, also write the improver's weights and settings (no Adam) here
CLAIM_IMPROVER_FILE = ""     # the improver whose output the smoothing claim measures; "": this run's
# The quick profile's 60 steps wash the photos out; its smoothing claim measures the full profile's
# improver, shipped in results/ (results/README.md).
QUICK = {"STEPS": 60, "BATCH_SIZE": 4, "WIDTH": 16, "DEPTH": 3, "LEARNING_RATE": 3e-3, "CHECKPOINT_EVERY": 20,
         "EVAL_CROPS": 16, "PANEL_PHOTOS": 2, "PANEL_SIZE": 192,
         "CLAIM_IMPROVER_FILE": "beauty_predictor/results/full_improver_article.npz"}
DRY_RUN = {"STEPS": 2, "BATCH_SIZE": 2, "EVAL_CROPS": 2, "PANEL_PHOTOS": 1, "PANEL_SIZE": 128, "CHECKPOINT_EVERY": 1}
# -----------------------------------------------------------------------------

# Constants that must match a checkpoint to resume it: the network's shape and the loss it minimises.
MUST_MATCH = ["VARIANT", "WIDTH", "DEPTH", "K1", "K2"]


def folder_name(cfg) -> str:
    """outputs/beauty_predictor/improver_<variant>/: checked first, so a wrong name makes no folder."""
    check_variant(cfg.VARIANT)
    return f"improver_{cfg.VARIANT}"


@exit_on_lab_error
def main(argv=None):
    run = start_run(bc.EXPERIMENT, globals(), argv, framework="tensorflow", subdir=folder_name, checkpoints=True)
    cfg = run.cfg
    if cfg.CROP % bm.CELL:
        raise LabError(f"CROP must be a multiple of {bm.CELL}, got {cfg.CROP}")
    settings = ImproverSettings(variant=cfg.VARIANT, width=cfg.WIDTH, depth=cfg.DEPTH)
    predictor = bm.load_predictor(run.checkpoint_path(bc.PREDICTOR_FILE))
    bad_predictor = None if settings.loss != "contrast" else bm.load_predictor(
        run.checkpoint_path(bc.BAD_PREDICTOR_FILE))
    train_photos, held_photos = bc.load_split(cfg)
    improver, optimizer, ckpt, history, rng = resume_improver(run, cfg, settings, train_photos + held_photos)
    step, interrupted = train(run, cfg, settings, improver, optimizer, predictor, bad_predictor, train_photos,
                              ckpt, history, rng)
    metrics = report(run, cfg, settings, improver, predictor, bad_predictor, held_photos, history, step)
    if cfg.SHIP_FILE and not interrupted:
        path = save_checkpoint_file(REPO_ROOT / cfg.SHIP_FILE, improver, keep_previous=False, step=step,
                                    improver=settings_dict(settings), profile=run.profile, constants=run.constants)
        print(f"shipped the improver's weights and settings to {path} ({path.stat().st_size / 1e3:.0f} kB)")
    run.finish(metrics, status="interrupted" if interrupted else "complete")


def resume_improver(run, cfg, settings: ImproverSettings, photos):
    """A fresh improver, or the checkpoint's (refused if made with other settings, data or more steps)."""
    improver = bm.build_improver(settings)
    ckpt, optimizer, rng = resume_training(run, bc.improver_file(cfg.VARIANT), improver, photos,
                                           architecture=MUST_MATCH, steps=cfg.STEPS,
                                           learning_rate=cfg.LEARNING_RATE, seed=run.seed)
    history: dict[str, list[float]] = {"loss": [], "first": [], "second": []}
    if ckpt.state is not None:
        history = {key: list(ckpt.state.get("history", {}).get(key, []))[:ckpt.step] for key in history}
    print(f"improver ({cfg.VARIANT}, {settings.kind}): {improver.count_params():,} parameters")
    return improver, optimizer, ckpt, history, rng


def train(run, cfg, settings, improver, optimizer, predictor, bad_predictor, photos, ckpt, history, rng):
    """The article's hand-written loop, a checkpoint every CHECKPOINT_EVERY steps and at the end."""
    first_name, second_name = term_names(settings.loss)

    def save(done: int) -> None:
        save_training(ckpt, improver, optimizer, rng, done, improver=settings_dict(settings), history=history)

    def on_step(done, loss, first, second):
        for key, value in (("loss", loss), ("first", first), ("second", second)):
            history[key].append(value)
        run.log_scalars(done, loss=loss, **{first_name: first, second_name: second})
        if done % cfg.CHECKPOINT_EVERY == 0:
            save(done)

    if ckpt.finished:
        print(f"{ckpt.path} already has {ckpt.step} steps of {cfg.STEPS}: measuring only")
        return ckpt.step, False
    with InterruptGuard() as guard:
        step = train_improver(improver, predictor, bad_predictor, optimizer, photos, loss_name=settings.loss,
                              k1=cfg.K1, k2=cfg.K2, steps=cfg.STEPS, start=ckpt.step, batch_size=cfg.BATCH_SIZE,
                              crop=cfg.CROP, rng=rng, desc=f"improver ({cfg.VARIANT})", on_step=on_step, guard=guard)
    if step % cfg.CHECKPOINT_EVERY:
        save(step)
    return step, guard.requested


def report(run, cfg, settings, improver, predictor, bad_predictor, held_photos, history, step) -> dict:
    """Held-out figures, the smoothing measures and verdict, claims, panels and loss curves."""
    x = bc.held_out_crops(held_photos, cfg.EVAL_CROPS)  # the same crops in every variant and run
    y = predict_in_chunks(improver, x)
    metrics = {"steps": step, **measure(x, y, predictor, bad_predictor)}
    print("held-out: MAE(X,Y) {mae_x_y:.4f}, MAE(X,Z_X) {mae_x_zx:.4f} -> MAE(Y,Z_Y) {mae_y_zy:.4f} "
          "(predictability gain {predictability_gain:.1%})".format(**metrics))
    smoothing = bmetrics.smoothing_report(x, y)
    metrics.update(smoothing)
    print(bmetrics.smoothing_sentence(smoothing))
    panels(run, cfg, improver, predictor, held_photos, smoothing["best_blur_sigma"], f"improver '{cfg.VARIANT}'")
    if cfg.VARIANT == "article":
        smoothing_claim(run, cfg, improver, predictor, held_photos, x, smoothing, step, metrics)
        run.add_claim(claims.MORE_PREDICTABLE,
                      f"MAE(Y,Z_Y) {metrics['mae_y_zy']:.4f} vs MAE(X,Z_X) {metrics['mae_x_zx']:.4f} "
                      f"({metrics['predictability_gain']:+.1%}) at MAE(X,Y) {metrics['mae_x_y']:.4f}",
                      metrics["predictability_gain"] > 0, claims.FULL_PROFILE[claims.MORE_PREDICTABLE])
    elif settings.loss != "article":
        run.add_claim(claims.CONTRAST, f"ratio {metrics['ratio_bad_good_x']:.3f} on X -> "
                      f"{metrics['ratio_bad_good_y']:.3f} on Y, MAE(X,Y) {metrics['mae_x_y']:.3f}",
                      metrics["ratio_bad_good_y"] > metrics["ratio_bad_good_x"], claims.FULL_PROFILE[claims.CONTRAST])
    # The residual and deep variants are the project's comparisons, not the article's improver: their
    # figures are in run.json, not verdicts (the identity-start one's gain sits at 0 +- rounding).
    loss_curves(run, cfg, settings, history)
    return metrics


def claimed_improver(cfg, improver, step):
    """The improver the smoothing claim measures, and which one it is: CLAIM_IMPROVER_FILE's, else this run's."""
    path = REPO_ROOT / cfg.CLAIM_IMPROVER_FILE
    if not cfg.CLAIM_IMPROVER_FILE or cfg.VARIANT != "article":
        return improver, f"this run's improver ({step} steps)"
    if not path.is_file():
        print(f"notice: no improver at CLAIM_IMPROVER_FILE={path} (results/README.md says how it is made); "
              "the smoothing claim measures this run's")
        return improver, f"this run's improver ({step} steps; {cfg.CLAIM_IMPROVER_FILE} absent)"
    claimed, state = bm.load_improver(path, "article")
    return claimed, (f"the {state.get('profile')} profile's improver ({state['step']} steps, "
                     f"shipped in {cfg.CLAIM_IMPROVER_FILE})")


def smoothing_claim(run, cfg, improver, predictor, held_photos, x, smoothing, step, metrics) -> None:
    """The article's "looks like smoothing" on CLAIM_IMPROVER_FILE's improver (else this run's), with its panels."""
    claimed, which = claimed_improver(cfg, improver, step)
    if claimed is not improver:
        smoothing = bmetrics.smoothing_report(x, predict_in_chunks(claimed, x))
        metrics["claimed_improver"] = {"improver": which, **smoothing}
        panels(run, cfg, claimed, predictor, held_photos, smoothing["best_blur_sigma"], which, "claim_panels.png")
    sentence = f"{which}: {bmetrics.smoothing_sentence(smoothing)}"
    if claimed is not improver:
        print(sentence)
    run.add_claim(claims.SMOOTHING, sentence, smoothing["smoothing_reproduced"], claims.FULL_PROFILE[claims.SMOOTHING])


def panels(run, cfg, improver, predictor, held_photos, sigma: float, label: str, name: str = "panels.png") -> None:
    """Before / after / the best Gaussian blur of X / rebuilt / per-cell error maps on held-out photos."""
    views = bc.held_out_views(held_photos, cfg.PANEL_PHOTOS, cfg.PANEL_SIZE)
    improved = predict_in_chunks(improver, views)
    blurred = bmetrics.blur(views, sigma)
    z_views, z_improved = rebuild_in_chunks(predictor, views), rebuild_in_chunks(predictor, improved)
    err_views, err_improved = bm.cell_errors(views, z_views), bm.cell_errors(improved, z_improved)
    rows = [[views[i], improved[i], blurred[i], z_improved[i], err_views[i], err_improved[i]]
            for i in range(len(views))]
    note = f"mean cell error {err_views.mean():.3f} -> {err_improved.mean():.3f}"
    bc.image_grid(run.path(name), rows, [p.name for p in held_photos[:len(views)]],
                  ["X (before)", "Y (after)", f"Gaussian blur of X, σ={sigma:g}", "Z_Y rebuilt from Y",
                   "cell error X", "cell error Y"], title=f"{label} on held-out photos; {note}", cmap_cols=(4, 5))
    run.add_artifact(run.path(name), f"{label}: before, after, the closest Gaussian blur of X, Z rebuilt from Y, "
                     "cell-error heat maps")


def loss_curves(run, cfg, settings, history) -> None:
    steps_axis = list(range(1, len(history["loss"]) + 1))
    if settings.loss == "contrast":
        curves = {"MAE(Y, Z_bad)": (steps_axis, bc.smooth(history["first"])),
                  "MAE(Y, Z_good)": (steps_axis, bc.smooth(history["second"]))}
    else:
        curves = {"MAE(X, Y) fidelity": (steps_axis, bc.smooth(history["first"])),
                  "MAE(Y, Z) predictability": (steps_axis, bc.smooth(history["second"])),
                  f"loss {cfg.K1}*MAE(X,Y) + {cfg.K2}*MAE(Y,Z)": (steps_axis, bc.smooth(history["loss"]))}
    bc.curves_plot(run.path("loss_terms.png"), curves, "step", "training-batch value (smoothed over 10 steps)",
                   f"improver '{cfg.VARIANT}': both loss terms")
    run.add_artifact(run.path("loss_terms.png"), f"{cfg.VARIANT}: both loss terms over training")


if __name__ == "__main__":
    main()

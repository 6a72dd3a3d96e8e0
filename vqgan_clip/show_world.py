"""A grid of training scenes of the shapes world with their captions. Run: python -m vqgan_clip.show_world

Writes outputs/vqgan_clip/show_world/scenes.png: what the small VQGAN and CLIP were trained on.
"""

from __future__ import annotations

from lab import exit_on_lab_error, start_run
from vqgan_clip import shapes_world as world
from vqgan_clip.figures import image_grid

# -----------------------------------------------------------------------------
# Constants.
COUNT = 16                 # scenes shown {> 0}
SPLIT = "train"            # "train", "test" or "val" (held-out colour-shape pairs appear only outside train)
SEED = 0                   # the world's seed (the trainers' SEED)
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run("vqgan_clip", globals(), argv)
    cfg = run.cfg
    scenes = world.make_scenes(cfg.SPLIT, 0, cfg.COUNT, seed=cfg.SEED)
    target = image_grid(run.path("scenes.png"), list(world.render_scenes(scenes)), [s["caption"] for s in scenes],
                        columns=4, cell=(3.0, 3.25))
    run.add_artifact(target, f"{cfg.COUNT} {cfg.SPLIT} scenes of the shapes world with their captions")
    run.finish({"scenes": len(scenes)})


if __name__ == "__main__":
    main()

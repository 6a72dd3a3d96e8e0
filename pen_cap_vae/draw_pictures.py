"""Draw the three pictures of the "date" (stand-ins: the article's photographs are not published);
pictures already in the folder are kept. Run: python -m pen_cap_vae.draw_pictures [--set OVERWRITE=true]"""

from __future__ import annotations

from PIL import Image

from lab import exit_on_lab_error, start_run
from lab.images import read_rgb
from pen_cap_vae.pictures import PICTURE_NAMES, draw_picture, list_pictures, pictures_dir

# -----------------------------------------------------------------------------
# Constants. The article's picture size is the default; edit here or use --set.
PICTURES_DIR = ""     # where the pictures go; "" means data/pen_cap/ in the repository
HEIGHT = 360          # picture height in pixels (article: 360) {>= 10}
WIDTH = 640           # picture width in pixels (article: 640) {>= 10}
SUPERSAMPLE = 2       # paint at this multiple of the size, then shrink: anti-aliased edges
OVERWRITE = False     # repaint pictures that already exist
JPEG_QUALITY = 92     # quality of the written JPEG files
SEED = 0              # the table's grain is drawn from this seed (the pictures do not depend on --set SEED)
DEVICE = "cpu"        # painting needs no accelerator
QUICK = {}            # the pictures are always article-sized; the training resizes them
# -----------------------------------------------------------------------------

@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv)
    cfg = run.cfg
    folder = pictures_dir(cfg.PICTURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    existing = list_pictures(folder)
    written = []
    if existing and not cfg.OVERWRITE:
        print(f"{folder} already holds {len(existing)} picture(s); kept (use --set OVERWRITE=true to repaint)")
    else:
        for index, name in enumerate(PICTURE_NAMES):
            draw_picture(index, cfg.HEIGHT, cfg.WIDTH, cfg.SUPERSAMPLE).save(folder / name, quality=cfg.JPEG_QUALITY)
            written.append(name)
        print(f"painted {', '.join(written)} into {folder}")
    pictures = list_pictures(folder)
    sheet = Image.new("RGB", (cfg.WIDTH // 2 * len(pictures), cfg.HEIGHT // 2), "white")
    for i, path in enumerate(pictures):
        sheet.paste(read_rgb(path, "picture").resize((cfg.WIDTH // 2, cfg.HEIGHT // 2)), (i * cfg.WIDTH // 2, 0))
    sheet.save(run.path("pictures.jpg"), quality=90)
    run.add_artifact(run.path("pictures.jpg"), f"the {len(pictures)} training pictures in {folder}")
    run.finish({"pictures": len(pictures), "painted": len(written)})


if __name__ == "__main__":
    main()

"""The steps ./run.sh runs for pen_cap_vae, in order (lab.pipeline appends --quick unless --full)."""

SCRIPTS = [["draw_pictures"], ["train"], ["test"], ["source_maker"]]

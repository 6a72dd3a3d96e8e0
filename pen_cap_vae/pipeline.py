"""The steps ./run.sh runs for pen_cap_vae, in order (lab.pipeline appends --quick unless --full)."""

SCRIPTS = [["draw_pictures"], ["train"], ["test"], ["seeds"], ["source_maker"]]
QUICK_SECONDS = 300  # its wall time on 2 cores, beside another (lab.pipeline.start_order)

"""The steps ./run.sh runs for pen_cap_vae, in order (lab.pipeline appends --quick unless --full);
CLAIMS: what the runs check, with the full profile's figures, for the gallery."""

from pen_cap_vae.claims import FULL_PROFILE

SCRIPTS = [["draw_pictures"], ["train"], ["test"], ["seeds"], ["source_maker"]]
CLAIMS = list(FULL_PROFILE.items())
QUICK_SECONDS = 290  # its wall time on 2 cores, beside another (lab.pipeline.start_order)

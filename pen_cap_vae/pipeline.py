"""The steps ./run.sh runs for pen_cap_vae, in order (lab.pipeline appends --quick unless --full)."""

STEPS = [
    ["draw_pictures"],
    ["train"],
    ["test"],
    ["source_maker"],
]

"""VQGAN + CLIP (article 002, Russian): CLIP steers a VQGAN latent towards a text prompt.

vqgan.py (the taming-layout VQGAN), clip_model.py (CLIP through open_clip, local weights),
generate.py (the loop), bench.py (speed and memory), convert_checkpoint.py (one-off conversions).
"""

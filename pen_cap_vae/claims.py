"""The article's claims that pen_cap_vae.seeds judges over seeds, with the full profile's figures (one seed:
results/); without torch, so that lab's gallery can list them for a run that did not make them."""

RECONSTRUCTION_GOAL_DB = 28.0  # the bar for "a person sees the pen and the cap" (worst picture's PSNR)
CLAIM_VAE = "the sigma-VAE reconstructs the date's pictures (sharp enough to see the pen and the cap), for most seeds"
CLAIM_DATE = ("the date has an approach (frames like picture 1) and a plateau (like the last picture), "
              "for most seeds")
CLAIM_PULSES = ("the culmination has three pulses (the frames break away from the last picture three times), "
                "for most seeds")
FULL_PROFILE = {
    CLAIM_VAE: "one seed: 29.8 dB at worst (3000 steps at 360x640, float32, H200); 28.3 dB with bf16 autocast "
               "on the CPU (README)",
    CLAIM_DATE: "one seed: start 1 -> approach 1 -> plateau 3 -> culmination 1 (0.16/-0.01/-0.06; 0.06/0.15/0.35; "
                "0.12/0.07/0.05), the whole 5300-iteration date at 360x640 (README)",
    CLAIM_PULSES: "one seed: drops 0.39, 0.37, 0.52 below the plateau's mean (needed > 0.56: not visible), README",
}

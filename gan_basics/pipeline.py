"""The scripts ./run.sh runs for gan_basics, in order (lab.pipeline appends --quick unless --full)."""

SCRIPTS = [["evaluator"], ["gan"], ["gan", "--set", "DIVERSITY_PENALTY=true"], ["cgan"], ["autoencoder"], ["vae"],
           ["adversarial"]]
QUICK_SECONDS = 322  # its wall time on 2 cores, beside another (lab.pipeline.start_order)

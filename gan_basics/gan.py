"""A DCGAN on digits or faces, scored every epoch by the judge. Run: python -m gan_basics.gan [--quick]

Article 004 ("Když stojí AI proti AI"): a generator makes images from noise, a discriminator tells
them from real ones. Mode collapse is scored by pixel diversity and the judge's label entropy, with
the article's remedy as DIVERSITY_PENALTY (EBGAN's pulling-away term); "when to stop" by the judge's
Fréchet distance every epoch, keeping the best generator. Outputs go to outputs/gan_basics/gan_<dataset>
[_diversity]/; rerunning resumes, --fresh starts over. CONDITIONAL = True is the conditional GAN (cgan.py).
"""

from __future__ import annotations

import torch

from gan_basics import gan_training as training
from gan_basics.data import load_dataset
from gan_basics.judge import build_judge
from lab import exit_on_lab_error, start_run

# -----------------------------------------------------------------------------
# Constants. The article gives no numbers; the players follow DCGAN (Radford et al. 2015), the
# optimiser and the averaging are measured in README.md, the sizes fit a 2-core CPU.
CONDITIONAL = False        # the article's conditional GAN: a digit label beside z and beside the image
DATASET = "digits"         # "digits" (sklearn, 8x8) or "faces" (skimage lfw_subset, 25x25; not conditional) {nonempty}
EPOCHS = 60                # passes over the training images {> 0}
BATCH_SIZE = 32            # images per step (DCGAN: 128; our data sets hold 80 to 1438 images) {> 0}
LATENT_DIM = 32            # length of the noise vector z (DCGAN: 100) {> 0}
G_WIDTH = 32               # channels of the generator's last hidden layer {> 0}
D_WIDTH = 32               # channels of the discriminator's first layer {> 0}
D_DROPOUT = 0.3            # dropout in the discriminator against memorising the training images {>= 0, < 1}
LEARNING_RATE = 4e-3       # Adam's step size for both players (DCGAN: 2e-4, too slow for the quick profile) {> 0}
BETA1 = 0.0                # Adam's first-moment decay (DCGAN 0.5; StyleGAN/BigGAN 0) {>= 0, < 1}
BETA2 = 0.99               # Adam's second-moment decay (StyleGAN/BigGAN 0.99) {>= 0, < 1}
REAL_TARGET = 0.9          # D's target for real images: 0.9 is one-sided label smoothing (Salimans 2016) {> 0, <= 1}
LR_DECAY = True            # decay both step sizes linearly to 0 over EPOCHS (settles the game late on)
G_EMA = 0.98               # decay of the generator's weight average, the one sampled and scored (0: none) {>= 0, < 1}
DIVERSITY_PENALTY = False  # the article's remedy for mode collapse: penalise too-similar outputs
DIVERSITY_WEIGHT = 1.0     # weight of the pulling-away term in the generator's loss (EBGAN: 0.1) {>= 0}
CHECKPOINT_EVERY = 1       # epochs between checkpoints (and at the end, and on Ctrl+C) {> 0}
GRID_SIDE = 8              # the fixed-noise grid is GRID_SIDE x GRID_SIDE samples (cGAN: 10 x 10) {> 0}
GIF_FPS = 6                # frames per second of the grid GIF {> 0}
TORCH_THREADS = 1          # CPU threads; one is fastest for nets this small on a shared 2-core CPU {>= 0}
SEED = 0                   # -1 draws a random seed and prints it {-1 or >= 0}
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda" {nonempty}
QUICK = {"EPOCHS": 36}         # the cGAN needs 36 to clear its 90 % bar by more than its spread over seeds (README.md)
DRY_RUN = {"EPOCHS": 2, "GRID_SIDE": 4}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    run = start_run("gan_basics", globals(), argv, framework="torch", subdir=training.output_folder, checkpoints=True)
    data, judge = load_dataset(run.cfg.DATASET), build_judge(run.cfg.DATASET)
    players = training.build_game(run.cfg, data, run.device)
    state = training.resume_game(run, players, data, training.output_folder(run.cfg))
    probes = training.Probes.draw(run.cfg, players.settings, judge.reference_size, run.seed)
    samples_dir = run.path("samples", "x").parent
    status = training.train(run, players, state, data, judge, probes, samples_dir)
    training.report(run, state, judge, probes, samples_dir, status, torch.device(run.device))


if __name__ == "__main__":
    main()

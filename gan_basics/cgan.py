"""A conditional GAN on digits: ask for a digit, get that digit. Run: python -m gan_basics.cgan [--quick]

Article 004 ("Co přidat další rozměr do vstupů, třeba s Conditional GAN"): a plain GAN gives no
control over what comes out; mixing a category into the inputs of both players (Mirza & Osindero
2014) lets one ask for a particular kind of image. Here the category is the digit: the generator
gets a one-hot label beside its noise, the discriminator one constant plane per class beside the
image, so it can reject a well-drawn digit of the wrong class.

The judge (evaluator.py, a classifier trained only on real digits) reads every conditional sample;
its agreement with the digit asked for is the label accuracy, reported per digit and overall
(chance: 10 %). Outputs (outputs/gan_basics/cgan/): grids with one row per digit 0-9 each epoch
(samples/epoch_0001.png ...), their GIF, best.png, samples_best.npy with samples_best_labels.npy,
accuracy_per_digit.png, frechet.png, losses.png, run.json.
"""

from __future__ import annotations

from gan_basics.gan import output_name, resolved_constants, train_and_report
from lab import LabError, exit_on_lab_error, start_run

# -----------------------------------------------------------------------------
# Constants. As gan.py (DCGAN's optimiser, sizes for a 2-core CPU); digits are the only
# labelled data set here.
DATASET = "digits"         # must be "digits": the faces carry no labels
EPOCHS = 150               # passes over the 1437 training digits
BATCH_SIZE = 32            # images per step
LATENT_DIM = 32            # length of the noise vector z
G_WIDTH = 32               # channels of the generator's last hidden layer
D_WIDTH = 32               # channels of the discriminator's first layer
D_DROPOUT = 0.0            # dropout in the discriminator (the labels already keep it busy)
LEARNING_RATE = 2e-3       # Adam's step size for both players
BETA1 = 0.5                # Adam's first-moment decay (DCGAN)
REAL_TARGET = 1.0          # D's target for real images (0.9: one-sided label smoothing, Salimans 2016)
LR_DECAY = False           # decay both step sizes linearly to 0 over EPOCHS (not needed here: stable)
DIVERSITY_PENALTY = False  # the pulling-away term of gan.py, available here too
DIVERSITY_WEIGHT = 1.0     # its weight in the generator's loss
GRID_SIDE = 10             # unused by the conditional grid (10 digits x 10 styles); kept for gan.py's code
GIF_FPS = 6                # frames per second of the grid GIF
RESUME_FROM = ""           # a checkpoint (.pt) to continue from instead of this run's own
TORCH_THREADS = 1          # CPU threads; one is fastest for nets this small on a shared 2-core CPU
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"EPOCHS": 12}
DRY_RUN = {"EPOCHS": 2}
# -----------------------------------------------------------------------------


@exit_on_lab_error
def main(argv=None):
    constants = resolved_constants(globals(), argv)
    name = output_name(constants, conditional=True)
    if constants["DATASET"] != "digits":
        raise LabError(f"a conditional GAN needs labels; {constants['DATASET']!r} has none. Use DATASET=digits")
    run = start_run("gan_basics", globals(), argv, framework="torch", subdir=name)
    train_and_report(run, conditional=True)


if __name__ == "__main__":
    main()

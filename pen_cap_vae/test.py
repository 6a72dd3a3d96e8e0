"""The date of the pen and its cap: the recoder animates the VAE's latent code (article 000, test.py).

Run: python -m pen_cap_vae.test [--quick] [--set CYCLES=2] [--fresh]   (after python -m pen_cap_vae.train)

Every iteration the recoder maps the current code x1 to y = tanh(recoder(x1)) * max|code| * 1.1 and
is trained with the article's iteration-dependent loss: stay correlated with x1 (less so on the
plateau and at the three culmination pulses), move towards picture 1's code for the first 1060
iterations of each 5300-iteration cycle and towards the last picture's code after; then
x1 <- 0.5 x1 + 0.5 y. Each iteration's x1 is decoded to a frame. Twenty hidden units are recorded
as an "EEG"; every 1000 iterations their traces and smoothed DCT log spectra are plotted, named as
in the article. Beyond the article: the date made visible (correlation of x1 with picture 1's and
the last picture's codes over the cycle, with s(t) underneath) and the EEG's 1/f^alpha exponent.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lab import LabError, exit_on_lab_error, start_run  # noqa: E402
from lab.checkpoint import (  # noqa: E402
    InterruptGuard,
    check_compatible,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from lab.constants import collect_constants  # noqa: E402
from lab.paths import outputs_root  # noqa: E402
from lab.plots import save_figure  # noqa: E402
from pen_cap_vae import train  # noqa: E402
from pen_cap_vae.data import load_pictures, to_uint8_image  # noqa: E402
from pen_cap_vae.eeg import EEGRecorder, draw_probes, log_spectrum, smooth_spectrum, spectral_exponent  # noqa: E402
from pen_cap_vae.model import Recoder, corrloss, date_schedule, recoder_loss  # noqa: E402

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VAE_CHECKPOINT = ""        # the trained VAE; "" = train.py's checkpoint of this profile. A bare state_dict
                           # (the article's own) is loaded into the article's 20-layer 360x640 model
PICTURES_DIR = ""          # the pictures to encode ("" = data/pen_cap/); first and last are the date's ends
CYCLES = 1                 # how many 5300-iteration dates to run
CYCLE_LENGTH = 5300        # iterations of one date (article: i % 5300)
SWITCH_ITERATION = 1060    # from here on in each cycle the target is the last picture's code (article: 1060)
RECODER_LAYERS = 20        # gated layers of the recoder (article: 20)
RECODER_CHANNELS = 64      # their width (article: 64)
LEARNING_RATE = 1e-4       # Adam's step size for the recoder (not in the article: our choice)
EEG_PROBES = 20            # recorded hidden units (article: 20)
EEG_PROBE_CHANNELS = 16    # probes are drawn from the first 16 channels (article: q < 16)
EEG_MEAN_DECAY = 0.99      # running mean of each probe (article: 0.99)
EEG_VAR_DECAY = 0.9        # running variance of each probe (article: 0.9)
EEG_WINDOW = 1000          # iterations between spectra and plots (article: 1000)
SMOOTH_WIDTH = 100         # width of the triangular window over the spectrum (article: 100)
SMOOTH_POSITIONS = 900     # positions of that window (article: 900)
EEG_PLOT_DPI = 120         # resolution of the 20x6-inch EEG plots (article: 120)
SAVE_FRAMES = True         # decode and write frames/000000.jpg ... every iteration
SAVE_EEG_PLOTS = True      # write the encephalograms*/ plots every EEG_WINDOW iterations
FRAME_QUALITY = 90         # JPEG quality of the frames
CHECKPOINT_EVERY = 500     # iterations between checkpoints of the recoder (Ctrl+C also saves)
TORCH_THREADS = 0          # CPU threads for torch (0: torch's default); 1 is far faster on a busy machine
SEED = 0                   # -1 draws a random seed and prints it
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"TORCH_THREADS": 1, "CYCLE_LENGTH": 600, "SWITCH_ITERATION": 120, "RECODER_CHANNELS": 32, "LEARNING_RATE": 3e-4,
         "EEG_WINDOW": 200, "SMOOTH_WIDTH": 20, "SMOOTH_POSITIONS": 180, "EEG_PLOT_DPI": 50, "CHECKPOINT_EVERY": 200}
DRY_RUN = {"CYCLE_LENGTH": 40, "SWITCH_ITERATION": 8, "RECODER_LAYERS": 3, "RECODER_CHANNELS": 8,
           "EEG_PROBE_CHANNELS": 8, "EEG_WINDOW": 20, "SMOOTH_WIDTH": 4, "SMOOTH_POSITIONS": 16, "EEG_PLOT_DPI": 30,
           "CHECKPOINT_EVERY": 15}
# -----------------------------------------------------------------------------

# A recoder checkpoint is resumed only with these unchanged.
_RECODER_ARCHITECTURE = ["CYCLE_LENGTH", "SWITCH_ITERATION", "RECODER_LAYERS", "RECODER_CHANNELS", "EEG_PROBES",
                        "EEG_PROBE_CHANNELS", "EEG_WINDOW"]
_CHECKPOINT_NAME = "recoder.pt"


def check_constants(cfg) -> None:
    if cfg.CYCLES < 1 or cfg.CYCLE_LENGTH < 2:
        raise LabError(f"CYCLES must be >= 1 and CYCLE_LENGTH >= 2, got {cfg.CYCLES} and {cfg.CYCLE_LENGTH}")
    if not 0 <= cfg.SWITCH_ITERATION < cfg.CYCLE_LENGTH:
        raise LabError(f"SWITCH_ITERATION must lie in [0, CYCLE_LENGTH={cfg.CYCLE_LENGTH}), got {cfg.SWITCH_ITERATION}")
    if cfg.EEG_PROBE_CHANNELS > cfg.RECODER_CHANNELS:
        raise LabError(f"EEG_PROBE_CHANNELS ({cfg.EEG_PROBE_CHANNELS}) cannot exceed RECODER_CHANNELS "
                       f"({cfg.RECODER_CHANNELS})")
    if cfg.SMOOTH_WIDTH + cfg.SMOOTH_POSITIONS - 1 > cfg.EEG_WINDOW:
        raise LabError(f"SMOOTH_WIDTH + SMOOTH_POSITIONS - 1 = {cfg.SMOOTH_WIDTH + cfg.SMOOTH_POSITIONS - 1} must not "
                       f"exceed EEG_WINDOW = {cfg.EEG_WINDOW} (the article: 100 + 900 - 1 <= 1000)")


def load_vae(run, cfg):
    """The trained VAE (eval mode) and the constants it was trained with."""
    path = cfg.VAE_CHECKPOINT or outputs_root() / "pen_cap_vae" / "checkpoints" / run.profile / train._CHECKPOINT_NAME
    flag = {"quick": " --quick", "dry_run": " --dry-run"}.get(run.profile, "")
    if not Path(path).is_file():
        raise LabError(f"no trained VAE at {path}: run python -m pen_cap_vae.train{flag} first")
    checkpoint = load_checkpoint(path, map_location="cpu")
    if "model" in checkpoint and "constants" in checkpoint:
        constants, state_dict = checkpoint["constants"], checkpoint["model"]
    else:  # a bare state_dict, e.g. saved by the article's code: the article's architecture
        constants, state_dict = collect_constants(vars(train)), checkpoint
    vae = train.build_vae(constants)
    load_state_dict_strict(vae, state_dict, f"the VAE checkpoint {path}")
    return vae.to(run.device).eval(), constants


class FrameWriter:
    """Writes frames in a background thread (PIL's JPEG encoder releases the GIL), one at a time."""

    def __init__(self, quality: int):
        self.quality, self.pool, self.pending = quality, ThreadPoolExecutor(max_workers=1), None

    def write(self, array: np.ndarray, path) -> None:
        if self.pending is not None:
            self.pending.result()
        self.pending = self.pool.submit(lambda: Image.fromarray(array).save(path, quality=self.quality))

    def close(self) -> None:
        if self.pending is not None:
            self.pending.result()
        self.pool.shutdown()


class EEGPlotter:
    """The article's two plots per probe per window, on two reused figures (drawing a new figure
    per plot costs several times more)."""

    def __init__(self, dpi: int):
        self.dpi = dpi
        self.trace_fig, self.trace_ax = plt.subplots(figsize=(20, 6))
        (self.trace_line,) = self.trace_ax.plot([], [], lw=0.8)
        self.spectrum_fig, self.spectrum_ax = plt.subplots(figsize=(6.4, 4.8))
        (self.spectrum_line,) = self.spectrum_ax.plot([], [])

    def save(self, trace: np.ndarray, trace_path, spectrum_x: np.ndarray, spectrum: np.ndarray, spectrum_path,
             title: str) -> None:
        self.trace_line.set_data(np.arange(len(trace)), trace)
        self.trace_ax.relim()
        self.trace_ax.autoscale_view()
        self.trace_ax.set_title(f"EEG {title}: normalised activity over iterations")
        self.trace_fig.savefig(trace_path, dpi=self.dpi)
        self.spectrum_line.set_data(spectrum_x, spectrum)
        self.spectrum_ax.relim()
        self.spectrum_ax.autoscale_view()
        self.spectrum_ax.set_title(f"smoothed log |DCT|, {title}", fontsize=8)
        self.spectrum_ax.set_xlabel("DCT frequency bin (window centre)")
        self.spectrum_fig.savefig(spectrum_path, dpi=100)

    def close(self) -> None:
        plt.close(self.trace_fig)
        plt.close(self.spectrum_fig)


def eeg_window_outputs(run, cfg, recorder: EEGRecorder, plotter: EEGPlotter | None, window_index: int):
    """Spectra of the window just finished; plots named as the article's; the exponents."""
    signals = recorder.take_window()
    smoothed = smooth_spectrum(log_spectrum(signals), cfg.SMOOTH_WIDTH, cfg.SMOOTH_POSITIONS)
    if plotter is not None:
        bins = np.arange(cfg.SMOOTH_POSITIONS) + cfg.SMOOTH_WIDTH / 2.0
        for j, (p, q, m, n) in enumerate(recorder.probes.tolist()):
            name = f"pic_{p}_{q}_{m}_{n}_{window_index}.jpg"
            plotter.save(signals[j], run.path("encephalograms", str(j + 1), name), bins, smoothed[j],
                         run.path("encephalograms_log_spectrae", str(j + 1), name),
                         f"probe {j + 1} (layer {p}, ch. {q}, row {m}, col. {n}), window {window_index}")
    return spectral_exponent(signals)


def plot_date(path, trace: dict, cycle: int, switch: int) -> None:
    iterations = np.arange(len(trace["corr_first"]))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(iterations, trace["corr_first"], label="corr(x1, picture 1's code)", lw=1)
    top.plot(iterations, trace["corr_last"], label="corr(x1, last picture's code)", lw=1)
    for start in range(0, len(iterations), cycle):
        top.axvline(start + switch, color="grey", ls=":", lw=1)
    top.set_ylabel("Pearson correlation")
    top.set_title("The date made visible: the code's likeness to the two pictures (dotted: target switch)")
    top.legend(loc="lower right")
    top.grid(alpha=0.3)
    bottom.plot(iterations, trace["s"], color="black", lw=1)
    bottom.set_ylabel("s(t)")
    bottom.set_xlabel("iteration")
    bottom.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)


def plot_exponents(path, exponents: np.ndarray, window: int) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    ends = (np.arange(len(exponents)) + 1) * window
    for probe in range(exponents.shape[1]):
        ax.plot(ends, exponents[:, probe], ".", color="tab:blue", alpha=0.35)
    ax.plot(ends, np.median(exponents, axis=1), "o-", color="tab:red", label="median of the probes")
    ax.axhspan(1.0, 2.0, color="tab:green", alpha=0.12, label="typical human EEG (alpha 1-2)")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("iteration at the end of the window")
    ax.set_ylabel("spectral exponent alpha (P ~ 1/f^alpha)")
    ax.set_title("The recoder EEG's spectral exponent per window")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)


def phase_means(trace: dict, cycle: int) -> dict:
    """Mean correlations in the date's phases: t < 0.2, the plateau 0.2 <= t < 0.88, the culmination."""
    t = (np.arange(len(trace["corr_first"])) % cycle + 1) / cycle
    phases = {"start": t < 0.2, "plateau": (t >= 0.2) & (t < 0.88), "culmination": t >= 0.88}
    return {f"{key}_{name}": round(float(np.mean(np.asarray(trace[key])[mask])), 4)
            for name, mask in phases.items() if mask.any() for key in ("corr_first", "corr_last")}


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv, framework="torch")
    cfg = run.cfg
    check_constants(cfg)
    vae, vae_constants = load_vae(run, cfg)
    pictures, paths = load_pictures(cfg.PICTURES_DIR, vae_constants["IMAGE_HEIGHT"], vae_constants["IMAGE_WIDTH"],
                                    vae_constants["PATCH"])
    pictures = pictures.to(run.device)
    code_channels = vae_constants["CODE_CHANNELS"]
    recoder = Recoder(cfg.RECODER_LAYERS, cfg.RECODER_CHANNELS, code_channels).to(run.device)
    optimizer = torch.optim.Adam(recoder.parameters(), lr=cfg.LEARNING_RATE)

    path = run.checkpoint_path(_CHECKPOINT_NAME)
    frames_dir = run.out_dir / "frames"
    total = cfg.CYCLES * cfg.CYCLE_LENGTH
    trace = {"corr_first": [], "corr_last": [], "s": [], "loss": []}
    exponents: list[np.ndarray] = []
    start = 0
    if path.exists() and not run.fresh:
        checkpoint = load_checkpoint(path, map_location=run.device)
        check_compatible(checkpoint["constants"], run.constants, _RECODER_ARCHITECTURE, path)
        recoder.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start, x1 = checkpoint["step"], checkpoint["x1"]
        first_code, last_code = checkpoint["first_code"], checkpoint["last_code"]
        recorder = EEGRecorder(np.zeros((0, 4)), cfg.EEG_MEAN_DECAY, cfg.EEG_VAR_DECAY)
        recorder.load_state(checkpoint["eeg"])
        trace = {k: list(v.tolist()) for k, v in checkpoint["trace"].items()}
        exponents = list(checkpoint["exponents"].numpy()) if len(checkpoint["exponents"]) else []
        print(f"resuming the date at iteration {start} of {total} ({path})")
    else:
        if run.fresh:
            for folder in ("frames", "encephalograms", "encephalograms_log_spectrae"):
                shutil.rmtree(run.out_dir / folder, ignore_errors=True)
        with torch.no_grad():
            # The codes of the first and the last picture (the article's inp_code and inp_code2).
            first_code = vae.encode(pictures[:1])
            last_code = vae.encode(pictures[-1:])
            x1 = torch.randn_like(first_code)  # the article starts from N(0, 1)
        rows, columns = first_code.shape[2], first_code.shape[3]
        recorder = EEGRecorder(draw_probes(cfg.EEG_PROBES, cfg.RECODER_LAYERS, cfg.EEG_PROBE_CHANNELS, rows, columns),
                               cfg.EEG_MEAN_DECAY, cfg.EEG_VAR_DECAY)
    code_max = max(first_code.abs().max(), last_code.abs().max())  # the article's inp_c_max
    frames_dir.mkdir(parents=True, exist_ok=True)

    def save(at: int) -> None:
        save_checkpoint(path, {
            "model": recoder.state_dict(), "optimizer": optimizer.state_dict(), "step": at, "constants": run.constants,
            "x1": x1, "first_code": first_code, "last_code": last_code, "eeg": recorder.state(),
            "trace": {k: torch.tensor(v, dtype=torch.float64) for k, v in trace.items()},
            "exponents": torch.from_numpy(np.stack(exponents)) if exponents else torch.zeros(0)})

    writer = FrameWriter(cfg.FRAME_QUALITY) if cfg.SAVE_FRAMES else None
    plotter = EEGPlotter(cfg.EEG_PLOT_DPI) if cfg.SAVE_EEG_PLOTS else None
    i = start
    try:
        with InterruptGuard() as guard, tqdm(total=total, initial=start, desc="date", mininterval=1) as bar:
            for i in range(start, total):
                s = date_schedule(i, cfg.CYCLE_LENGTH)["s"]
                target = first_code if i % cfg.CYCLE_LENGTH < cfg.SWITCH_ITERATION else last_code
                y, hidden = recoder(x1, return_h=True)
                y = torch.tanh(y) * code_max * 1.1
                loss, _, _, _ = recoder_loss(y, x1, target, s)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    x1 = x1 * 0.5 + 0.5 * y.detach()  # the article's moving average of the code
                    recorder.record(recorder.read(hidden))
                    trace["corr_first"].append(1.0 - float(corrloss(x1, first_code)[0]))
                    trace["corr_last"].append(1.0 - float(corrloss(x1, last_code)[0]))
                    trace["s"].append(s)
                    trace["loss"].append(float(loss.detach()))
                    if writer is not None:
                        writer.write(to_uint8_image(vae.decoder(x1)[0]), frames_dir / f"{i:06d}.jpg")
                if (i + 1) % cfg.EEG_WINDOW == 0:
                    exponents.append(eeg_window_outputs(run, cfg, recorder, plotter, i // cfg.EEG_WINDOW + 1))
                bar.update(1)
                bar.set_postfix(s=f"{s:.3f}", corr_first=f"{trace['corr_first'][-1]:.3f}",
                                corr_last=f"{trace['corr_last'][-1]:.3f}", refresh=False)
                if (i + 1) % cfg.CHECKPOINT_EVERY == 0 or guard.requested:
                    save(i + 1)
                if guard.requested:
                    break
            else:
                save(total)
    finally:
        if writer is not None:
            writer.close()
        if plotter is not None:
            plotter.close()

    done = len(trace["s"])
    plot_date(run.path("date.png"), trace, cfg.CYCLE_LENGTH, cfg.SWITCH_ITERATION)
    run.add_artifact(run.path("date.png"), "the date: correlation of the code with the two pictures, s(t) below")
    metrics = {"iterations": done, **phase_means(trace, cfg.CYCLE_LENGTH)}
    if exponents:
        table = np.stack(exponents)
        plot_exponents(run.path("spectral_exponent.png"), table, cfg.EEG_WINDOW)
        run.add_artifact(run.path("spectral_exponent.png"), "EEG spectral exponent alpha per window")
        metrics.update({"eeg_alpha_median": round(float(np.median(table)), 3),
                        "eeg_alpha_per_window": [round(float(v), 3) for v in np.median(table, axis=1)]})
        if plotter is not None:
            last = table.shape[0]
            p, q, m, n = recorder.probes[0].tolist()
            for folder, caption in (("encephalograms", "EEG of probe 1"),
                                    ("encephalograms_log_spectrae", "smoothed log spectrum of probe 1")):
                run.add_artifact(run.out_dir / folder / "1" / f"pic_{p}_{q}_{m}_{n}_{last}.jpg",
                                 f"{caption}, window {last} (all 20 probes in {folder}/)")
    frames = sorted(frames_dir.glob("*.jpg"))
    if frames:
        run.add_artifact(frames[-1], f"the last frame ({frames[-1].name})")
    metrics["frames"] = len(frames)
    run.finish(metrics, status="interrupted" if done < total else "complete")


if __name__ == "__main__":
    main()

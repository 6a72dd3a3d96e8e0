"""The date of the pen and its cap: the recoder animates the VAE's latent code (article 000, test.py).

Run: python -m pen_cap_vae.test [--quick] [--set CYCLES=2] [--fresh]   (after python -m pen_cap_vae.train)

Each iteration's code is decoded to a frame; the "EEG" is plotted every EEG_WINDOW iterations. Beyond the
article: the date track (pen_cap_vae.track) and the EEG's 1/f^alpha exponent. Rerunning resumes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

from lab import LabError, exit_on_lab_error, start_run
from lab.checkpoint import InterruptGuard, resume, save_checkpoint
from lab.plots import save_figure
from lab.run import start_cell
from pen_cap_vae.data import load_pictures, load_trained_vae
from pen_cap_vae.date import Date, FrameSink
from pen_cap_vae.eeg import EEGPlotter, EEGRecorder, draw_probes, log_spectrum, smooth_spectrum, spectral_exponent
from pen_cap_vae.model import DATE_CHECKPOINT_NAME, VAE_CHECKPOINT_NAME, RecoderSettings, VAESettings
from pen_cap_vae.track import DIP_THRESHOLD, NEAREST_MARGIN, DateTrack, bare_table_likeness, phase_bounds, summarise

# -----------------------------------------------------------------------------
# Constants. The article's values are the defaults; edit them here or use --set.
VAE_CHECKPOINT = ""        # the trained VAE ("" = train.py's of this profile); a bare state_dict is the article's
PICTURES_DIR = ""          # the pictures to encode ("" = data/pen_cap/); first and last are the date's ends
CYCLES = 1                 # how many dates to run {> 0}
CYCLE_LENGTH = 5300        # iterations of one date (article: i % 5300) {>= 2}
SWITCH_ITERATION = 1060    # from here on in each cycle the target is the last picture's code (article) {>= 0}
RECODER_LAYERS = 20        # gated layers of the recoder (article: 20) {> 0}
RECODER_CHANNELS = 64      # their width (article: 64) {> 0}
LEARNING_RATE = 1e-4       # Adam's step size for the recoder (not in the article: our choice) {> 0}
EEG_PROBES = 20            # recorded hidden units (article: 20) {> 0}
EEG_PROBE_CHANNELS = 16    # probes are drawn from the first 16 channels (article: q < 16) {> 0}
EEG_MEAN_DECAY = 0.99      # running mean of each probe (article: 0.99) {>= 0, <= 1}
EEG_VAR_DECAY = 0.9        # running variance of each probe (article: 0.9) {>= 0, < 1}
EEG_WINDOW = 1000          # iterations between spectra and plots (article: 1000) {> 0}
SMOOTH_WIDTH = 100         # width of the triangular window over the spectrum (article: 100) {>= 2}
SMOOTH_POSITIONS = 900     # positions of that window (article: 900) {> 0}
EEG_PLOT_DPI = 120         # resolution of the 20x6-inch EEG plots (article: 120) {> 0}
SAVE_FRAMES = True         # write frames/000000.jpg ... every iteration
SAVE_EEG_PLOTS = True      # write the encephalograms*/ plots every EEG_WINDOW iterations
FRAME_QUALITY = 90         # JPEG quality of the frames {> 0, <= 100}
CHECKPOINT_EVERY = 500     # iterations between checkpoints of the date (Ctrl+C also saves) {> 0}
MIXED_PRECISION = False    # bfloat16 autocast for the recoder's forward pass (for GPUs; see pen_cap_vae.bench)
TORCH_THREADS = 0          # CPU threads for torch (0: torch's default); 1 is far faster on a busy machine {>= 0}
SEED = 0                   # -1 draws a random seed and prints it {>= -1}
DEVICE = "auto"            # "auto" (CUDA if available), "cpu" or "cuda"
QUICK = {"TORCH_THREADS": 1, "CYCLE_LENGTH": 600, "SWITCH_ITERATION": 120, "RECODER_CHANNELS": 32,
         "LEARNING_RATE": 1e-3, "EEG_WINDOW": 200, "SMOOTH_WIDTH": 20, "SMOOTH_POSITIONS": 180, "EEG_PLOT_DPI": 50,
         "CHECKPOINT_EVERY": 200}
DRY_RUN = {"CYCLE_LENGTH": 40, "SWITCH_ITERATION": 8, "RECODER_LAYERS": 3, "RECODER_CHANNELS": 8,
           "EEG_PROBE_CHANNELS": 8, "EEG_WINDOW": 20, "SMOOTH_WIDTH": 4, "SMOOTH_POSITIONS": 16, "EEG_PLOT_DPI": 30,
           "CHECKPOINT_EVERY": 15}
# -----------------------------------------------------------------------------

# A date's checkpoint is resumed only with these unchanged (and the same pictures and VAE).
ARCHITECTURE = ["CYCLE_LENGTH", "SWITCH_ITERATION", "RECODER_LAYERS", "RECODER_CHANNELS", "EEG_PROBES",
                "EEG_PROBE_CHANNELS", "EEG_WINDOW"]
OUTPUT_FOLDERS = ("frames", "encephalograms", "encephalograms_log_spectrae")


def check_constants(cfg) -> None:
    if cfg.SWITCH_ITERATION >= cfg.CYCLE_LENGTH:
        raise LabError(f"SWITCH_ITERATION must lie in [0, CYCLE_LENGTH={cfg.CYCLE_LENGTH}), got {cfg.SWITCH_ITERATION}")
    if cfg.EEG_PROBE_CHANNELS > cfg.RECODER_CHANNELS:
        raise LabError(f"EEG_PROBE_CHANNELS ({cfg.EEG_PROBE_CHANNELS}) cannot exceed RECODER_CHANNELS "
                       f"({cfg.RECODER_CHANNELS})")
    if cfg.SMOOTH_WIDTH + cfg.SMOOTH_POSITIONS - 1 > cfg.EEG_WINDOW:
        raise LabError(f"SMOOTH_WIDTH + SMOOTH_POSITIONS - 1 = {cfg.SMOOTH_WIDTH + cfg.SMOOTH_POSITIONS - 1} must not "
                       f"exceed EEG_WINDOW = {cfg.EEG_WINDOW} (the article: 100 + 900 - 1 <= 1000)")


def load_vae(run, cfg):
    """The trained VAE (eval mode), rebuilt from the settings stored in its checkpoint, and its path."""
    path = Path(cfg.VAE_CHECKPOINT) if cfg.VAE_CHECKPOINT else run.checkpoint_dir / VAE_CHECKPOINT_NAME
    return (*load_trained_vae(path, run.device, run.profile), path)


@dataclass
class Session:
    """What the loop works on, all of it in the date's checkpoint."""

    date: Date
    recorder: EEGRecorder
    track: DateTrack
    schedule: list[float] = field(default_factory=list)   # s(t) per iteration
    losses: list[float] = field(default_factory=list)     # the recoder's loss per iteration
    exponents: list[np.ndarray] = field(default_factory=list)  # EEG spectral exponents per window
    step: int = 0

    def checkpoint(self, meta: dict) -> dict:
        return {**self.date.state(), "eeg": self.recorder.state(), "track": self.track.state(),
                "schedule": torch.tensor(self.schedule, dtype=torch.float64),
                "losses": torch.tensor(self.losses, dtype=torch.float64),
                "exponents": torch.from_numpy(np.stack(self.exponents)) if self.exponents else torch.zeros(0), **meta}


def open_session(run, cfg, vae, settings: VAESettings, pictures: torch.Tensor, fingerprint: str):
    """Resume the date from its checkpoint (same pictures, VAE and architecture), or start it."""
    total = cfg.CYCLES * cfg.CYCLE_LENGTH
    ckpt = resume(run, DATE_CHECKPOINT_NAME, architecture=ARCHITECTURE, steps=total, data=fingerprint,
                  map_location=run.device)
    track = DateTrack(pictures.permute(0, 2, 3, 1).cpu().numpy())
    if not track.locator.available:
        print(f"note: {track.locator.reason}")
    if ckpt.state is None:
        for folder in OUTPUT_FOLDERS:
            shutil.rmtree(run.out_dir / folder, ignore_errors=True)
        date = Date.start(RecoderSettings(cfg.RECODER_LAYERS, cfg.RECODER_CHANNELS, settings.code_channels),
                          cfg.LEARNING_RATE, vae, pictures, cfg.CYCLE_LENGTH, cfg.SWITCH_ITERATION)
        probes = draw_probes(cfg.EEG_PROBES, cfg.RECODER_LAYERS, cfg.EEG_PROBE_CHANNELS, *date.first_code.shape[2:])
        return Session(date, EEGRecorder(probes, cfg.EEG_MEAN_DECAY, cfg.EEG_VAR_DECAY), track), ckpt
    state = ckpt.state
    date = Date.from_state(state, cfg.LEARNING_RATE, cfg.CYCLE_LENGTH, cfg.SWITCH_ITERATION)
    recorder = EEGRecorder(state["eeg"]["probes"].numpy(), cfg.EEG_MEAN_DECAY, cfg.EEG_VAR_DECAY)
    recorder.load_state(state["eeg"])
    track.load_state(state["track"])
    exponents = list(state["exponents"].numpy()) if len(state["exponents"]) else []
    for stale in sorted((run.out_dir / "frames").glob("*.jpg"))[ckpt.step:]:
        stale.unlink()  # written after the last checkpoint: the resumed date writes them again
    return Session(date, recorder, track, state["schedule"].tolist(), state["losses"].tolist(), exponents,
                   ckpt.step), ckpt


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


def run_date(run, cfg, session: Session, vae, ckpt) -> bool:
    """The date from the resumed iteration on; True when Ctrl+C stopped it."""
    total = cfg.CYCLES * cfg.CYCLE_LENGTH
    frames_dir = run.out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    sink = FrameSink(cfg.FRAME_QUALITY, session.track.add)
    plotter = EEGPlotter(cfg.EEG_PLOT_DPI) if cfg.SAVE_EEG_PLOTS else None
    date, track = session.date, session.track
    try:
        with InterruptGuard() as guard, tqdm(total=total, initial=session.step, desc="date", mininterval=1) as bar:
            for i in range(session.step, total):
                s, loss, hidden = date.iterate(i, cfg.MIXED_PRECISION)
                with torch.no_grad():
                    session.recorder.record(session.recorder.read(hidden))
                    sink.put(vae.decoder(date.x1)[0], frames_dir / f"{i:06d}.jpg" if cfg.SAVE_FRAMES else None)
                session.schedule.append(s)
                session.losses.append(loss)
                session.step = i + 1
                if (i + 1) % cfg.EEG_WINDOW == 0:
                    session.exponents.append(eeg_window_outputs(run, cfg, session.recorder, plotter,
                                                                i // cfg.EEG_WINDOW + 1))
                bar.update(1)
                if (i + 1) % 10 == 0 or i + 1 == total:  # the track lags a frame or two behind the loop
                    sink.flush()
                    near = np.asarray(track.distinctive[-1])
                    run.log_scalars(i + 1, s=s, loss=loss, cap_position=track.cap[-1],
                                    **{f"likeness_{k + 1}": float(v) for k, v in enumerate(near)},
                                    **{f"whole_frame_likeness_{k + 1}": float(v)
                                       for k, v in enumerate(track.likeness[-1])})
                    bar.set_postfix(s=f"{s:.3f}", nearest=int(near.argmax()) + 1, likeness=f"{near.max():.3f}",
                                    cap=f"{track.cap[-1]:.3f}", refresh=False)
                stop = guard.requested  # read once: a Ctrl+C between two reads would stop without saving
                if (i + 1) % cfg.CHECKPOINT_EVERY == 0 or i + 1 == total or stop:
                    sink.flush()
                    save_checkpoint(ckpt.path, session.checkpoint(ckpt.meta(i + 1)))
                if stop:
                    return True
    finally:
        sink.close()
        if plotter is not None:
            plotter.close()
    return False


def plot_date(path, session: Session, cycle: int, switch: int) -> None:
    track = session.track
    similar, distinct, cap = np.asarray(track.likeness), np.asarray(track.distinctive), np.asarray(track.cap)
    iterations, has_cap = np.arange(len(similar)), np.isfinite(cap).any()
    rows = 3 if has_cap else 2
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.6 * rows + 1), sharex=True,
                             gridspec_kw={"height_ratios": [2, 1.4, 1][:rows]})
    for k in range(similar.shape[1]):
        line, = axes[0].plot(iterations, distinct[:, k], lw=1, label=f"picture {k + 1}")
        axes[0].plot(iterations, similar[:, k], lw=0.6, ls=":", color=line.get_color())
    shades = {"start": "0.93", "approach": "#dce9f5", "plateau": "#e8f3e0", "culmination": "#f7e3d8"}
    for start in range(0, len(iterations), cycle):
        for name, (first, end) in phase_bounds(cycle, switch).items():
            for ax in axes:
                ax.axvspan(start + first, min(start + end, len(iterations)), color=shades[name], lw=0,
                           label=name if ax is axes[0] and start == 0 else None)
    axes[0].set_ylabel("likeness (pixel correlation)")
    axes[0].set_title("The date, frame by frame: which picture each frame looks like (solid: where the pictures "
                      "differ; dotted: whole frame), where the cap is, s(t)", fontsize=9)
    axes[0].legend(loc="lower left", ncol=4, fontsize=8)
    if has_cap:
        axes[1].plot(iterations, cap, lw=0.8, color="tab:blue")
        for k, position in enumerate(track.locator.picture_positions):
            axes[1].axhline(position, color="grey", ls="--", lw=0.8)
            axes[1].text(0, position, f" picture {k + 1}", va="bottom", fontsize=7, color="grey")
        axes[1].set_ylabel("cap's open end\n(fraction of width)")
    axes[-1].plot(iterations, session.schedule, color="black", lw=1)
    axes[-1].set_ylabel("s(t)")
    axes[-1].set_xlabel("iteration")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(0, max(1, len(iterations) - 1))
    save_figure(fig, path, dpi=100)


def plot_exponents(path, exponents: np.ndarray, window: int) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    ends = (np.arange(len(exponents)) + 1) * window
    ax.plot(ends, exponents, ".", color="tab:blue", alpha=0.35)  # one series per probe
    ax.plot(ends, np.median(exponents, axis=1), "o-", color="tab:red", label="median of the probes")
    ax.axhspan(1.0, 2.0, color="tab:green", alpha=0.12, label="typical human EEG (alpha 1-2)")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("iteration at the end of the window")
    ax.set_ylabel("spectral exponent alpha (P ~ 1/f^alpha)")
    ax.set_title("The recoder EEG's spectral exponent per window")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=100)


def describe_date(summary: dict, table: dict | None = None) -> list[str]:
    """What the frames show, in words: the nearest picture per phase, the pulses' dips. One date is one seed:
    pen_cap_vae.seeds judges the article's claims over several (README)."""
    phases = summary["phases"]
    order = " -> ".join(f"{name} {phases[name]['nearest_picture'] or 'none'}" for name in phases)
    likeness = "; ".join(f"{name} " + "/".join(f"{v:.2f}" for v in phases[name]["distinctive_likeness"])
                         for name in ("approach", "plateau", "culmination") if name in phases)
    parts = summary.get("culmination_parts", {})
    outside = "; ".join(f"{name.replace('_', ' ')} {parts[name]['nearest_picture'] or 'none'} ("
                        + "/".join(f"{v:.2f}" for v in parts[name]["distinctive_likeness"]) + ")"
                        for name in ("between_pulses", "after_pulses") if name in parts)
    lines = [f"nearest picture per phase by the mean likeness where the pictures differ ('none': no picture leads "
             f"by {NEAREST_MARGIN}): {order} ({likeness})" + (f"; the culmination's frames {outside}" if outside else "")
             + ("; a bare table without pen and cap: " + "/".join(f"{v:.2f}" for v in table["distinctive_likeness"])
                if table else "")]
    dips = summary["culmination_dips"]
    if dips:
        lines.append("dips of whole-frame likeness to the last picture at the pulses "
                     + ", ".join(f"{d['dip']:.2f}" for d in dips)
                     + f" below the plateau's mean (visible above {summary['dip_threshold']:.2f}), recovering between "
                       "them by " + ", ".join(f"{d['recovery']:.2f}" for d in dips) + f" (visible above {DIP_THRESHOLD}): "
                     + f"{sum(d['visible'] for d in dips)} of {len(dips)} visible")
    return lines


def report(run, cfg, session: Session, interrupted: bool) -> None:
    """The date track plot and summary, the EEG exponents, the claims, run.json."""
    metrics = {"iterations": session.step}
    if session.track.likeness:
        plot_date(run.path("date.png"), session, cfg.CYCLE_LENGTH, cfg.SWITCH_ITERATION)
        run.add_artifact(run.path("date.png"), "the date track: likeness of each frame to each picture, "
                                               "the cap's position, s(t) below")
        summary = summarise(session.track, cfg.CYCLE_LENGTH, cfg.SWITCH_ITERATION, session.track.pictures.shape[2])
        metrics.update(summary)
        metrics["cap_positions_of_pictures"] = [round(p, 4) for p in session.track.locator.picture_positions]
        table = bare_table_likeness(session.track.pictures)
        if table is not None:  # what a frame with neither pen nor cap scores: the reference for "shows a picture"
            metrics["bare_table"] = table
        for line in describe_date(summary, table):
            print(line)
    if session.exponents:
        table = np.stack(session.exponents)
        plot_exponents(run.path("spectral_exponent.png"), table, cfg.EEG_WINDOW)
        run.add_artifact(run.path("spectral_exponent.png"), "EEG spectral exponent alpha per window")
        metrics.update({"eeg_alpha_median": round(float(np.median(table)), 3),
                        "eeg_alpha_per_window": [round(float(v), 3) for v in np.median(table, axis=1)]})
        if cfg.SAVE_EEG_PLOTS:
            last = table.shape[0]
            p, q, m, n = session.recorder.probes[0].tolist()
            for folder, caption in (("encephalograms", "EEG of probe 1"),
                                    ("encephalograms_log_spectrae", "smoothed log spectrum of probe 1")):
                run.add_artifact(run.out_dir / folder / "1" / f"pic_{p}_{q}_{m}_{n}_{last}.jpg",
                                 f"{caption}, window {last} (all 20 probes in {folder}/)")
    frames = sorted((run.out_dir / "frames").glob("*.jpg"))
    if frames:
        run.add_artifact(frames[-1], f"the last frame ({frames[-1].name})")
    metrics["frames"] = len(frames)
    run.finish(metrics, status="interrupted" if interrupted else "complete")


def date_cell(*, constants: dict[str, Any], folder: str, device: str, profile: str) -> dict[str, Any]:
    """One more seed's date, as a lab.executor cell (pen_cap_vae.seeds): this script's date with `constants`
    (its own SEED and VAE_CHECKPOINT), checkpoint, frames and curves in `folder`; resumed when the folder holds
    one. Seeded as main() is, so the date equals `--set SEED=s` on that VAE. Ctrl+C saves, then stops the caller."""
    run = start_cell(constants, folder, Path(folder) / "date_curves", "torch", device, profile)
    cfg = SimpleNamespace(**constants)
    check_constants(cfg)
    vae, settings, vae_path = load_vae(run, cfg)
    pictures, _, fingerprint = load_pictures(cfg.PICTURES_DIR, settings, device, vae_path)
    session, ckpt = open_session(run, cfg, vae, settings, pictures, fingerprint)
    interrupted = run_date(run, cfg, session, vae, ckpt)
    run.close()
    if interrupted:
        raise KeyboardInterrupt
    return {"iterations": session.step}


@exit_on_lab_error
def main(argv=None):
    run = start_run("pen_cap_vae", globals(), argv, framework="torch", checkpoints=True)
    cfg = run.cfg
    check_constants(cfg)
    vae, settings, vae_path = load_vae(run, cfg)
    pictures, _, fingerprint = load_pictures(cfg.PICTURES_DIR, settings, run.device, vae_path)
    session, ckpt = open_session(run, cfg, vae, settings, pictures, fingerprint)
    interrupted = run_date(run, cfg, session, vae, ckpt)
    report(run, cfg, session, interrupted)


if __name__ == "__main__":
    main()

"""The recoder's "EEG" (article 000): hidden units recorded every iteration, normalised by running
statistics, and per window their smoothed DCT-II log spectra; all probes are handled as one vector."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.fft import dct


def draw_probes(count: int, layers: int, channels: int, rows: int, columns: int) -> np.ndarray:
    """(count, 4) probes (layer p, channel q, row m, column n), drawn as the article's (torch.rand(20) * 36).long()."""
    probes = [(torch.rand(count) * limit).long() for limit in (layers, channels, rows, columns)]
    return torch.stack(probes, dim=1).numpy()


class EEGRecorder:
    """Records the probes, normalised by running statistics as in the article."""

    def __init__(self, probes: np.ndarray, mean_decay: float = 0.99, var_decay: float = 0.9):
        self.probes = np.asarray(probes, dtype=np.int64)
        self.mean_decay, self.var_decay = mean_decay, var_decay
        self.mu, self.var = np.zeros(len(self.probes)), np.ones(len(self.probes))
        self.window: list[np.ndarray] = []

    def read(self, hidden: list[torch.Tensor]) -> np.ndarray:
        """The raw probe values of one iteration (first picture of the batch), one transfer."""
        values = torch.stack([hidden[p][0, q, m, n] for p, q, m, n in self.probes.tolist()])
        return values.detach().double().cpu().numpy()

    def record(self, values: np.ndarray) -> np.ndarray:
        normalised = (values - self.mu) / np.sqrt(self.var)
        self.mu = self.mu * self.mean_decay + values * (1.0 - self.mean_decay)
        self.var = self.var * self.var_decay + (1.0 - self.var_decay) * (values - self.mu) ** 2
        self.window.append(normalised)
        return normalised

    def take_window(self) -> np.ndarray:
        """(probes, iterations) of the window so far; the window starts over."""
        signals = np.stack(self.window, axis=1) if self.window else np.zeros((len(self.probes), 0))
        self.window = []
        return signals

    def state(self) -> dict:
        return {"probes": torch.from_numpy(self.probes), "mu": torch.from_numpy(self.mu),
                "var": torch.from_numpy(self.var),
                "window": torch.from_numpy(np.stack(self.window, axis=1)) if self.window else torch.zeros(0)}

    def load_state(self, state: dict) -> None:
        self.probes = state["probes"].numpy()
        self.mu, self.var = state["mu"].numpy().copy(), state["var"].numpy().copy()
        window = state["window"].numpy()
        self.window = [window[:, i] for i in range(window.shape[1])] if window.ndim == 2 else []


def log_spectrum(signals: np.ndarray) -> np.ndarray:
    """The article's 0.5 * log(DCT-II(signal)^2) along time; an exact 0 is floored at 1e-300, not -inf."""
    coefficients = dct(signals, type=2, axis=-1)
    return 0.5 * np.log(np.maximum(coefficients**2, 1e-300))


def smooth_spectrum(spectrum: np.ndarray, width: int = 100, positions: int = 900) -> np.ndarray:
    """The article's smoothing: position j < positions weighs bins j..j+width-1 (centred on j + width/2)."""
    if spectrum.shape[-1] < width + positions - 1:
        raise ValueError(f"a window of {spectrum.shape[-1]} bins is too short for {positions} positions "
                         f"of a {width}-wide window (needs {width + positions - 1})")
    windows = sliding_window_view(spectrum, width, axis=-1)[..., :positions, :]
    half = width / 2.0
    triangular = (1.0 - np.abs(np.arange(width) - half) / half) / width  # the article's window
    return windows @ triangular


def spectral_exponent(signals: np.ndarray) -> np.ndarray:
    """Per signal, alpha of a 1/f^alpha spectrum: the log-log slope over the DCT bins but the mean's."""
    log_power = 2.0 * log_spectrum(signals)[..., 1:]
    log_frequency = np.log(np.arange(1, signals.shape[-1]))
    centred = log_frequency - log_frequency.mean()
    slope = ((log_power - log_power.mean(axis=-1, keepdims=True)) * centred).sum(axis=-1) / (centred**2).sum()
    return -slope


class EEGPlotter:
    """The article's two plots per probe per window, on two reused figures (new ones cost several times more)."""

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

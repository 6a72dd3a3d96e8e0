"""The date's loop (article 000's test.py), for pen_cap_vae.test and .bench: the recoder moves the code x1
towards picture 1's code until the switch, the last picture's after, through the article's moving average."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import numpy as np
import torch
from PIL import Image

from lab.safe_load import settings_from_checkpoint
from pen_cap_vae.model import GaussianAutoencoder, RecoderSettings, date_schedule, recoder_loss


class Date:
    """The recoder, its Adam, the moving-average code x1 and the two pictures' codes."""

    def __init__(self, settings: RecoderSettings, learning_rate: float, first_code: torch.Tensor,
                 last_code: torch.Tensor, x1: torch.Tensor, cycle: int, switch: int):
        self.settings = settings
        self.recoder = settings.build().to(first_code.device)
        self.optimizer = torch.optim.Adam(self.recoder.parameters(), lr=learning_rate)
        self.first_code, self.last_code, self.x1 = first_code, last_code, x1
        self.code_max = max(first_code.abs().max(), last_code.abs().max())  # the article's inp_c_max
        self.cycle, self.switch = cycle, switch

    @classmethod
    def start(cls, settings: RecoderSettings, learning_rate: float, vae: GaussianAutoencoder,
              pictures: torch.Tensor, cycle: int, switch: int) -> Date:
        """A fresh date: the first and last pictures' codes (the article's inp_code, inp_code2), x1 ~ N(0, 1)."""
        first_code, last_code = vae.encode(pictures[:1]), vae.encode(pictures[-1:])  # encode() is no_grad
        return cls(settings, learning_rate, first_code, last_code, torch.randn_like(first_code), cycle, switch)

    def iterate(self, i: int, mixed_precision: bool = False) -> tuple[float, float, list[torch.Tensor]]:
        """Iteration i of the date: (s(t), the loss, the recoder's hidden layers for the EEG)."""
        s = date_schedule(i, self.cycle)["s"]
        target = self.first_code if i % self.cycle < self.switch else self.last_code
        with torch.autocast(self.x1.device.type, dtype=torch.bfloat16, enabled=mixed_precision):
            y, hidden = self.recoder(self.x1, return_h=True)
        y = torch.tanh(y.float()) * self.code_max * 1.1
        loss, _, _, _ = recoder_loss(y, self.x1, target, s)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self.x1 = self.x1 * 0.5 + 0.5 * y.detach()
        return s, float(loss.detach()), hidden

    def state(self) -> dict:
        return {"model": self.recoder.state_dict(), "optimizer": self.optimizer.state_dict(),
                "settings": asdict(self.settings), "x1": self.x1, "first_code": self.first_code,
                "last_code": self.last_code}

    @classmethod
    def from_state(cls, state: dict, learning_rate: float, cycle: int, switch: int) -> Date:
        settings = settings_from_checkpoint(RecoderSettings, state.get("settings"), "the recoder checkpoint",
                                            "pen_cap_vae.test")
        date = cls(settings, learning_rate, state["first_code"], state["last_code"], state["x1"], cycle, switch)
        date.recoder.load_state_dict(state["model"])
        date.optimizer.load_state_dict(state["optimizer"])
        return date


class FrameSink:
    """Writes frames and hands them to `consume` in order, in a background thread (PIL and scipy release the GIL)."""

    def __init__(self, quality: int, consume=None):
        self.quality, self.consume = quality, consume
        self.pool, self.pending = ThreadPoolExecutor(max_workers=1), []

    def _handle(self, frame: np.ndarray, path) -> None:
        if path is not None:
            Image.fromarray((frame * 255.0 + 0.5).astype(np.uint8)).save(path, quality=self.quality)
        if self.consume is not None:
            self.consume(frame)

    def put(self, frame: torch.Tensor, path=None) -> None:
        """`frame`: (3, H, W) in [0, 1] on any device; `path`: where its JPEG goes (None: no file)."""
        array = frame.detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
        while self.pending and self.pending[0].done():
            self.pending.pop(0).result()  # result() raises a failed write here
        if len(self.pending) > 4:  # keep the loop at most a few frames ahead of the writer
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._handle, array, path))

    def flush(self) -> None:
        for job in self.pending:
            job.result()
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.pool.shutdown()

"""Step metrics of a long run: appended as they come (from any thread), read back as a table
for `gr.LinePlot`, raw and smoothed."""
from __future__ import annotations

import math
import threading


def smooth(values: list[float], weight: float = 0.6) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing): the first
    points are not dragged towards zero; NaN and inf points are skipped, not spread."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(float("nan"))
            continue
        n += 1
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** n))
    return out


class Metrics:
    """Rows of {"step": int, name: value, ...}; thread-safe."""

    def __init__(self):
        self._rows: list[dict] = []
        self._lock = threading.Lock()

    def add(self, step: int, **values: float) -> None:
        row = {"step": int(step)}
        row.update({k: float(v) for k, v in values.items() if isinstance(v, (int, float))})
        with self._lock:
            self._rows.append(row)

    def rows(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def series(self, name: str) -> list[tuple[int, float]]:
        """(step, value) of every row that has `name`."""
        return [(r["step"], r[name]) for r in self.rows() if name in r]

    def last(self, name: str, default=None):
        found = self.series(name)
        return found[-1][1] if found else default

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows():
            seen.update({k: None for k in r if k != "step"})
        return list(seen)

    def table(self, names: list[str] | None = None, weight: float = 0.6):
        """A long pandas table (step, metric, value, smoothed) for gr.LinePlot(x="step",
        y="smoothed", color="metric"); empty but with those columns when nothing came yet."""
        import pandas as pd

        frames = []
        for name in names or self.names():
            points = self.series(name)
            if not points:
                continue
            steps, values = zip(*points)
            frames.append(pd.DataFrame({"step": steps, "metric": name, "value": values,
                                        "smoothed": smooth(list(values), weight)}))
        if not frames:
            return pd.DataFrame({"step": [], "metric": [], "value": [], "smoothed": []})
        return pd.concat(frames, ignore_index=True)

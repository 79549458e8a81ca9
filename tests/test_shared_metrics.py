"""shared/metrics.py: step rows from many threads, read back raw and smoothed."""
import math
import threading

import pytest

from shared.metrics import Metrics, smooth


def test_smooth_is_debiased_and_skips_bad_points():
    assert smooth([]) == []
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull towards zero at the start
    out = smooth([1.0, float("nan"), 3.0], weight=0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    assert smooth([4.0, 0.0], weight=0.0) == [4.0, 0.0]  # weight 0: raw values


def test_rows_series_and_table():
    m = Metrics()
    assert list(m.table().columns) == ["step", "metric", "value", "smoothed"] and m.table().empty
    m.add(1, loss=3.0)
    m.add(1, eval_loss=2.5)
    m.add(2, loss=2.0, note="ignored")
    assert m.series("loss") == [(1, 3.0), (2, 2.0)] and m.last("eval_loss") == 2.5 and m.last("x", 7) == 7
    assert m.names() == ["loss", "eval_loss"]
    table = m.table(["loss"])
    assert table["metric"].unique().tolist() == ["loss"] and table["value"].tolist() == [3.0, 2.0]


def test_many_threads_append_safely():
    m = Metrics()
    threads = [threading.Thread(target=lambda k=k: [m.add(i, loss=k) for i in range(200)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(m) == 1600 and len(m.table()) == 1600

"""The figures' layout: legends stay clear of the points the figure is about."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from losskit.lab.experiments import convexity  # noqa: E402
from losskit.lab.plots import _convexity_figure, plot_convexity  # noqa: E402


def _display_point(ax, x, y):
    return ax.transData.transform((x, y))


@pytest.mark.parametrize("kwargs", [{}, {"num_classes": 10}, {"t": np.linspace(-3, 3, 61)}])
@pytest.mark.parametrize("panel", ["loss", "second differences"])
def test_convexity_legend_does_not_cover_the_mse_minimum(kwargs, panel):
    # left panel: the MSE-on-softmax curve's minimum; right panel: the minimum of its
    # second differences, the point that shows it is not convex
    result = convexity(**kwargs)
    fig, (ax_v, ax_s) = _convexity_figure(result)
    fig.draw_without_rendering()
    ax, t, curve = ((ax_v, result.t, result.mse_softmax) if panel == "loss"
                    else (ax_s, result.t_inner, result.mse_second))
    legend = ax.get_legend()
    assert legend is not None
    box = legend.get_window_extent()
    i = int(np.argmin(curve))
    x, y = _display_point(ax, t[i], curve[i])
    assert not box.contains(x, y), (box, (x, y))
    # the minimum is inside the axes (not clipped away)
    assert ax.get_window_extent().contains(x, y)
    # nor does the legend cover the curve near the minimum (a few points either side)
    for j in range(max(0, i - 3), min(len(t), i + 4)):
        assert not box.contains(*_display_point(ax, t[j], curve[j])), t[j]


def test_plot_convexity_writes_the_png(tmp_path):
    path = plot_convexity(convexity(), tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000 and path.endswith("c.png")

"""How churnlab draws charts: matplotlib figures on the Agg canvas, saved atomically as PNG.

Every chart (evaluation curves, KPI trends, predicted vs realised churn) is a
:class:`matplotlib.figure.Figure` with its own Agg canvas: no pyplot global state, no display,
safe in threads and under pytest. The one exception is the SHAP summary plot, which the shap
library draws on pyplot's current figure (:func:`churnlab.explain.plot_summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from churnlab.atomic import write_file


def figure(
    width: float = 10,
    height: float = 5,
    *,
    layout: Literal["constrained", "compressed", "tight"] | None = "constrained",
) -> Any:
    """A new figure (inches) on its own Agg canvas.

    Parameters
    ----------
    width, height : float
        Size in inches (100 dpi).
    layout : str or None
        Matplotlib layout engine ("constrained", "tight" or None).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path | str, *, dpi: int = 100) -> Path:
    """Save a figure as PNG, atomically (a crash never leaves half a file)."""
    return write_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))

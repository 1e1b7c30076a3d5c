"""Figures written as PNG files: under a temporary name, renamed when complete, titled."""

from __future__ import annotations

from pathlib import Path

from slitcli.io.files import atomic_output

__all__ = ["DPI", "save_png"]

#: Resolution of slitcli's PNG figures [dots per inch].
DPI = 110


def save_png(fig, path: str | Path, dpi: int = DPI) -> Path:
    """Write the matplotlib Figure `fig` (Agg canvas) to `path` as PNG; its suptitle becomes the PNG's ``Title`` text chunk."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    title = fig.get_suptitle()
    meta = {"Software": "slitcli", **({"Title": title.replace("\n", "; ")} if title else {})}
    with atomic_output(path, overwrite=True) as tmp:
        FigureCanvasAgg(fig)
        fig.savefig(tmp, format="png", dpi=dpi, metadata=meta)
    return path

"""Training data from sample files: cutouts in memory with their true redshifts.

`load_train_data` reads one sample file's cutouts (the bands a model needs, sources
above an SNR_GI cut) and checks its truth; `concat_train_data` joins several files.
The training loop (`slitcli.nn.train`) draws its batches from them; the endless
stream (`slitcli.nn.stream`) needs no files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slitcli.errors import InputError
from slitcli.io.catalog import check_finite
from slitcli.io.samplefile import SampleReader
from slitcli.io.truth import check_redshifts

__all__ = ["TrainData", "load_train_data", "concat_train_data"]


@dataclass
class TrainData:
    """Cutouts in memory: SCI (and ERR when kept) float32 [n, bands, ny, nx] (e-/s), true
    redshifts, the median ERR of each band [e-/s] (the input normalisation scale) and the
    number of bad pixels flagged and neutralised on reading (`slitcli.io.samplefile.mask_bad_pixels`)."""

    sci: np.ndarray
    err: np.ndarray | None
    z: np.ndarray
    path: Path
    file_hash: str
    err_median: np.ndarray | None = None
    bad_pixels: int = 0

    def __post_init__(self):
        if self.err_median is None:
            self.err_median = np.array([np.median(self.err[:, b]) for b in range(self.err.shape[1])], np.float32)


def load_train_data(path: str | Path, bands: tuple[str, ...], min_snr: float, shape=None, progress=None, keep_err: bool = False) -> TrainData:
    """Read a sample file's cutouts of sources with SNR_GI >= `min_snr` (ERR only if `keep_err`).

    Raises
    ------
    InputError
        If the file has no SOURCES HDU with Z_TRUE (and SNR_GI when `min_snr` > 0), or
        if any Z_TRUE (or SNR_GI) is NaN or infinite, or the cut leaves fewer than 2 sources.
    """
    with SampleReader(path, bands, shape) as reader:
        sources = reader.sources()
        if sources is None or "Z_TRUE" not in sources.colnames:
            msg = f"{path}: training needs a SOURCES HDU with Z_TRUE"
            raise InputError(msg)
        check_finite(sources, f"{path}: HDU SOURCES", ("Z_TRUE", "SNR_GI") if min_snr > 0 else ("Z_TRUE",))
        check_redshifts(sources, f"{path}: HDU SOURCES")
        keep = np.ones(reader.n, bool)
        if min_snr > 0:
            if "SNR_GI" not in sources.colnames:
                msg = f"{path}: SOURCES lacks SNR_GI for the min_snr cut"
                raise InputError(msg)
            keep = np.asarray(sources["SNR_GI"]) >= min_snr
        idx = np.nonzero(keep)[0]
        if idx.size < 2:
            msg = f"{path}: fewer than 2 sources with SNR_GI >= {min_snr}"
            raise InputError(msg)
        sci = np.empty((idx.size, len(bands), *reader.shape), np.float32)
        err = np.empty_like(sci) if keep_err else None
        medians = []
        filled = 0
        for start, s, e, _ in reader.iter_chunks(512):
            sel = keep[start : start + len(s)]
            k = int(sel.sum())
            sci[filled : filled + k] = s[sel]
            if keep_err:
                err[filled : filled + k] = e[sel]
            medians.append(np.median(e[sel], axis=(0, 2, 3)) if k else np.full(len(bands), np.nan))
            filled += k
            if progress:
                progress(start + len(s), reader.n)
        header = reader.fits[0].read_header()
        bad_pixels = reader.bad_pixels
    file_hash = f"{header.get('CFGHASH', '')}:{header.get('INSTHASH', '')}:seed={header.get('SEED', '')}:n={len(keep)}"
    # The median of chunk medians: the ERR of a blank pixel is the same everywhere.
    err_median = np.nanmedian(np.array(medians), axis=0).astype(np.float32)
    return TrainData(sci, err, np.asarray(sources["Z_TRUE"], float)[idx], Path(path), file_hash, err_median, bad_pixels)


def concat_train_data(parts: list[TrainData]) -> TrainData:
    """One TrainData from several (e.g. one per sample file)."""
    if len(parts) == 1:
        return parts[0]
    keep_err = all(p.err is not None for p in parts)
    return TrainData(
        np.concatenate([p.sci for p in parts]),
        np.concatenate([p.err for p in parts]) if keep_err else None,
        np.concatenate([p.z for p in parts]),
        Path(",".join(p.path.name for p in parts)),
        ";".join(p.file_hash for p in parts),
        np.median([p.err_median for p in parts], axis=0).astype(np.float32),
        sum(p.bad_pixels for p in parts),
    )

"""Spatial augmentations of slitless cutouts, for robustness to calibration and centring errors.

All functions take cutouts as arrays [n, bands, ny, nx] (dispersion along the last
axis) and return new arrays; the same shift applies to every band of a source, as a
centring error would. The paper's reference code shows each training source 8 times:
as is, flipped across the dispersion, shifted along it three times (integer, up to
+-48 pixels, wrapping around) and across it three times (up to +-4 pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import fitsio
import numpy as np

from slitcli.io.files import atomic_output, check_output_path
from slitcli.io.fitsmeta import add_checksum_cards, software_cards, write_checksums
from slitcli.io.samplefile import SampleReader, write_table

__all__ = [
    "AugmentConfig",
    "flip_y",
    "shift",
    "shift_subpixel_x",
    "redraw_noise",
    "random_params",
    "paper_copies",
    "apply",
    "apply_dq",
    "augment_sample",
    "PARAM_DTYPE",
]

#: One record per augmented copy: what was done to it.
PARAM_DTYPE = [("FLIP", "u1"), ("SHIFT_X", "i2"), ("SHIFT_Y", "i2"), ("SUBPIX_X", "f4"), ("NOISE", "f4")]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings; shifts in pixels.

    Attributes
    ----------
    p_flip : float
        Probability of a flip across the dispersion (y).
    max_shift_x, max_shift_y : int
        Integer shifts are drawn uniformly in [-max, max]. The default +-3 pixels along
        the dispersion spans the range of CESS's wavelength-calibration errors (a
        discrete Gaussian of sigma 0.4 pixel cut at +-3); the paper's reference code
        used +-48 (``slitcli augment``'s default).
    subpixel_x : float
        Sub-pixel shifts along x drawn uniformly in [-subpixel_x, subpixel_x].
    noise_scale : float
        Add Gaussian noise of `noise_scale` x ERR (and grow ERR to match).
    wrap : bool
        Shifted-out pixels re-enter on the other side (the reference code's np.roll);
        otherwise the vacated pixels are zero.
    copies : int
        Copies per source written by ``slitcli augment`` (the paper: 8).
    """

    p_flip: float = 0.5
    max_shift_x: int = 3
    max_shift_y: int = 4
    subpixel_x: float = 0.5
    noise_scale: float = 0.0
    wrap: bool = True
    copies: int = 8

    def __post_init__(self):
        if not 0 <= self.p_flip <= 1:
            msg = "p_flip must lie in [0, 1]"
            raise ValueError(msg)
        if self.max_shift_x < 0 or self.max_shift_y < 0 or self.subpixel_x < 0 or self.noise_scale < 0:
            msg = "shifts and noise_scale must be >= 0"
            raise ValueError(msg)
        if self.copies < 1:
            msg = "copies must be >= 1"
            raise ValueError(msg)


def flip_y(cutouts: np.ndarray) -> np.ndarray:
    """Mirror across the dispersion direction (rows reversed)."""
    return cutouts[..., ::-1, :].copy()


def shift(cutouts: np.ndarray, dx: int, dy: int, wrap: bool = True) -> np.ndarray:
    """Shift by whole pixels, `dx` along the dispersion and `dy` across it."""
    out = np.roll(cutouts, (dy, dx), axis=(-2, -1))
    if not wrap:
        if dy > 0:
            out[..., :dy, :] = 0
        elif dy < 0:
            out[..., dy:, :] = 0
        if dx > 0:
            out[..., :dx] = 0
        elif dx < 0:
            out[..., dx:] = 0
    return out


def shift_subpixel_x(cutouts: np.ndarray, frac: float) -> np.ndarray:
    """Shift along the dispersion by `frac` pixel (|frac| <= 1), linear interpolation, flux kept."""
    if frac == 0:
        return cutouts.copy()
    step = 1 if frac > 0 else -1
    f = abs(frac)
    return (1.0 - f) * cutouts + f * np.roll(cutouts, step, axis=-1)


def redraw_noise(sci: np.ndarray, err: np.ndarray, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add Gaussian noise of `scale` x ERR; return the new SCI and its grown ERR."""
    noisy = sci + scale * err * rng.standard_normal(sci.shape).astype(sci.dtype)
    return noisy, err * np.sqrt(1.0 + scale**2)


def random_params(n: int, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random augmentation parameters for `n` sources (a PARAM_DTYPE record array)."""
    p = np.zeros(n, dtype=PARAM_DTYPE)
    p["FLIP"] = rng.random(n) < config.p_flip
    p["SHIFT_X"] = rng.integers(-config.max_shift_x, config.max_shift_x + 1, n)
    p["SHIFT_Y"] = rng.integers(-config.max_shift_y, config.max_shift_y + 1, n)
    p["SUBPIX_X"] = rng.uniform(-config.subpixel_x, config.subpixel_x, n)
    p["NOISE"] = config.noise_scale
    return p


def paper_copies(config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Parameters of the copies of one source, the paper's way for 8 copies.

    Copy 0 is the original, 1 the flip, then shifts along x and across y in turn
    (for 8 copies: three of each). Sub-pixel shifts and noise apply to shifted copies.
    """
    p = np.zeros(config.copies, dtype=PARAM_DTYPE)
    for k in range(1, config.copies):
        if k == 1:
            p[k]["FLIP"] = 1
            continue
        if (k - 2) < (config.copies - 2 + 1) // 2:
            p[k]["SHIFT_X"] = rng.integers(-config.max_shift_x, config.max_shift_x + 1)
            p[k]["SUBPIX_X"] = rng.uniform(-config.subpixel_x, config.subpixel_x)
        else:
            p[k]["SHIFT_Y"] = rng.integers(-config.max_shift_y, config.max_shift_y + 1)
        p[k]["NOISE"] = config.noise_scale
    return p


def apply(
    sci: np.ndarray, err: np.ndarray | None, params: np.ndarray, rng: np.random.Generator, wrap: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply per-source parameters `params` (PARAM_DTYPE) to cutouts [n, bands, ny, nx].

    ERR moves with SCI (pass None when it is not needed and no noise is added); noise
    draws come from `rng`.
    """
    if err is None:
        if np.any(params["NOISE"] > 0):
            msg = "adding noise needs ERR"
            raise ValueError(msg)
        err = np.zeros((len(sci), 1, 1, 1), sci.dtype)  # a cheap stand-in, discarded
        keep_err = False
    else:
        keep_err = True
    out_sci = np.empty_like(sci)
    out_err = np.empty_like(err) if keep_err else None
    for i, p in enumerate(params):
        s, e = sci[i], err[i]
        if p["FLIP"]:
            s, e = flip_y(s), flip_y(e)
        if p["SHIFT_X"] or p["SHIFT_Y"]:
            s, e = shift(s, int(p["SHIFT_X"]), int(p["SHIFT_Y"]), wrap), shift(e, int(p["SHIFT_X"]), int(p["SHIFT_Y"]), wrap)
        if p["SUBPIX_X"]:
            frac = float(p["SUBPIX_X"])
            s = shift_subpixel_x(s, frac)
            # Var((1-f) a + f b) = (1-f)^2 var_a + f^2 var_b for independent pixels.
            e = np.sqrt((1 - abs(frac)) ** 2 * e**2 + frac**2 * np.roll(e, 1 if frac > 0 else -1, axis=-1) ** 2)
        if p["NOISE"] > 0:
            s, e = redraw_noise(s, e, float(p["NOISE"]), rng)
        out_sci[i] = s
        if keep_err:
            out_err[i] = e
    return out_sci, out_err


def apply_dq(dq: np.ndarray, params: np.ndarray, wrap: bool = True) -> np.ndarray:
    """Move DQ flags [n, bands, ny, nx] with the cutouts: a sub-pixel shift ORs the two
    pixels it mixes."""
    out = np.empty_like(dq)
    for i, p in enumerate(params):
        d = dq[i]
        if p["FLIP"]:
            d = flip_y(d)
        if p["SHIFT_X"] or p["SHIFT_Y"]:
            d = shift(d, int(p["SHIFT_X"]), int(p["SHIFT_Y"]), wrap)
        if p["SUBPIX_X"]:
            d = d | np.roll(d, 1 if p["SUBPIX_X"] > 0 else -1, axis=-1)
        out[i] = d
    return out


def augment_sample(src, dst, config: AugmentConfig, seed: int, *, overwrite: bool = False, progress=None):
    """Write `config.copies` augmented copies of every source of sample file `src` to `dst`.

    The output has the input's band cubes (N x copies of them, copies of a source
    adjacent), its sensitivity tables, a SOURCES table with a ``COPY`` column (0 is
    the original) and an ``AUGMENT`` table recording what was done to each copy. The
    direct stamps are not carried over. Written under a temporary name, then renamed.
    Bad pixels of the input are written flagged and neutralised (`SampleReader.read`).

    Raises
    ------
    InputError
        If `src` is missing, empty, not FITS, or lacks its bands' SCI/ERR/DQ HDUs.
    """
    dst = check_output_path(dst, overwrite, inputs=(src,))
    rng = np.random.default_rng(seed)
    # The reader checks the input (missing, empty or not FITS, no BANDS, missing band HDUs) before anything is written.
    with SampleReader(src) as reader:
        bands = reader.bands
        sources = reader.sources()
        n_out = reader.n * config.copies
        with atomic_output(dst, overwrite) as tmp:
            with fitsio.FITS(str(tmp), "rw", clobber=True) as out:
                # The input's cards, less cfitsio's boilerplate COMMENT (written again) and with this run's DATE and SWVERS.
                header = fitsio.FITSHDR([r for r in reader.fits[0].read_header().records() if not _fitsio_boilerplate(r)])
                for card in software_cards():
                    header.add_record(card)
                header["NSOURCE"] = n_out
                header.add_record({"name": "AUGCOPY", "value": config.copies, "comment": "Augmented copies per source"})
                header.add_record({"name": "AUGSEED", "value": seed, "comment": "Seed of the augmentations"})
                header.add_record({"name": "AUGSRC", "value": Path(src).name, "comment": "Augmented sample file"})
                out.write(None, header=header)
                add_checksum_cards(out[0])
                for b in bands:
                    for ext in ("SCI", "ERR", "DQ"):
                        hdu = reader.fits[f"{b}_{ext}"]
                        out.create_image_hdu(dims=[n_out, *reader.shape], dtype="i4" if ext == "DQ" else "f4", extname=f"{b}_{ext}")
                        cube_header = hdu.read_header()
                        out[f"{b}_{ext}"].write_key("EXTNAME", f"{b}_{ext}", cube_header.get_comment("EXTNAME") or f"{ext} cube of band {b}")
                        out[f"{b}_{ext}"].write_keys([r for r in cube_header.records() if r["name"] not in _STRUCTURAL])
                        add_checksum_cards(out[f"{b}_{ext}"])
                    if f"{b}_SENS" in reader.fits:
                        sens = reader.fits[f"{b}_SENS"]
                        what = sens.read_header().get_comment("EXTNAME") or "First-order sensitivity of the band"
                        write_table(out, sens.read(), f"{b}_SENS", what)
                records = []
                for start, sci, err, dq in reader.iter_chunks(64):
                    params = np.concatenate([paper_copies(config, rng) for _ in range(len(sci))])
                    rep = np.repeat(np.arange(len(sci)), config.copies)
                    a_sci, a_err = apply(sci[rep], err[rep], params, rng, config.wrap)
                    a_dq = apply_dq(dq[rep], params, config.wrap)
                    first = [start * config.copies, 0, 0]
                    for k, b in enumerate(bands):
                        out[f"{b}_SCI"].write(np.ascontiguousarray(a_sci[:, k]), start=first)
                        out[f"{b}_ERR"].write(np.ascontiguousarray(a_err[:, k]), start=first)
                        out[f"{b}_DQ"].write(np.ascontiguousarray(a_dq[:, k]), start=first)
                    records.append((start + rep, params))
                    if progress:
                        progress(start + len(sci), reader.n)
                rows = np.concatenate([r for r, _ in records])
                params = np.concatenate([p for _, p in records])
                copy = np.tile(np.arange(config.copies), reader.n).astype(np.int16)
                if sources is not None:
                    table = sources[rows]
                    table["COPY"] = copy
                    write_table(out, table.as_array(), "SOURCES", "Augmented sources, in cube order")
                aug = np.zeros(n_out, dtype=[("SOURCE_ID", "i8"), ("COPY", "i2"), *PARAM_DTYPE])
                aug["SOURCE_ID"] = np.asarray(sources["SOURCE_ID"])[rows] if sources is not None else rows
                aug["COPY"] = copy
                for name, _ in PARAM_DTYPE:
                    aug[name] = params[name]
                write_table(out, aug, "AUGMENT", "What was done to each copy")
            write_checksums(tmp)
    return dst


def _fitsio_boilerplate(record: dict) -> bool:
    text = str(record.get("value", "")).strip()
    return record["name"] == "COMMENT" and text.startswith(("FITS (Flexible Image Transport System)", "and Astrophysics', volume 376"))


_STRUCTURAL = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT", "EXTEND", "EXTNAME", "CHECKSUM", "DATASUM"}

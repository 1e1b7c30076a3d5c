"""The contamination model: every segmented source's dispersed light, grizli's first pass.

Every source of the direct image's segmentation map (catalogued or not) is dispersed
with a first-guess spectrum, flat in f_lambda, scaled to its direct-image flux: the sum
of the direct image's SCI [e-/s] within its segment, times ``PHOTFLAM``
[erg/s/cm2/Angstrom per e-/s] (or, without it, 10^(-0.4 (ABZP + 48.6)) c / PHOTPLAM^2,
the same number for a filter whose pivot wavelength is PHOTPLAM). Each pixel of the
segment disperses its own share (its SCI value) along the order's trace, at its
position mapped through the direct image's and the exposure's WCS, into every order the
exposure names (``ORDER<i>`` keywords, else the band's orders): the morphology is the
direct image's, its PSF included, and only where the segmentation reaches.

`FieldModel` holds the segments (pixel lists: memory grows with the segmented area, not
the detector) and renders one full-frame model per exposure (`FieldModel.frame`, float32
e-/s); `FieldModel.own` renders one source's part into a small tile, so that the model
of "every source but i" is the frame less that tile, cut at source i's offsets.

**Second pass** (`FieldModel.refine`, ``--refine``; grizli's ``refine_list``): each
segment brighter than a magnitude limit in the direct image, brightest first, gets its
own spectrum: f_lambda = F x PHOTFLAM x sum_c a_c P_c(u), Legendre polynomials P_c of
the band's wavelength mapped to u in [-1, 1] (a = (1, 0, ...) is the first pass). The
a_c are the weighted least-squares fit, over every exposure of the band, of the
segment's dispersed basis images to the data less every other segment's current model
(ERR^-2 weights, good pixels only); the frames are then updated with the fitted model
before the next segment is fitted, so that a faint neighbour's fit sees its bright
neighbours' refined light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slitcli.errors import InputError
from slitcli.fields.cutout import cut_box
from slitcli.instrument import Band, Instrument, sensitivity
from slitcli.sim.disperse import disperse_kernel, spectral_samples
from slitcli.sim.wcs import pixel_to_world, world_to_pixel

__all__ = ["Segment", "photflam", "direct_zeropoint", "read_segments", "FieldModel", "OVERSAMPLE"]

#: Spectral samples per pixel along the dispersion (the field simulator's default).
OVERSAMPLE = 5
_C_AA_S = 2.99792458e18


@dataclass
class Segment:
    """One segment of the direct image: its ID, bounding box and lit pixels.

    Attributes
    ----------
    source_id : int
    r0, c0, h, w : int
        0-based direct-image row and column of the box's pixel (0, 0), and its size.
    rows, cols : int64 arrays
        The segment's pixels within the box.
    values : float64 array
        Direct-image SCI there [e-/s].
    flux : float
        Their sum [e-/s].
    """

    source_id: int
    r0: int
    c0: int
    h: int
    w: int
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    flux: float


def _header_number(direct, name: str, *, positive: bool = True) -> float | None:
    """Keyword `name` of the direct image (SCI header, then primary) as a finite number (> 0 if `positive`), or None."""
    for h in (direct.fits["SCI"].read_header(), direct.fits[0].read_header()):
        if name in h and h[name] is not None and str(h[name]).strip() != "":
            try:
                value = float(h[name])
            except (TypeError, ValueError):
                continue
            if np.isfinite(value) and (value > 0 or not positive):
                return value
    return None


def photflam(direct) -> float:
    """Flat f_lambda [erg/s/cm2/Angstrom] giving 1 e-/s in the direct image, from its keywords.

    ``PHOTFLAM`` (SCI, then primary header); else ``ABZP`` [AB mag of 1 e-/s] with
    ``PHOTPLAM`` [Angstrom]. `InputError` naming the file if neither is there.
    """
    value = _header_number(direct, "PHOTFLAM")
    if value is not None:
        return value
    zp, pivot = _header_number(direct, "ABZP"), _header_number(direct, "PHOTPLAM")
    if zp is not None and pivot is not None:
        return 10.0 ** (-0.4 * (zp + 48.6)) * _C_AA_S / pivot**2
    msg = f"{direct.path}: HDU SCI has no PHOTFLAM (nor ABZP with PHOTPLAM): cannot turn the direct image's e-/s into the contamination model's f_lambda"
    raise InputError(msg)


def direct_zeropoint(direct) -> float:
    """AB magnitude of 1 e-/s in the direct image: ``ABZP``, else from ``PHOTFLAM`` and ``PHOTPLAM`` [Angstrom].

    `InputError` naming the file if neither is there (the second pass selects its
    neighbours by magnitude).
    """
    zp = _header_number(direct, "ABZP", positive=False)
    if zp is not None:
        return zp
    pivot = _header_number(direct, "PHOTPLAM")
    if pivot is None:
        msg = f"{direct.path}: HDU SCI has no ABZP (nor PHOTPLAM with PHOTFLAM): cannot select the bright neighbours of the second pass by magnitude"
        raise InputError(msg)
    return float(-2.5 * np.log10(photflam(direct) * pivot**2 / _C_AA_S) - 48.6)


def read_segments(direct) -> list[Segment]:
    """Every segment of the direct image (`slitcli.fields.exposure.DirectImage`), read in blocks of rows.

    Segments whose SCI sums to <= 0 (noise) are left out: they would disperse no light.
    """
    ny, nx = direct.shape
    boxes: dict[int, list[int]] = {}
    for y0 in range(0, ny, direct.BLOCK_ROWS):
        y1 = min(y0 + direct.BLOCK_ROWS, ny)
        seg = direct.fits["SEGMENTATION"][y0:y1, :]
        r, c = np.nonzero(seg)
        if r.size == 0:
            continue
        ids = seg[r, c].astype(np.int64)
        order = np.argsort(ids, kind="stable")
        ids, r, c = ids[order], r[order] + y0, c[order]
        starts = np.r_[0, np.nonzero(np.diff(ids))[0] + 1]
        for sid, rmin, rmax, cmin, cmax in zip(ids[starts], np.minimum.reduceat(r, starts), np.maximum.reduceat(r, starts), np.minimum.reduceat(c, starts), np.maximum.reduceat(c, starts)):
            b = boxes.setdefault(int(sid), [int(rmin), int(rmax), int(cmin), int(cmax)])
            b[0], b[1], b[2], b[3] = min(b[0], rmin), max(b[1], rmax), min(b[2], cmin), max(b[3], cmax)
    out = []
    for sid, (rmin, rmax, cmin, cmax) in sorted(boxes.items()):
        seg = direct.fits["SEGMENTATION"][rmin : rmax + 1, cmin : cmax + 1]
        sci = direct.fits["SCI"][rmin : rmax + 1, cmin : cmax + 1].astype(np.float64)
        rows, cols = np.nonzero((seg == sid) & np.isfinite(sci))
        values = sci[rows, cols]
        flux = float(values.sum())
        if flux > 0:
            out.append(Segment(sid, rmin, cmin, rmax - rmin + 1, cmax - cmin + 1, rows.astype(np.int64), cols.astype(np.int64), np.ascontiguousarray(values), flux))
    return out


def _exposure_orders(exposure, band: Band) -> list:
    """The orders an exposure names (``NORDERS``, ``ORDER<i>``), else all of the band's."""
    header = exposure.fits["SCI"].read_header()
    n = int(header.get("NORDERS", 0) or 0)
    names = [str(header[f"ORDER{i}"]).strip() for i in range(1, n + 1) if f"ORDER{i}" in header]
    return [band.order(name) for name in names] if names else list(band.orders)


class FieldModel:
    """The first-pass model of one band's exposures: every segment dispersed with a flat f_lambda.

    Parameters
    ----------
    segments : list of Segment
        `read_segments` of the direct image.
    direct_wcs : astropy.wcs.WCS
        The direct image's celestial WCS.
    direct_shape : (ny, nx)
    flam_per_rate : float
        `photflam` of the direct image.
    instrument : Instrument
    band : Band
    exposures : list of Exposure
        The band's exposures (WCS, shape, orders).

    Raises
    ------
    InputError
        An exposure whose pixel grid is not the direct image's shifted (scale or
        orientation differ by more than 1% at the direct image's centre): the model
        moves each segment as a whole, without resampling.
    """

    def __init__(self, segments, direct_wcs, direct_shape, flam_per_rate: float, instrument: Instrument, band: Band, exposures, direct_path=""):
        self.segments = segments
        self.exposures = exposures
        self.index = {s.source_id: k for k, s in enumerate(segments)}
        # Segment centres on the sky, then on each exposure.
        xc = np.array([s.c0 + 0.5 * (s.w - 1) for s in segments], float)
        yc = np.array([s.r0 + 0.5 * (s.h - 1) for s in segments], float)
        ra, dec = pixel_to_world(direct_wcs, xc, yc)
        cy, cx = 0.5 * (direct_shape[0] - 1), 0.5 * (direct_shape[1] - 1)
        probe_ra, probe_dec = pixel_to_world(direct_wcs, np.array([cx, cx + 1.0, cx]), np.array([cy, cy, cy + 1.0]))
        self.band, self.instrument, self.flam_per_rate = band, instrument, flam_per_rate
        self.coeffs: dict[int, np.ndarray] = {}  # segment index -> fitted Legendre coefficients (second pass)
        self._basis_cache: dict = {}
        self.origin = []  # per exposure: (x0, y0) of each segment's box pixel (0, 0) [0-based]
        self.samples = []  # per exposure: list of (dx, dy, rate per e-/s of direct flux) per order
        for e in exposures:
            px, py = world_to_pixel(e.wcs, probe_ra, probe_dec)
            jac = np.array([[px[1] - px[0], px[2] - px[0]], [py[1] - py[0], py[2] - py[0]]])
            if not np.all(np.isfinite(jac)) or np.max(np.abs(jac - np.eye(2))) > 0.01:
                msg = f"{direct_path}: its pixel grid differs from {e.path}'s in scale or orientation (Jacobian {np.round(jac, 4).tolist()}); the contamination model needs the direct image on the exposures' pixel grid"
                raise InputError(msg)
            x, y = world_to_pixel(e.wcs, ra, dec) if segments else (np.zeros(0), np.zeros(0))
            self.origin.append((x - 0.5 * (np.array([s.w for s in segments]) - 1), y - 0.5 * (np.array([s.h for s in segments]) - 1)))
            per_order = []
            for order in _exposure_orders(e, band):
                wave = np.linspace(band.throughput.wave_aa[0], band.throughput.wave_aa[-1], 8001)
                density = flam_per_rate * sensitivity(instrument, band, order, wave)
                lo, hi = sorted(float(v) for v in order.offset_of_wavelength(np.array([wave[0], wave[-1]])))
                per_order.append(spectral_samples(order, wave, density, lo, hi, OVERSAMPLE))
            self.samples.append(per_order)

    def _render(self, k: int, j: int, out: np.ndarray, r0: int, c0: int, rates=None) -> None:
        """Add segment `k`'s model in exposure `j` into `out`, whose pixel (0, 0) is the detector's (r0, c0).

        `rates`: per order, the samples' count rates [e-/s per e-/s of direct flux];
        default the segment's spectrum (first pass, or its second-pass fit).
        """
        s = self.segments[k]
        x0 = float(self.origin[j][0][k]) - c0
        y0 = float(self.origin[j][1][k]) - r0
        if rates is None:
            rates = self._rates(k, j)
        for (dx, dy, _), rate in zip(self.samples[j], rates, strict=True):
            disperse_kernel(s.rows, s.cols, s.values, x0, y0, dx, dy, rate, out)

    def _rates(self, k: int, j: int) -> list[np.ndarray]:
        """Per order, the sample rates of segment `k`'s spectrum in exposure `j` (flat unless refined)."""
        a = self.coeffs.get(k)
        if a is None:
            return [rate for _, _, rate in self.samples[j]]
        return [np.tensordot(a, basis, axes=1) for basis in self._basis(j, a.size - 1)]

    def _basis(self, j: int, degree: int) -> list[np.ndarray]:
        """Per order of exposure `j`, the sample rates [degree + 1, nsample] of the Legendre basis spectra."""
        key = (j, degree)
        cache = self._basis_cache
        if key not in cache:
            band = self.band
            wave = np.linspace(band.throughput.wave_aa[0], band.throughput.wave_aa[-1], 8001)
            u = 2.0 * (wave - band.wave_min_aa) / (band.wave_max_aa - band.wave_min_aa) - 1.0
            polys = np.polynomial.legendre.legvander(u, degree).T  # [degree + 1, nwave]
            per_order = []
            for order in _exposure_orders(self.exposures[j], band):
                # The same wavelength grid and sample range as the first pass (`__init__`), so the same samples.
                density = self.flam_per_rate * sensitivity(self.instrument, band, order, wave)
                lo, hi = sorted(float(v) for v in order.offset_of_wavelength(np.array([wave[0], wave[-1]])))
                per_order.append(np.stack([spectral_samples(order, wave, density * p, lo, hi, OVERSAMPLE)[2] for p in polys]))
            cache[key] = per_order
        return cache[key]

    def _footprint(self, k: int, j: int) -> tuple[int, int, tuple[int, int]]:
        """(r0, c0, shape) of the detector box holding segment `k`'s light in exposure `j`, clipped to the detector."""
        s = self.segments[k]
        x0, y0 = float(self.origin[j][0][k]), float(self.origin[j][1][k])
        dx = np.concatenate([d for d, _, _ in self.samples[j]])
        dy = np.concatenate([d for _, d, _ in self.samples[j]])
        ny, nx = self.exposures[j].shape
        r0, r1 = max(int(np.floor(y0 + dy.min())) - 2, 0), min(int(np.ceil(y0 + s.h + dy.max())) + 2, ny)
        c0, c1 = max(int(np.floor(x0 + dx.min())) - 2, 0), min(int(np.ceil(x0 + s.w + dx.max())) + 2, nx)
        return r0, c0, (max(r1 - r0, 0), max(c1 - c0, 0))

    def refine(self, frames, mag_max: float, zeropoint: float, degree: int = 2) -> int:
        """Second pass: fit the spectrum of every segment brighter than `mag_max` and update `frames` in place.

        Parameters
        ----------
        frames : list of float32 arrays
            `frame` of every exposure (the first pass), updated segment by segment.
        mag_max : float
            AB magnitude limit in the direct image (`zeropoint` - 2.5 log10 flux).
        zeropoint : float
            `direct_zeropoint` of the direct image.
        degree : int
            Degree of the Legendre polynomial in wavelength (0: a fitted flat f_lambda).

        Returns
        -------
        int
            Segments refitted (those with good pixels on some exposure).
        """
        flux = np.array([s.flux for s in self.segments])
        mags = zeropoint - 2.5 * np.log10(np.maximum(flux, 1e-300))
        n_fit = 0
        for k in np.argsort(mags, kind="stable"):
            if mags[k] > mag_max:
                break
            ata = np.zeros((degree + 1, degree + 1))
            atb = np.zeros(degree + 1)
            boxes = []
            for j, e in enumerate(self.exposures):
                r0, c0, shape = self._footprint(k, j)
                if shape[0] == 0 or shape[1] == 0:
                    continue
                sci, err, good, _ = e.region(r0, c0, shape)
                own = np.zeros(shape)
                self._render(k, j, own, r0, c0)
                others = frames[j][r0 : r0 + shape[0], c0 : c0 + shape[1]] - own
                basis = []
                for c in range(degree + 1):
                    img = np.zeros(shape)
                    self._render(k, j, img, r0, c0, rates=[b[c] for b in self._basis(j, degree)])
                    basis.append(img[good])
                a = np.stack(basis, axis=1)  # [npix, degree + 1]
                w = 1.0 / err[good] ** 2
                ata += a.T @ (a * w[:, None])
                atb += a.T @ (w * (sci[good] - others[good]))
                boxes.append((j, r0, c0, shape, own))
            if not boxes or not np.all(np.isfinite(ata)) or np.linalg.matrix_rank(ata) < degree + 1:
                continue
            self.coeffs[int(k)] = np.linalg.solve(ata, atb)
            for j, r0, c0, shape, own in boxes:
                new = np.zeros(shape)
                self._render(k, j, new, r0, c0)
                frames[j][r0 : r0 + shape[0], c0 : c0 + shape[1]] += (new - own).astype(np.float32)
            n_fit += 1
        return n_fit

    def frame(self, j: int) -> np.ndarray:
        """Model of every segment in exposure `j` [e-/s, float32, the detector's shape]."""
        out = np.zeros(self.exposures[j].shape, np.float32)
        for k in range(len(self.segments)):
            self._render(k, j, out, 0, 0)
        return out

    def own(self, source_id: int, j: int, r0: int, c0: int, shape: tuple[int, int]) -> np.ndarray:
        """The model of `source_id` alone in exposure `j`, in the `shape` box at detector (r0, c0) [e-/s, float64].

        Zero where the box is off the detector (as `cut_box` of the frame), and for a
        source without a segment.
        """
        out = np.zeros(shape)
        k = self.index.get(int(source_id))
        if k is None:
            return out
        self._render(k, j, out, r0, c0)
        ny, nx = self.exposures[j].shape
        rows, cols = np.arange(r0, r0 + shape[0]), np.arange(c0, c0 + shape[1])
        out[(rows < 0) | (rows >= ny), :] = 0.0
        out[:, (cols < 0) | (cols >= nx)] = 0.0
        return out

    def contamination(self, frames, source_id: int, placement, i: int, used, weights, shape) -> np.ndarray:
        """Source `i`'s CONTAM [e-/s]: every other segment's model, cut at its offsets and combined with the data's weights."""
        out = np.zeros(shape)
        for k, j in enumerate(used):
            r0, c0 = int(placement.r0[i, j]), int(placement.c0[i, j])
            out += weights[k] * (cut_box(frames[j], r0, c0, shape, 0.0) - self.own(source_id, j, r0, c0, shape))
        return out

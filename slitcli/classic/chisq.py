"""The template chi-square at grid points, fused in Numba: smear, weighted Gram matrix, NNLS.

`slitcli.classic.template_fit` states the model: at each grid point the templates' point-
source spectra are smeared by the source's kernel along the dispersion, and the chi-square
of the best non-negative combination is kept. `template_fit.smear` and `chi2_grid` do that
step by step on whole arrays, which is clear but moves 100 MB per source through memory.
Here the same sums run point by point in a small buffer:

    G_ij = sum_x ivar(x) M_i(x) M_j(x),   p_i = sum_x ivar(x) M_i(x) f(x),

then the non-negative least squares in this Gram form (Lawson & Hanson 1974, ch. 23, on
the normal equations), and chi2 = f.ivar.f - 2 c.p + c.G.c. Columns are normalised and
ridged as in `chi2_grid`, so the two agree to rounding (tests/classic/test_chisq.py).

The point spectra enter "packed": a stamp of odd (even) width only ever reads the
half-pixel positions of one parity, so only those are kept, and the bands are laid end to
end along the last axis (`pack_spectra`).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["nnls_gram", "lit_ranges", "chi2_jobs"]


@numba.njit(cache=True, nogil=True)
def _solve_passive(gram, proj, passive, out):
    """Solve gram[P, P] s = proj[P] (Cholesky) for the passive set P; out is 0 elsewhere."""
    k = proj.size
    idx = np.nonzero(passive)[0]
    n = idx.size
    chol = np.zeros((n, n))
    for a in range(n):
        for b in range(a + 1):
            s = gram[idx[a], idx[b]]
            for c in range(b):
                s -= chol[a, c] * chol[b, c]
            if a == b:
                chol[a, a] = np.sqrt(max(s, 1e-300))
            else:
                chol[a, b] = s / chol[b, b]
    y = np.zeros(n)
    for a in range(n):
        s = proj[idx[a]]
        for c in range(a):
            s -= chol[a, c] * y[c]
        y[a] = s / chol[a, a]
    for a in range(n - 1, -1, -1):
        s = y[a]
        for c in range(a + 1, n):
            s -= chol[c, a] * y[c]
        y[a] = s / chol[a, a]
    for i in range(k):
        out[i] = 0.0
    for a in range(n):
        out[idx[a]] = y[a]


@numba.njit(cache=True, nogil=True)
def nnls_gram(gram, proj):
    """Non-negative x minimising x.gram.x / 2 - proj.x (Lawson-Hanson active set on the normal equations).

    Parameters
    ----------
    gram : array [k, k]
        Symmetric positive-definite matrix (A^T A of least squares).
    proj : array [k]
        A^T b.

    Returns
    -------
    array [k]
    """
    k = proj.size
    x = np.zeros(k)
    s = np.zeros(k)
    passive = np.zeros(k, np.bool_)
    tol = 1e-12 * max(1.0, np.abs(proj).max())
    grad = proj.copy()
    for _ in range(3 * k):
        best, top = -1, tol
        for i in range(k):
            if not passive[i] and grad[i] > top:
                best, top = i, grad[i]
        if best < 0:
            break
        passive[best] = True
        for _inner in range(3 * k):
            _solve_passive(gram, proj, passive, s)
            alpha = 2.0
            for i in range(k):
                if passive[i] and s[i] <= 0.0:
                    alpha = min(alpha, x[i] / (x[i] - s[i]))
            if alpha > 1.0:
                x[:] = s
                break
            for i in range(k):
                x[i] += alpha * (s[i] - x[i])
                if passive[i] and x[i] <= 1e-15 * max(1.0, s[i]):
                    passive[i] = False
                    x[i] = 0.0
        for i in range(k):
            grad[i] = proj[i]
            for j in range(k):
                grad[i] -= gram[i, j] * x[j]
    return x


@numba.njit(cache=True, nogil=True, fastmath=True)
def _correlate(spectrum, base, taps, c0, c1, out):
    """out[c] = sum_m taps[m] spectrum[base + c + m] for c0 <= c <= c1."""
    # On fresh local arrays, which LLVM knows alias nothing, the loop vectorises (9x faster).
    n = c1 - c0 + 1
    acc = np.zeros(n, np.float32)
    segment = spectrum[base + c0 : base + c1 + taps.size].copy()
    for m in range(taps.size):
        w = np.float32(taps[m])
        for c in range(n):
            acc[c] += w * segment[c + m]
    out[c0 : c1 + 1] = acc


@numba.njit(cache=True, nogil=True, fastmath=True)
def _dot(a, b, c0, c1):
    """sum_c a[c] b[c] for c0 <= c <= c1."""
    s = 0.0
    for c in range(c0, c1 + 1):
        s += a[c] * b[c]
    return s


def lit_ranges(packed: np.ndarray, sizes) -> np.ndarray:
    """First and last non-zero index of each packed spectrum in each band's stretch: [n_grid, n_template, n_band, 2] (int64; last < first if none)."""
    out = np.empty((*packed.shape[:2], len(sizes), 2), np.int64)
    start = 0
    for b, size in enumerate(sizes):
        lit = packed[..., start : start + size] != 0
        any_lit = lit.any(axis=-1)
        out[..., b, 0] = np.where(any_lit, start + lit.argmax(axis=-1), start + size)
        out[..., b, 1] = np.where(any_lit, start + size - 1 - lit[..., ::-1].argmax(axis=-1), start - 1)
        start += size
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def _chi2_point(packed, lit, z, bases, ncols, offsets, taps, flux, ivar, bb, sky):
    """The chi-square at grid point `z` of one source (arguments as `chi2_jobs`, for that source; bb = sum ivar flux^2)."""
    n_templates = packed.shape[1]
    # With `sky`, each band adds two constant templates, +1 and -1 on its columns: a sky
    # level left in SCI of either sign (NNLS keeps coefficients >= 0).
    k = n_templates + (2 * bases.size if sky else 0)
    n_taps = taps.size
    gram = np.zeros((k, k))
    proj = np.zeros(k)
    lo = np.empty(n_templates, np.int64)
    hi = np.empty(n_templates, np.int64)
    rows = np.empty((n_templates, ncols.max()))
    weighted = np.empty((n_templates, ncols.max()))
    for b in range(bases.size):
        nc = ncols[b]
        base = bases[b]
        for i in range(n_templates):
            # An emission line lights a few positions only: smear and sum over the
            # columns it reaches, [first lit - taps + 1, last lit] (`lit_ranges`).
            lo[i] = max(lit[z, i, b, 0] - base - n_taps + 1, 0)
            hi[i] = min(lit[z, i, b, 1] - base, nc - 1)
            if lo[i] <= hi[i]:
                _correlate(packed[z, i], base, taps, lo[i], hi[i], rows[i])
                for c in range(lo[i], hi[i] + 1):
                    weighted[i, c] = ivar[offsets[b] + c] * rows[i, c]
        data = flux[offsets[b] : offsets[b] + nc]
        for i in range(n_templates):
            w_i = weighted[i]
            s = 0.0
            for c in range(lo[i], hi[i] + 1):
                s += w_i[c] * data[c]
            proj[i] += s
            for j in range(i + 1):
                gram[i, j] += _dot(w_i, rows[j], max(lo[i], lo[j]), min(hi[i], hi[j]))
        if sky:
            weight = ivar[offsets[b] : offsets[b] + nc]
            plus, minus = n_templates + 2 * b, n_templates + 2 * b + 1
            total, on_data = 0.0, 0.0
            for c in range(nc):
                total += weight[c]
                on_data += weight[c] * data[c]
            gram[plus, plus], gram[minus, minus], gram[minus, plus] = total, total, -total
            proj[plus], proj[minus] = on_data, -on_data
            for i in range(n_templates):
                s = 0.0
                for c in range(lo[i], hi[i] + 1):
                    s += weighted[i, c]
                gram[plus, i], gram[minus, i] = s, -s
    for i in range(k):
        for j in range(i):
            gram[j, i] = gram[i, j]
    # As chi2_grid: unit-normalised columns; a template with no light in the fitted pixels
    # gets a unit diagonal and no projection (coefficient 0); a tiny ridge for collinear ones.
    norms = np.sqrt(np.maximum(np.diag(gram).copy(), 0.0))
    for i in range(k):
        for j in range(k):
            if norms[i] > 0 and norms[j] > 0:
                gram[i, j] /= norms[i] * norms[j]
            else:
                gram[i, j] = 0.0
        if norms[i] > 0:
            proj[i] /= norms[i]
            gram[i, i] = gram[i, i] * (1 + 1e-9) + 1e-12
        else:
            proj[i] = 0.0
            gram[i, i] = 1.0
    x = nnls_gram(gram, proj)
    chi2 = bb
    for i in range(k):
        chi2 -= 2.0 * x[i] * proj[i]
        for j in range(k):
            chi2 += x[i] * gram[i, j] * x[j]
    return max(chi2, 0.0)


@numba.njit(cache=True, nogil=True, parallel=True)
def chi2_jobs(packed, lit, job_source, job_point, bases, ncols, offsets, taps, n_taps, flux, ivar, sky=False):
    """The chi-square of source `job_source[j]` at grid point `job_point[j]`, for every job j (parallel over jobs).

    Parameters
    ----------
    packed : array [n_grid, n_template, n_packed] (float32)
        Packed point spectra [e-/s per unit amplitude] (`pack_spectra` in template_fit).
    lit : array of int [n_grid, n_template, n_band, 2]
        `lit_ranges(packed, ...)`.
    job_source, job_point : array of int [n_jobs]
        Source index and grid index of each job.
    bases : array of int [n_source, n_band]
        Index in the packed axis that column 0 of each band reads with tap 0.
    ncols, offsets : array of int [n_band]
        Columns fitted per band, and where each band's columns start in `flux`/`ivar`.
    taps : array [n_source, max taps]
        Each source's smearing kernel, reversed (tap m reads packed position base + c + m);
        the first `n_taps[s]` are used.
    flux, ivar : array [n_source, n_pixels]
        Extracted spectra [e-/s] and inverse variances [(e-/s)^-2], bands end to end.
    sky : bool
        Also fit a constant per band, of either sign (a sky level left in the data).
    """
    nsrc = flux.shape[0]
    bb = np.zeros(nsrc)
    for s in range(nsrc):
        for x in range(flux.shape[1]):
            bb[s] += ivar[s, x] * flux[s, x] * flux[s, x]
    out = np.empty(job_point.size)
    for j in numba.prange(job_point.size):
        s = job_source[j]
        out[j] = _chi2_point(packed, lit, job_point[j], bases[s], ncols, offsets, taps[s, : n_taps[s]], flux[s], ivar[s], bb[s], sky)
    return out

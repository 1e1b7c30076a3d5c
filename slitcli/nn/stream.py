"""The training stream: an endless, reproducible supply of freshly simulated cutouts.

`TrainingStream` is a Torch `IterableDataset` whose items are whole batches (use it with
``DataLoader(stream, batch_size=None, num_workers=...)``): item k holds `batch_size`
sources drawn as the embedded default population draws them
(`slitcli.sim.population.draw_sources`:
n(z), luminosity function within the flux limits, kcorrect SEDs, HXDF shapes turned and
flipped), rendered in both bands by the Torch engine
(`slitcli.sim.torch_engine.render`), with extra dust and emission lines
(`slitcli.sim.sed_variation`) and the nuisances of real data added at random (`StreamConfig`).

Reproducibility: every random number of item k derives from ``SeedSequence(seed,
spawn_key=(k, stream))``, one stream per kind of draw (population, SED variation, nuisances,
neighbours, cosmic rays, detector noise with one generator per source). Worker w of W DataLoader workers
renders items w, w + W, w + 2W, ..., and the DataLoader takes them round-robin, so the
stream (items and their order) is the same whatever the number of workers; with a
`stride` s (one training process of s under torchrun), worker w renders items
start + s w, start + s (w + W), .... Turning a
nuisance's probability up or down changes only that nuisance's draws.

Memory: nothing is kept between items beyond the SED and shape libraries (cached once per
process, a few MB).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from slitcli.instrument import Instrument, load_instrument
from slitcli.io.layout import DQ_DO_NOT_USE, DQ_JUMP_DET, band_layout
from slitcli.sim.cosmics import draw_cosmic_rays
from slitcli.sim.noise_torch import observe, source_generators
from slitcli.sim.population import PopulationConfig, draw_sources
from slitcli.sim.sed_variation import (
    LINE_RATIO_RANGES,
    PARAMETRIC_PIXEL_SCALE_ARCSEC,
    add_lines,
    attenuation,
    clumpy_sersic_image,
)
from slitcli.sim.seds import OBS_WAVE_AA, ab_magnitude, load_sed_library
from slitcli.sim.simulate import SimulateConfig, direct_stamp
from slitcli.sim.torch_engine import render

__all__ = ["StreamConfig", "StreamDraw", "TrainingStream", "batch_snr"]

# Child streams of each item's SeedSequence.
_POPULATION, _NUISANCE, _NEIGHBOUR, _COSMICS, _NOISE, _SED, _SHAPE = range(7)


@dataclass(frozen=True)
class StreamConfig:
    """What the training stream draws; probabilities per source, each nuisance independent.

    Attributes
    ----------
    batch_size : int
        Sources per item.
    bands : tuple of str
        Bands, in channel order.
    snr_band : str
        Band of the item's ``snr`` (the paper's SNR_GI).
    cutout_height, cutout_width, stamp_size, oversample : int
        As `slitcli.sim.simulate.SimulateConfig` (pixels; sub-samples per pixel).
    poisson : bool
        Poisson shot noise, or (default) its Gaussian approximation of the same mean and
        variance, ten times faster and fair here: every pixel expects >= 186 e- of sky
        over the 600 s (`slitcli.sim.noise_torch`).
    p_neighbour : float
        Probability of a neighbour: a second galaxy of the population whose spectrum
        overlaps the cutout, offset by `neighbour_min_rows`..`neighbour_max_rows` rows (either
        side) and up to +-`neighbour_max_columns` columns (uniform), its flux through the i
        band `neighbour_min_ratio`..`neighbour_max_ratio` times the source's (log-uniform).
        Its light joins the expected image before the noise is drawn, so the sky is counted
        once. Neighbours are default-population galaxies (no SED or shape variation), moved
        by the source's wavelength-calibration shift too (the same exposure). 0.3 by default: at the survey depth (i < 23.5 and fainter neighbours) the
        slitless spectra of about a third of galaxies overlap another's within a few
        arcseconds across the dispersion (the spectra are 1-2 arcmin long; HST/WFC3 grism
        surveys such as 3D-HST flag contamination in a comparable fraction).
    p_sky_residual : float
        Probability of a sky-level residual: a constant offset of SCI drawn uniform in
        +-`sky_residual_max` times the band's sky rate, independently per band; ERR
        unchanged. Grism sky subtraction with master-sky templates leaves residuals of
        about 1-3% of the sky (e.g. HST/WFC3 IR grism: Brammer et al. 2012, Pirzkal et
        al. 2017).
    p_wavelength_shift : float
        Probability of a wavelength-calibration error: every band's spectrum moved along
        the dispersion by a shift uniform in +-`wavelength_shift_max_pix` pixels (the
        direct position and WCS stay: the error of a misplaced zero point). CSST's
        expected calibration errors reach about 1-3 pixels.
    p_cosmic_rays : float
        Probability that a cutout keeps its cosmic rays (`slitcli.sim.cosmics`:
        `cosmic_ray_rate_per_cm2_s` over the whole exposure time, 10 um pixels, about 14
        events per 40 x 480 cutout at 1.2 /cm2/s over 600 s), drawn independently per
        band: their charge is added to SCI and their pixels flagged JUMP_DET | DO_NOT_USE
        in DQ; ERR unchanged.
    p_dust : float
        Probability of extra dust attenuation (`slitcli.sim.sed_variation`) with E(B-V)
        uniform in 0..`ebv_max` (star-forming galaxies span E(B-V) = 0-0.5 in the
        Balmer decrement: Garn & Best 2010; Calzetti 2000), the SMC-like curve with
        probability `p_smc`, Calzetti's otherwise.
    p_lines : float
        Probability of extra emission lines (`slitcli.sim.sed_variation.add_lines`), the
        rest-frame H-alpha equivalent width log-uniform in `halpha_ew_min_aa`..
        `halpha_ew_max_aa` (star-forming galaxies at 0.5 < z < 2 have rest EW(H-alpha) of
        about 10 to a few hundred Angstrom, medians 30-150 Angstrom rising with z:
        Fumagalli et al. 2012, Sobral et al. 2014) and the line ratios drawn over
        `sed_variation.LINE_RATIO_RANGES`. Lines come first, then the dust, then the SED
        is scaled back to the i magnitude the population drew (the luminosity function
        and flux limits describe observed, already attenuated galaxies), so only the
        spectrum's shape changes. The sources' own kcorrect lines stay.
    p_size_scale : float
        Probability that an HXDF shape is magnified by a factor log-uniform in
        `size_scale_min`..`size_scale_max` (its pixel scale is multiplied by it): the
        library's few hundred deep-field galaxies then cover the size scatter at fixed
        luminosity (sigma of ln R_e about 0.4-0.5: Shen et al. 2003, van der Wel et al. 2014).
    p_parametric : float
        Probability that the shape is instead a Sersic profile with clumps
        (`sed_variation.clumpy_sersic_image`): index n log-uniform in 0.5-4, R_e log-uniform
        in 0.1-1.0 arcsec (van der Wel et al. 2014: 1-8 kpc at 0.2 < z < 1), b/a uniform in
        0.3-1, any position angle, 0-4 Gaussian clumps (sigma 0.05-0.15 arcsec, each 2-10%
        of the light, offsets Gaussian of sigma R_e), as the clumps of star-forming
        galaxies at z = 0.5-2 (Guo et al. 2015: a few percent of the UV light each).
    population : PopulationConfig
        The population the sources (and neighbours) are drawn from.
    seed : int
    """

    batch_size: int = 64
    bands: tuple[str, ...] = ("GV", "GI")
    snr_band: str = "GI"
    cutout_height: int = 40
    cutout_width: int = 480
    stamp_size: int = 64
    oversample: int = 5
    poisson: bool = False
    p_neighbour: float = 0.3
    neighbour_min_rows: int = 4
    neighbour_max_rows: int = 12
    neighbour_max_columns: float = 100.0
    neighbour_min_ratio: float = 0.5
    neighbour_max_ratio: float = 3.0
    p_sky_residual: float = 0.3
    sky_residual_max: float = 0.03
    p_wavelength_shift: float = 0.3
    wavelength_shift_max_pix: float = 2.0
    p_cosmic_rays: float = 0.3
    cosmic_ray_rate_per_cm2_s: float = 1.2
    p_dust: float = 0.5
    ebv_max: float = 0.5
    p_smc: float = 0.5
    p_lines: float = 0.5
    halpha_ew_min_aa: float = 5.0
    halpha_ew_max_aa: float = 500.0
    p_size_scale: float = 0.5
    size_scale_min: float = 0.7
    size_scale_max: float = 1.5
    p_parametric: float = 0.2
    population: PopulationConfig = field(default_factory=PopulationConfig)
    seed: int = 0

    def __post_init__(self):
        for key in ("p_neighbour", "p_sky_residual", "p_wavelength_shift", "p_cosmic_rays", "p_dust", "p_smc", "p_lines", "p_size_scale", "p_parametric"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                msg = f"{key} must lie in [0, 1], got {getattr(self, key)}"
                raise ValueError(msg)
        for key in ("batch_size", "cutout_height", "cutout_width", "stamp_size", "oversample"):
            if getattr(self, key) < 1:
                msg = f"{key} must be >= 1"
                raise ValueError(msg)
        if not self.bands or self.snr_band not in self.bands:
            msg = f"snr_band {self.snr_band!r} must be one of bands {list(self.bands)}"
            raise ValueError(msg)
        if not 0 <= self.neighbour_min_rows <= self.neighbour_max_rows:
            msg = "need 0 <= neighbour_min_rows <= neighbour_max_rows"
            raise ValueError(msg)
        if not 0 < self.neighbour_min_ratio <= self.neighbour_max_ratio:
            msg = "need 0 < neighbour_min_ratio <= neighbour_max_ratio"
            raise ValueError(msg)
        if not 0 < self.size_scale_min <= self.size_scale_max:
            msg = "need 0 < size_scale_min <= size_scale_max"
            raise ValueError(msg)
        if not 0 < self.halpha_ew_min_aa <= self.halpha_ew_max_aa:
            msg = "need 0 < halpha_ew_min_aa <= halpha_ew_max_aa"
            raise ValueError(msg)
        for key in ("neighbour_max_columns", "sky_residual_max", "wavelength_shift_max_pix", "cosmic_ray_rate_per_cm2_s", "ebv_max"):
            if getattr(self, key) < 0:
                msg = f"{key} must be >= 0"
                raise ValueError(msg)


@dataclass
class StreamDraw:
    """Everything drawn for one item, before rendering (per source unless said).

    Attributes
    ----------
    index : int
        Item index in the stream.
    sources : list of Source
    stamps : float64 array [n, s, s]
        PSF-convolved direct stamps.
    shift_pix : array [n]
        Wavelength-calibration shift [pixel] (0 where none).
    sky_offset : array [n, bands]
        Sky residual as a fraction of each band's sky rate (0 where none).
    cosmic_rays : bool array [n, bands]
    neighbour_of : int array [m]
        Which source each neighbour overlaps.
    neighbours : list of Source
        The neighbours, `flam` already scaled to `neighbour_ratio` times the source's i flux.
    neighbour_stamps : float64 array [m, s, s]
    neighbour_rows, neighbour_columns : array [m]
        Offset of each neighbour from its source [pixel]: integer rows, columns (float).
    neighbour_ratio : array [m]
        i-band flux of the neighbour over the source's.
    ebv : array [n]
        Extra E(B-V) (0 where none); `curve` the attenuation curve's name ("" where none).
    ew_halpha_aa : array [n]
        Rest-frame EW of the added H-alpha [Angstrom] (0 where none).
    """

    index: int
    sources: list
    stamps: np.ndarray
    shift_pix: np.ndarray
    sky_offset: np.ndarray
    cosmic_rays: np.ndarray
    neighbour_of: np.ndarray
    neighbours: list
    neighbour_stamps: np.ndarray
    neighbour_rows: np.ndarray
    neighbour_columns: np.ndarray
    neighbour_ratio: np.ndarray
    ebv: np.ndarray
    curve: list
    ew_halpha_aa: np.ndarray


def _item_seed(seed: int, index: int, stream: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(int(index), stream))


class TrainingStream(torch.utils.data.IterableDataset):
    """Endless batches of freshly simulated training cutouts.

    Each item is a dict of tensors (n = `config.batch_size`, b = bands):
    ``sci`` float32 [n, b, ny, nx] (background-subtracted e-/s, as `simulate` writes),
    ``err`` float32 [n, b, ny, nx] (e-/s), ``dq`` int32 [n, b, ny, nx], ``t`` float32 [n]
    (ln(1 + z)), ``z`` float64 [n], ``snr`` float32 [n] (SNR in `config.snr_band`, measured
    as `simulate` measures SNR_GI, nuisances included) and ``index`` (the item's index).

    Parameters
    ----------
    config : StreamConfig
    instrument : Instrument, optional
        Default: the shipped instrument.
    start : int
        Index of the first item (resume a run from there).
    stop : int, optional
        Index past the last item; None: without end.
    stride : int
        Step between the indices of successive items: ``start, start + stride, ...``.
        Rank r of K training processes reads ``start = r, stride = K``, so that the ranks
        draw disjoint items (1: the whole stream).
    device : str
        Where Torch renders (each DataLoader worker renders on it).
    """

    def __init__(self, config: StreamConfig, instrument: Instrument | None = None, *, start: int = 0, stop: int | None = None, device: str = "cpu", stride: int = 1):
        super().__init__()
        if stride < 1:
            msg = f"stride must be >= 1, got {stride}"
            raise ValueError(msg)
        self.config = config
        self.instrument = instrument if instrument is not None else load_instrument()
        self.start, self.stop, self.device, self.stride = int(start), stop, device, int(stride)
        shape = (config.cutout_height, config.cutout_width)
        self.layouts = [band_layout(self.instrument.band(b), shape) for b in config.bands]
        # Neighbours are rendered in a cutout taller by the largest row offset on each side,
        # then the rows of their offset are cut out: no light lost at the edges.
        margin = config.neighbour_max_rows
        self.tall_layouts = [
            dataclasses.replace(lay, shape=(shape[0] + 2 * margin, shape[1]), y_direct_pix=lay.y_direct_pix + margin) for lay in self.layouts
        ]
        self.render_config = SimulateConfig(
            bands=config.bands, cutout_height=config.cutout_height, cutout_width=config.cutout_width,
            stamp_size=config.stamp_size, oversample=config.oversample, noiseless=True,
        )

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        index = self.start + worker * self.stride
        while self.stop is None or index < self.stop:
            yield self.item(index)
            index += workers * self.stride

    # -- drawing ---------------------------------------------------------------------

    def draw(self, index: int) -> StreamDraw:
        """Draw item `index`'s sources and nuisances (no rendering)."""
        cfg, inst = self.config, self.instrument
        n, nb = cfg.batch_size, len(cfg.bands)
        sources = draw_sources(cfg.population, n, 1 + index * n, np.random.default_rng(_item_seed(cfg.seed, index, _POPULATION)))
        ebv, curve, ew = self._vary_seds(sources, np.random.default_rng(_item_seed(cfg.seed, index, _SED)))
        self._vary_shapes(sources, np.random.default_rng(_item_seed(cfg.seed, index, _SHAPE)))
        stamps = np.stack([direct_stamp(s, inst, cfg.stamp_size) for s in sources])
        rng = np.random.default_rng(_item_seed(cfg.seed, index, _NUISANCE))
        # Every variate is drawn whatever the probabilities, so that each nuisance's
        # probability changes its own draws only.
        u = rng.uniform(size=(4, n))
        shift = rng.uniform(-1.0, 1.0, n) * cfg.wavelength_shift_max_pix
        sky = rng.uniform(-1.0, 1.0, (n, nb)) * cfg.sky_residual_max
        rows = rng.integers(cfg.neighbour_min_rows, cfg.neighbour_max_rows + 1, n) * rng.choice([-1, 1], n)
        columns = rng.uniform(-1.0, 1.0, n) * cfg.neighbour_max_columns
        ratio = np.exp(rng.uniform(np.log(cfg.neighbour_min_ratio), np.log(cfg.neighbour_max_ratio), n))
        has_shift = u[0] < cfg.p_wavelength_shift
        sky_offset = np.where((u[1] < cfg.p_sky_residual)[:, None], sky, 0.0)
        cosmic = np.repeat((u[2] < cfg.p_cosmic_rays)[:, None], nb, axis=1)
        of = np.nonzero(u[3] < cfg.p_neighbour)[0]
        neighbours = draw_sources(cfg.population, len(of), 0, np.random.default_rng(_item_seed(cfg.seed, index, _NEIGHBOUR))) if len(of) else []
        for j, i in enumerate(of):
            nb_source = neighbours[j]
            # Same i-band flux ratio whatever the two SEDs: scale by the magnitude difference.
            scale = ratio[i] * 10.0 ** (-0.4 * (sources[i].mag_i - nb_source.mag_i))
            neighbours[j] = dataclasses.replace(nb_source, flam=nb_source.flam * scale, mag_i=sources[i].mag_i - 2.5 * np.log10(ratio[i]))
        nstamps = np.stack([direct_stamp(s, inst, cfg.stamp_size) for s in neighbours]) if neighbours else np.zeros((0, cfg.stamp_size, cfg.stamp_size))
        return StreamDraw(
            index=index, sources=sources, stamps=stamps, shift_pix=np.where(has_shift, shift, 0.0), sky_offset=sky_offset,
            cosmic_rays=cosmic, neighbour_of=of, neighbours=neighbours, neighbour_stamps=nstamps,
            neighbour_rows=rows[of].astype(np.int64), neighbour_columns=columns[of], neighbour_ratio=ratio[of],
            ebv=ebv, curve=curve, ew_halpha_aa=ew,
        )

    def _vary_shapes(self, sources: list, rng: np.random.Generator) -> None:
        """Magnify HXDF shapes or replace them by clumpy Sersic profiles, in place (`StreamConfig.p_size_scale`, `p_parametric`)."""
        cfg = self.config
        for src in sources:
            u = rng.uniform(size=2)
            scale = np.exp(rng.uniform(np.log(cfg.size_scale_min), np.log(cfg.size_scale_max)))
            n, r_e = np.exp(rng.uniform(np.log(0.5), np.log(4.0))), np.exp(rng.uniform(np.log(0.1), np.log(1.0)))
            q, angle, n_clumps = rng.uniform(0.3, 1.0), rng.uniform(0.0, np.pi), int(rng.integers(0, 5))
            clumps = [(*(r_e * rng.standard_normal(2)), rng.uniform(0.05, 0.15), rng.uniform(0.02, 0.1)) for _ in range(4)][:n_clumps]
            if u[1] < cfg.p_parametric:
                src.image = clumpy_sersic_image(n, r_e, q, angle, clumps)
                src.pixel_scale_arcsec = PARAMETRIC_PIXEL_SCALE_ARCSEC
                src.shape_id = f"SERSIC:n={n:.2f},re={r_e:.3f},q={q:.2f},clumps={n_clumps}"
            elif u[0] < cfg.p_size_scale:
                src.pixel_scale_arcsec *= scale
                src.shape_id = f"{src.shape_id}*{scale:.3f}"

    def _vary_seds(self, sources: list, rng: np.random.Generator):
        """Add emission lines and dust to the sources' SEDs in place (`StreamConfig.p_dust`, `p_lines`)."""
        cfg, n = self.config, len(sources)
        u = rng.uniform(size=(3, n))
        ebv = rng.uniform(0.0, cfg.ebv_max, n)
        ew = np.exp(rng.uniform(np.log(cfg.halpha_ew_min_aa), np.log(cfg.halpha_ew_max_aa), n))
        ratios = {key: rng.uniform(lo, hi, n) for key, (lo, hi) in LINE_RATIO_RANGES.items()}
        has_dust, has_lines = u[0] < cfg.p_dust, u[1] < cfg.p_lines
        curve = [("smc" if u[2, i] < cfg.p_smc else "calzetti") if has_dust[i] else "" for i in range(n)]
        library = load_sed_library() if has_lines.any() else None
        for i, src in enumerate(sources):
            if not (has_dust[i] or has_lines[i]):
                continue
            wave, flam = np.asarray(src.wave_aa, dtype=np.float64), src.flam
            if has_lines[i]:
                g = int(src.sed_id.rsplit(":", 1)[1])
                rest = library.coeffs[g] @ library.templates
                # The source's SED is a constant times the rest-frame model stretched to z.
                model = np.interp(wave / (1.0 + src.z), library.rest_wave_aa, rest, left=0.0, right=0.0)
                scale = flam.sum() / model.sum()
                side = np.concatenate([np.arange(6400.0, 6500.0), np.arange(6650.0, 6750.0)])  # off the lines
                continuum = scale * np.interp(side, library.rest_wave_aa, rest).mean()
                flam = add_lines(wave, flam, src.z, continuum, ew[i], {k: v[i] for k, v in ratios.items()})
            if has_dust[i]:
                flam = flam * attenuation(wave, src.z, ebv[i], curve[i])
            src.flam = flam * 10.0 ** (-0.4 * (src.mag_i - float(ab_magnitude(wave, flam))))
        return np.where(has_dust, ebv, 0.0), curve, np.where(has_lines, ew, 0.0)

    # -- rendering -------------------------------------------------------------------

    def item(self, index: int) -> dict[str, Any]:
        """Item `index` of the stream (module docstring)."""
        return self.render(self.draw(index))

    def render(self, d: StreamDraw, *, keep_model: bool = False) -> dict[str, Any]:
        """Render a draw into the item's tensors; with `keep_model`, also ``model`` [n, b, ny, nx],
        the expected rate of the source alone, and ``neighbour_model``, the neighbours' [e-/s]."""
        cfg, inst = self.config, self.instrument
        n, ny = len(d.sources), cfg.cutout_height
        dtype = torch.float32
        stamps = torch.as_tensor(d.stamps, dtype=dtype, device=self.device)
        flam = np.stack([s.flam for s in d.sources])
        wave = np.asarray(OBS_WAVE_AA, dtype=np.float64)
        images = render(stamps, wave, flam, inst, self.layouts, self.render_config, None, shift_pix=d.shift_pix)
        model = torch.stack([images[lay.band.name].model for lay in self.layouts], dim=1)
        extra = torch.zeros_like(model)
        if len(d.neighbours):
            nflam = np.stack([s.flam for s in d.neighbours])
            nstamps = torch.as_tensor(d.neighbour_stamps, dtype=dtype, device=self.device)
            nshift = d.neighbour_columns + d.shift_pix[d.neighbour_of]
            tall = render(nstamps, wave, nflam, inst, self.tall_layouts, self.render_config, None, shift_pix=nshift)
            margin = cfg.neighbour_max_rows
            for b, lay in enumerate(self.tall_layouts):
                t_model = tall[lay.band.name].model
                for j, i in enumerate(d.neighbour_of):
                    top = margin - int(d.neighbour_rows[j])
                    extra[i, b] += t_model[j, top : top + ny]
        generators = source_generators(_item_seed(cfg.seed, d.index, _NOISE), range(n), self.device)
        sci, err, dq = [], [], []
        for b, lay in enumerate(self.layouts):
            s, e, q = observe(model[:, b] + extra[:, b], inst, lay.band, generators, poisson=cfg.poisson)
            sci.append(s), err.append(e), dq.append(q)
        sci, err, dq = torch.stack(sci, 1), torch.stack(err, 1), torch.stack(dq, 1)
        sky = torch.as_tensor(d.sky_offset * np.array([lay.band.sky_e_per_s for lay in self.layouts]), dtype=dtype, device=self.device)
        sci += sky[:, :, None, None]
        if d.cosmic_rays.any():
            self._add_cosmic_rays(d, sci, dq)
        b_snr = list(cfg.bands).index(cfg.snr_band)
        snr = batch_snr(sci[:, b_snr], err[:, b_snr], dq[:, b_snr], model[:, b_snr], self.layouts[b_snr])
        z = torch.as_tensor([s.z for s in d.sources], dtype=torch.float64)
        out = {
            "sci": sci.float(), "err": err.float(), "dq": dq, "t": torch.log1p(z).float(), "z": z,
            "snr": snr.float(), "index": d.index,
        }
        if keep_model:
            out["model"], out["neighbour_model"] = model, extra
        return out

    def _add_cosmic_rays(self, d: StreamDraw, sci: torch.Tensor, dq: torch.Tensor) -> None:
        inst = self.instrument
        rng = np.random.default_rng(_item_seed(self.config.seed, d.index, _COSMICS))
        shape = (self.config.cutout_height, self.config.cutout_width)
        for i, b in zip(*np.nonzero(d.cosmic_rays)):
            hits = draw_cosmic_rays(shape, inst.total_exposure_s, rng, rate_per_cm2_s=self.config.cosmic_ray_rate_per_cm2_s)
            if not hits.index.size:
                continue
            index = torch.as_tensor(hits.index, device=sci.device)
            sci[i, b].view(-1)[index] += torch.as_tensor(hits.charge_e / inst.total_exposure_s, dtype=sci.dtype, device=sci.device)
            dq[i, b].view(-1)[index] |= DQ_JUMP_DET | DQ_DO_NOT_USE


def batch_snr(sci: torch.Tensor, err: torch.Tensor, dq: torch.Tensor, model: torch.Tensor, layout) -> torch.Tensor:
    """`slitcli.sim.simulate.band_snr` of a batch [B, ny, nx] at once: optimal extraction
    with the expected image as profile, mean of flux/err over the band's columns (bad or
    negative columns count as zero). Sums in the inputs' dtype, the ratio in float64."""
    wave = layout.wavelength(np.arange(layout.shape[1]))
    cols = np.nonzero((wave >= layout.band.wave_min_aa) & (wave <= layout.band.wave_max_aa))[0]
    if not cols.size:
        return torch.zeros(sci.shape[0], dtype=torch.float64, device=sci.device)
    cols = slice(int(cols[0]), int(cols[-1]) + 1)  # contiguous: a linear WCS
    p = model[..., cols].clamp(min=0.0)
    p = p / p.sum(dim=1, keepdim=True).clamp(min=1e-30)  # empty columns stay 0
    sci, err, dq = sci[..., cols], err[..., cols], dq[..., cols]
    good = (dq == 0) & (err > 0) & torch.isfinite(sci) & torch.isfinite(err)
    inv_var = torch.where(good, err, torch.ones_like(err)).pow(-2) * good
    pw = p * inv_var
    denom = (pw * p).sum(dim=1).double()
    num = (pw * torch.where(good, sci, torch.zeros_like(sci))).sum(dim=1).double()
    ok = denom > 0
    flux = num / denom.clamp(min=1e-300)
    ratio = torch.where(ok & (flux > 0), flux * denom.sqrt(), torch.zeros_like(num))
    return ratio.mean(dim=1)

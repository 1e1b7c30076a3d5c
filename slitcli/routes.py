"""The prediction routes over input files: one unit of work per sample file.

A `Route` is the resolved choice of ``slitcli predict``: the CNN (a model directory,
its Monte Carlo settings) or the template fit, and what to do with modelled
contamination. `predict_file` runs it on one sample file, a pure unit of work: its
rows depend only on the file and the route (the CNN's dropout masks come from the
route's seed and each batch's first row, `slitcli.nn.predict.predict_sample`), never on
the other files or on which worker ran it. `predict_files` runs the units here or on
Dask (`slitcli.parallel.Executor`), optionally keeping one catalogue per input in a
directory (``--per-file``) that a re-run reuses, and stacks the rows in input order.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from slitcli.errors import InputError
from slitcli.parallel import Task, file_identity, require_task, task_id
from slitcli.snr_bins import header_text

__all__ = ["Route", "calibrate_route", "predict_file", "predict_files", "catalog_table"]


def _bundle(path: str | tuple[str, ...] | None):
    """The model of directory `path` (None: the shipped one; several: their ensemble,
    `slitcli.nn.ensemble.make_ensemble`), loaded once per process and again when its
    files change (a calibration written in place)."""
    from slitcli.nn.modelfile import CARD, WEIGHTS, default_model_dir

    paths = path if isinstance(path, tuple) else (path,)
    stamps = []
    for p in paths:
        directory = Path(p) if p is not None else default_model_dir()
        files = [directory / name for name in (CARD, WEIGHTS)]
        stamps.append(tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.exists() else None for f in files))
    return _load_bundle(path, tuple(stamps))


@functools.lru_cache(maxsize=4)
def _load_bundle(path, stamp):
    from slitcli.nn.modelfile import load_model

    if isinstance(path, tuple):
        from slitcli.nn.ensemble import make_ensemble

        return make_ensemble([load_model(p) for p in path]) if len(path) > 1 else load_model(path[0])
    return load_model(path)


@dataclass(frozen=True)
class Route:
    """How to predict: ``method`` "cnn" (model directory ``model``, None for the shipped one, a tuple of several for their ensemble), "template" or "hybrid" (both: `slitcli.hybrid`).

    ``contamination`` is "subtract" or "ignore" (`slitcli.io.samplefile.SampleReader`);
    ``pdf`` adds the ``ZPDF`` column. The other fields are the CNN's (`slitcli.nn.predict.PredictConfig`).
    """

    method: str = "cnn"
    model: str | tuple[str, ...] | None = None
    n_mc: int = 100
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    pdf: bool = False
    contamination: str = "subtract"
    sky_offset: bool = False

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(_bundle(self.model).bands) if self.method != "template" else ("GV", "GI")

    @property
    def shape(self):
        return _bundle(self.model).shape if self.method != "template" else None

    def _hybrid_config(self, field: bool = False):
        """The hybrid's settings from the card; `field`: for cutouts with a contamination model (`ModelBundle.likelihood_scale`)."""
        from slitcli.hybrid import HybridConfig

        bundle = _bundle(self.model)
        disagreement, epistemic = bundle.ood_thresholds
        temperature, floor = bundle.likelihood_scale("hybrid", field)
        return HybridConfig(temperature=temperature, error_floor=floor, snr_edges=bundle.snr_edges("hybrid") if isinstance(temperature, tuple) else (), point_temperature=bundle.hybrid_point_temperature, ood_disagreement=disagreement, ood_epistemic=epistemic, offset=bundle.offset("hybrid"), nz_prior=bundle.template_nz_prior, max_widen_ood=bundle.hybrid_max_widen_ood, prior_width=bundle.hybrid_prior_width(field))

    def _fit_config(self, field: bool = False):
        from slitcli.classic.template_fit import TemplateFitConfig

        if self.method == "template":  # its calibration is kept in the model card (calibrate --template)
            bundle = _bundle(self.model)
            temperature, floor = bundle.likelihood_scale("template", field)
            return TemplateFitConfig(temperature=temperature, error_floor=floor, snr_edges=bundle.snr_edges("template") if isinstance(temperature, tuple) else (), sky_offset=self.sky_offset, offset=bundle.offset("template"), nz_prior=bundle.template_nz_prior)
        return TemplateFitConfig(sky_offset=self.sky_offset)

    def _predict_config(self):
        from slitcli.nn.predict import PredictConfig

        return PredictConfig(n_mc=self.n_mc, batch_size=self.batch_size, seed=self.seed, device=self.device, pdf=self.pdf)

    def meta(self) -> dict:
        """The catalogue's provenance keys for this route."""
        from slitcli.classic.template_fit import catalog_meta as template_meta
        from slitcli.nn.predict import catalog_meta

        if self.method == "template":
            field = self._fit_config(field=True)
            return {**template_meta(self._fit_config()), "TMPLFTMP": header_text(field.temperature), "TMPLFFLR": header_text(field.error_floor)}
        meta = catalog_meta(_bundle(self.model), self._predict_config())
        if self.method == "hybrid":
            hybrid, field = self._hybrid_config(), self._hybrid_config(field=True)
            meta = {**meta, **template_meta(self._fit_config()), "METHOD": "hybrid", "HYBTEMP": header_text(hybrid.temperature), "HYBFLOOR": header_text(hybrid.error_floor), "HYBFTEMP": header_text(field.temperature), "HYBFFLOR": header_text(field.error_floor), "HYBFPRW": field.prior_width, "HYBSNRB": header_text(hybrid.snr_edges), "HYBPTEMP": header_text(hybrid.point_temperature) if hybrid.point_temperature is not None else "calibrated", "HYBOFFS": hybrid.offset, "HYBMISM": hybrid.template_mismatch}
            for key in ("TMPLTEMP", "TMPLFLOR", "TMPLSNRB", "TMPLOFFS", "TMPLNZA", "TMPLNZ0"):  # the hybrid's own temperature, floor and offset; its prior is the CNN's
                del meta[key]
        return meta

    def check(self, paths) -> None:
        """Refuse sample files this route cannot read (bands, cutout size, DIRECT stamps), naming the file."""
        if self.method != "cnn":
            from slitcli.classic.template_fit import check_template_inputs

            check_template_inputs(paths)
        if self.method != "template":
            from slitcli.nn.predict import check_inputs

            check_inputs(_bundle(self.model), paths)

    def pdf_grid(self) -> np.ndarray | None:
        """The redshift grid of the ``ZPDF`` column, or None without ``pdf``."""
        if not self.pdf:
            return None
        if self.method != "cnn":
            return np.expm1(self._fit_config().grid())
        from slitcli.nn.predict import pdf_grid_of

        return pdf_grid_of(_bundle(self.model))

    def predict(self, sample, progress=None) -> Table:
        """The rows of one open sample (`SampleReader` or `slitcli.fields.field_sample.FieldSample`).

        Cutouts of exposures with a contamination model (``CONTMODL`` not ``NONE``) get the
        template and hybrid calibration fitted on such cutouts, where the card has one.
        """
        field = getattr(sample, "contamination_model", "NONE") != "NONE"
        if self.method == "template":
            from slitcli.classic.template_fit import fit_sample

            return fit_sample(sample, self._fit_config(field), self.bands, batch_size=min(self.batch_size, 64), pdf=self.pdf, progress=progress)
        if self.method == "hybrid":
            from slitcli.hybrid import hybrid_sample

            bundle = _bundle(self.model)
            return hybrid_sample(bundle, sample, self._predict_config(), self._fit_config(), self._hybrid_config(field), tuple(bundle.bands), batch_size=min(self.batch_size, 64), pdf=self.pdf, progress=progress)
        from slitcli.nn.predict import predict_sample

        return predict_sample(_bundle(self.model), sample, self._predict_config(), progress=progress)


def _card_value(value):
    """A fitted number as it is; a per-SNR-bin tuple as a JSON list."""
    return list(value) if isinstance(value, tuple) else value


def calibrate_route(bundle, reader, kind: str, predict_config, progress=None, max_widen_ood: float | None = None):
    """`calibrate --template` (`kind` "template") or `--hybrid` on an open sample; returns (the fit, the card keys it sets, whether the sample is of field cutouts).

    Field cutouts (a contamination model, ``CONTMODL`` not ``NONE``) get only their own
    temperature and floor, with the card's n(z) prior, offset and thresholds (fitted on
    isolated cutouts); isolated cutouts get the whole calibration. `max_widen_ood`: the
    hybrid's widening cap to fit with and keep (None: the card's, 10 where it has none).
    """
    from slitcli.classic.posterior import calibrate_template
    from slitcli.hybrid import calibrate_hybrid

    field = reader.contamination_model != "NONE"
    route = Route(kind, str(bundle.path))
    if kind == "template":
        cal = fit = calibrate_template(reader, progress=progress, fixed=route._fit_config() if field else None)
    else:
        widen = bundle.hybrid_max_widen_ood if max_widen_ood is None else float(max_widen_ood)
        cal = calibrate_hybrid(bundle, reader, predict_config, max_widen_ood=widen, progress=progress, fixed=route._hybrid_config() if field else None)
        fit = cal.temperature
    edges = {f"{kind}_snr_edges": list(fit.snr_edges)} if fit.snr_edges else {}
    if field:
        keys = {f"{kind}_field_temperature": _card_value(fit.temperature), f"{kind}_field_error_floor": _card_value(fit.error_floor), **edges}
        return cal, keys | ({"hybrid_field_prior_width": cal.prior_width} if kind == "hybrid" else {}), True
    keys = {f"{kind}_temperature": _card_value(fit.temperature), f"{kind}_error_floor": _card_value(fit.error_floor), f"{kind}_offset": fit.offset, **edges}
    if kind == "template":
        keys |= {"template_nz_alpha": fit.nz_prior[0], "template_nz_z0": fit.nz_prior[1]}
    else:
        keys |= {"ood_disagreement": cal.ood_disagreement, "ood_epistemic": cal.ood_epistemic, "hybrid_max_widen_ood": widen, "hybrid_point_temperature": _card_value(cal.point_temperature)}
    return cal, keys, False


def predict_file(route: Route, path, progress=None) -> Table:
    """Predict every source of sample file `path`; the unit of work of ``slitcli predict``.

    The table's meta holds ``NBADPIX`` and ``CONTMODL`` (the file's contamination model).
    """
    from slitcli.io.samplefile import SampleReader

    with SampleReader(path, route.bands, route.shape, contamination=route.contamination) as sample:
        table = route.predict(sample, progress)
        table.meta["CONTMODL"] = sample.contamination_model
    return table


def catalog_table(tables: list[Table], paths, route: Route, meta: dict | None = None) -> Table:
    """The catalogue of the units' `tables` (one per input of `paths`, same order).

    Rows stacked with ``INPUT_FILE``; meta: the route's provenance, ``INPUTS``, the summed
    ``NBADPIX``, the inputs' ``CONTMODL`` and what was done with it (``CONTAM``), then `meta`.
    """
    from slitcli.io.sourceid import input_names, stack_inputs

    tables = [t.copy(copy_data=False) for t in tables]
    bad_pixels = sum(t.meta.pop("NBADPIX", 0) for t in tables)  # summed here, not merged by vstack
    models = sorted({t.meta.pop("CONTMODL", "NONE") for t in tables})
    table = stack_inputs(tables, paths)
    table.meta.clear()
    table.meta.update({**route.meta(), "INPUTS": ",".join(input_names(paths)), "NBADPIX": bad_pixels})
    table.meta.update({"CONTMODL": ",".join(models), "CONTAM": route.contamination.upper() if models != ["NONE"] else "NONE"})
    table.meta.update(meta or {})
    return table


def _file_task(route: Route, path: Path) -> str:
    # The route's provenance holds what the rows depend on beyond its fields: the model's
    # weights (MODELSHA), its calibration (TEMPERAT, HYB* and TMPL* keys), the device.
    return task_id(route=asdict(route), meta=route.meta(), input=file_identity(path))


def _read_unit(path: Path, route: Route, digest: str) -> Table:
    """A per-file catalogue of this task (TASKID `digest`, else refused) read back as the unit's
    table (no INPUT_FILE, the unit's meta only)."""
    from slitcli.io.catalog import read_catalog

    table = read_catalog(path)
    require_task(path, table.meta.get("TASKID"), digest, "was made from another input or with other settings")
    if route.pdf:
        from slitcli.io.zpdf import read_zpdf

        found = read_zpdf(path)
        if found is None:
            msg = f"{path}: per-file catalogue without its ZPDF HDU; remove it or pass --overwrite"
            raise InputError(msg)
        table["ZPDF"] = found[1]
    table.remove_column("INPUT_FILE")
    for column in table.columns.values():
        column.unit = column.description = column.format = None
    table.meta = {"NBADPIX": table.meta.get("NBADPIX", 0), "CONTMODL": table.meta.get("CONTMODL", "NONE")}
    return table


def _write_unit(route: Route, path: Path, output: Path | None, digest: str, progress=None) -> Table:
    """Predict `path`; with `output`, also write its own catalogue there (TASKID `digest`)."""
    table = predict_file(route, path, progress)
    if output is not None:
        from slitcli.io.catalog import write_catalog

        single = catalog_table([table], [path], route, {"TASKID": digest})
        write_catalog(single, output, overwrite=True, pdf_grid=route.pdf_grid())
    return table


def per_file_paths(paths, directory, suffix: str) -> list[Path]:
    """``directory/<input stem><suffix>`` for each input; refused if two inputs share a stem."""
    directory = Path(directory)
    outputs = [directory / f"{Path(p).name.removesuffix('.gz').rsplit('.', 1)[0]}{suffix}" for p in paths]
    if len(set(outputs)) < len(outputs):
        seen = {}
        for p, out in zip(paths, outputs):
            if out in seen:
                msg = f"{seen[out]} and {p} would share the per-file catalogue {out}: give the inputs distinct names"
                raise InputError(msg)
            seen[out] = p
    return outputs


def predict_files(route: Route, paths, executor, *, per_file=None, suffix: str = ".ecsv", overwrite: bool = False, progress=None) -> list[Table]:
    """Predict each sample file of `paths` on `executor`; the units' tables in input order.

    Parameters
    ----------
    per_file : path, optional
        Directory that keeps one catalogue per input (``<stem><suffix>``, with ``TASKID``): an
        existing one of the same task is read instead of predicted, one of another task is
        refused unless `overwrite`.
    progress : callable(done, total, file), optional
        In this process: sources of the current file; on Dask: files done of all.
    """
    paths = [Path(p) for p in paths]
    outputs = [None] * len(paths)
    if per_file is not None:
        from slitcli.io.files import check_output_path, make_directory

        check_output_path(per_file, True, paths, directory=True)
        outputs = per_file_paths(paths, make_directory(per_file), suffix)
    tables: list[Table | None] = [None] * len(paths)
    units = []
    for k, (path, out) in enumerate(zip(paths, outputs)):
        digest = _file_task(route, path) if out is not None else ""
        if out is not None and out.exists() and not overwrite:
            tables[k] = _read_unit(out, route, digest)
            continue
        kwargs = {}
        if progress is not None and not executor.distributed:
            kwargs["progress"] = functools.partial(_file_progress, progress, path)
        units.append((k, Task(str(path), _write_unit, (route, path, out, digest), kwargs)))
    done = len(paths) - len(units)
    for j, table in executor.map([task for _, task in units]):
        k = units[j][0]
        tables[k] = table
        done += 1
        if progress is not None and executor.distributed:
            progress(done, len(paths), paths[k])
    return tables


def _file_progress(progress, path, done, total):
    progress(done, total, path)

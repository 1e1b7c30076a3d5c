"""Working with full-frame exposures: cutouts along each source's trace and the contamination model.

- `slitcli.fields.exposure`: read slitless exposures, their celestial WCS and the
  instrument they name, a source catalogue and a direct image, checking each;
- `slitcli.fields.cutout`: place each source's band cutout on an exposure, cut it out,
  combine the exposures and write a sample file (``slitcli cutout``);
- `slitcli.fields.contamination`: every segmented source dispersed with a flat f_lambda
  scaled to its direct-image flux, the ``<BAND>_CONTAM`` cubes (grizli's first pass).
"""

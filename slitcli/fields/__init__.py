"""Working with full-frame exposures: cutouts along each source's trace, and later the contamination model.

- `slitcli.fields.exposure`: read slitless exposures, their celestial WCS and the
  instrument they name, a source catalogue and a direct image, checking each;
- `slitcli.fields.cutout`: place each source's band cutout on an exposure, cut it out,
  combine the exposures and write a sample file (``slitcli cutout``).
"""

"""Files and their shared vocabulary.

Safe output files (`files`: refuse to clobber, temporary names, atomic publishing) with
the provenance cards, DATE and checksums every FITS output carries (`fitsmeta`, with the
keyword comments of ``data/keywords.yaml``); the sample file of cutouts (`samplefile`)
and where each band's spectrum lies in it (`layout`); redshift catalogues (`catalog`)
with the column table (`columns` + ``data/columns.yaml``); the words every catalogue
shares (`redshift`: ZWARN bits, quantiles, source identity), unique source IDs across
files (`sourceid`) and the truth they are judged against (`truth`).
"""

"""Files and their shared vocabulary.

Safe output files (`files`: refuse to clobber, temporary names, atomic publishing), the
sample file of cutouts (`samplefile`) and where each band's spectrum lies in it
(`layout`), redshift catalogues (`catalog`) with the column table (`columns`), the
words every catalogue shares (`redshift`: ZWARN bits, quantiles, source identity) and
the truth they are judged against (`truth`).
"""

"""The forward model: mock 2D slitless cutouts from galaxy images and spectra.

A source population (`population`: redshifts, luminosities, the embedded real SEDs of
`seds` and HXDF shapes of `shapes`, or your own galaxies through `inputs`) is imaged
(`imaging`: resampling and PSF), dispersed along each order's trace (`disperse`, the
Numba kernel), given noise (`noise`) and written as a sample file (`simulate`).
`sources` holds the `Source` record that links them.
"""

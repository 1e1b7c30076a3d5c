"""The classic route: optimal 1D extraction and a chi-square fit of templates.

`templates` loads the CWW+Kinney SEDs and emission-line groups; `template_fit` models
each template through the instrument, fits NNLS amplitudes over a ln(1+z) grid and
turns the chi-square curve into Z, ZERR and quantiles. Extraction itself lives in
`slitcli.extract`, since the simulator and the network's SNR use it too.
"""

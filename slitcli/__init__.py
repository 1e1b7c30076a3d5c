"""slitcli: redshifts from 2D slitless spectroscopic images.

The package is a library: it never prints and never exits. The command line lives
in `slitcli.cli`.
"""

__version__ = "0.1.0"

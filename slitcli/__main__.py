import sys

try:
    from slitcli.cli import main
except KeyboardInterrupt:  # Ctrl-C while the entry point loads
    sys.stderr.write("slitcli: interrupted; no partial output left\n")
    sys.exit(130)

main()

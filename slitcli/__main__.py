from slitcli.cli import main

main()

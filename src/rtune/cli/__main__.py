"""`python -m rtune.cli ...` is `rtune ...`."""

from rtune.cli.main import main

main()

"""`python -m babysit` is the `babysit` command."""

from babysit.cli import main

main()

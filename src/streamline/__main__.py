"""`python -m streamline` runs the CLI."""

from streamline.cli import main

main()

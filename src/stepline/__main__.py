"""``python -m stepline`` runs the ``pipeline`` command."""

from stepline.cli.app import main

main()

"""``python -m augledger`` runs the command line."""

from augledger.cli import main

main()

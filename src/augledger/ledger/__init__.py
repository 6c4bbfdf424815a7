"""Ledgers: what every output received, as Parquet files any tool can read.

* :mod:`~augledger.ledger.row`: :class:`LedgerRow`, the one row type, and the columns.
* :mod:`~augledger.ledger.parquet`: writing (sorted, atomic, streamed) and reading ledgers.
* :mod:`~augledger.ledger.parts`: per-process part files merged into one ledger.
* :mod:`~augledger.ledger.online`: :class:`OnlineLedger`, the ledger of online training.
"""

from augledger.ledger.parquet import LEDGER_FORMAT, Ledger, LedgerWriter, read_ledger, write_ledger
from augledger.ledger.row import COLUMNS, OK, QUARANTINED, LedgerRow

__all__ = [
    "COLUMNS",
    "LEDGER_FORMAT",
    "OK",
    "QUARANTINED",
    "Ledger",
    "LedgerRow",
    "LedgerWriter",
    "read_ledger",
    "write_ledger",
]

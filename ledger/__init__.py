"""posctl's ledger: everything that decides whether a transaction or a block is valid.

Nothing in this package knows about wallets or the command line (imports go cli -> wallet ->
ledger only), and only :mod:`ledger.storage` touches LevelDB.
"""

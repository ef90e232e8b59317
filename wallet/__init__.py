"""posctl's wallet: BIP-39 mnemonics, BIP-32 keys, the encrypted keystore and signed transactions.

Imports go one way: ``cli`` -> ``wallet`` -> ``ledger``. Nothing here knows about the command
line, and the ledger knows nothing about wallets.
"""

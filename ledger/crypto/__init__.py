"""Pure cryptographic primitives: secp256k1 keys and low-S ECDSA, ``pos1…`` addresses over bech32,
the ECVRF, and MuHash3072. No ledger rules live here, only the maths they rely on."""

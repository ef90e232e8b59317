"""BIP-39 mnemonics through the ``mnemonic`` package, with errors that never echo the phrase.

``Mnemonic.to_seed()`` does not check anything: it happily stretches a mistyped phrase into a
seed for an empty wallet. Every path to a seed here therefore goes through
:func:`validate_mnemonic` first, which names the position of an unknown word and refuses a bad
checksum.
"""

from __future__ import annotations

import unicodedata

from mnemonic import Mnemonic

from wallet.errors import InvalidMnemonic

LANGUAGE = "english"
"""posctl writes and reads English phrases only: one word list, no language guessing."""

DEFAULT_WORDS = 24
"""New wallets get 24 words (256 bits of entropy)."""

ENTROPY_BITS_BY_WORDS = {12: 128, 15: 160, 18: 192, 21: 224, 24: 256}
"""The word counts BIP-39 defines and the entropy each one carries."""

_MNEMONIC = Mnemonic(LANGUAGE)
_WORDS = frozenset(_MNEMONIC.wordlist)


def generate_mnemonic(words: int = DEFAULT_WORDS) -> str:
    """A fresh phrase of ``words`` words from the operating system's CSPRNG."""
    strength = ENTROPY_BITS_BY_WORDS.get(words)
    if strength is None:
        raise InvalidMnemonic(f"a mnemonic has {_allowed_counts()} words, not {words}")
    return _MNEMONIC.generate(strength=strength)


def normalize_mnemonic(phrase: str) -> str:
    """NFKD (as the package and BIP-39 do), lower case, single spaces between words.

    People paste phrases with line breaks, double spaces and capitals; none of that should
    matter, but only the normalised form may reach the checksum and the seed.
    """
    return " ".join(unicodedata.normalize("NFKD", phrase).lower().split())


def validate_mnemonic(phrase: str) -> str:
    """Return the normalised phrase, or raise :class:`InvalidMnemonic` saying what is wrong.

    The message gives the (1-based) position of the first unknown word, never the word or the
    phrase: a mistyped secret word is still most of a secret.
    """
    normalized = normalize_mnemonic(phrase)
    words = normalized.split(" ") if normalized else []
    if len(words) not in ENTROPY_BITS_BY_WORDS:
        raise InvalidMnemonic(
            f"a mnemonic has {_allowed_counts()} words; this one has {len(words)}"
        )
    for position, word in enumerate(words, start=1):
        if word not in _WORDS:
            raise InvalidMnemonic(
                f"word {position} of {len(words)} is not in the BIP-39 English word list; "
                "check its spelling"
            )
    if not _MNEMONIC.check(normalized):
        raise InvalidMnemonic(
            "the mnemonic's checksum does not match: a word is mistyped, swapped or missing"
        )
    return normalized


def mnemonic_to_seed(phrase: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed; validates the phrase first (``to_seed`` does not)."""
    return Mnemonic.to_seed(validate_mnemonic(phrase), passphrase)


def mnemonic_to_entropy(phrase: str) -> bytes:
    """The entropy a valid phrase encodes; the keystore stores this rather than the words."""
    return bytes(_MNEMONIC.to_entropy(validate_mnemonic(phrase)))


def entropy_to_mnemonic(entropy: bytes) -> str:
    """The phrase for 16, 20, 24, 28 or 32 bytes of entropy."""
    if len(entropy) * 8 not in ENTROPY_BITS_BY_WORDS.values():
        raise InvalidMnemonic(
            f"BIP-39 entropy is 16, 20, 24, 28 or 32 bytes, not {len(entropy)}"
        )
    return _MNEMONIC.to_mnemonic(bytes(entropy))


def entropy_to_seed(entropy: bytes, passphrase: str = "") -> bytes:
    """The seed of the phrase that ``entropy`` encodes: how an unlocked keystore gets its keys."""
    return Mnemonic.to_seed(entropy_to_mnemonic(entropy), passphrase)


def _allowed_counts() -> str:
    counts = sorted(ENTROPY_BITS_BY_WORDS)
    return ", ".join(str(c) for c in counts[:-1]) + f" or {counts[-1]}"

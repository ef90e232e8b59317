"""One error tree for the ledger, so callers can catch exactly what they can handle.

Every message names the offending value and the rule it broke, and says what to do where there
is something to do: the CLI prints ``str(error)`` as the whole of its one-line report.

Each class carries ``http_status``, the status the node's API answers it with; a family sets it
once (invalid input 400, an invalid tx or evidence 422, not found 404, a node or store that cannot
serve now 503) and a subclass overrides it only when it means something else.
"""


import re

_PRIVATE_EXTENDED_KEY = re.compile(r"\b[xt]prv[1-9A-HJ-NP-Za-km-z]{20,}")


def redact_secrets(text: str) -> str:
    """``text`` with any BIP-32 private extended key (``xprv…``) replaced by a mention of it: an
    error echoes what it was given, and an xprv pasted where an address or a block was expected
    was printed whole on stderr (and answered by the node's API)."""
    return _PRIVATE_EXTENDED_KEY.sub("xprv… (a private key: not shown; it controls funds, keep it secret)", text)


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    http_status = 400


class EncodingError(LedgerError):
    """Bytes that are not the one canonical encoding of an object."""


class InvalidAddress(LedgerError):
    """A string that is not a valid ``pos1…`` bech32 address."""


class InvalidKey(LedgerError):
    """A private or public key that is not a valid secp256k1 key."""


class InvalidTransaction(LedgerError):
    """A transaction that breaks a stateless or stateful rule."""

    http_status = 422


class InvalidSignature(InvalidTransaction):
    """A signature that is malformed, high-S, out of range, or does not verify."""


class WrongChain(InvalidTransaction):
    """A transaction signed for another chain id."""


class NonceMismatch(InvalidTransaction):
    """A nonce that is not the sender's next one (too low, already used, or leaving a gap)."""


class InsufficientBalance(InvalidTransaction):
    """An amount above what the sender can spend (liquid) or unstake (bonded)."""


class InvalidProof(InvalidTransaction):
    """A VRF proof that is malformed or does not verify."""


class MalformedProof(InvalidProof):
    """A VRF proof that cannot be decoded: wrong length, Gamma not a curve point, or s ≥ n."""


class InvalidVrfKey(InvalidProof):
    """A VRF public key that is not a valid compressed curve point."""


class ProofMismatch(InvalidProof):
    """A well-formed VRF proof whose challenge does not match this key and alpha."""


class BalanceOverflow(InvalidTransaction):
    """An amount that would take a balance or stake to 2^63 tokens or more."""


class InvalidProposal(InvalidTransaction):
    """A ``bpm`` proposal for a height other than the next block's, or from a validator that may not propose."""


class Equivocation(InvalidTransaction):
    """A second, different proposal from one validator for one height: recorded as evidence."""


class DuplicateTransaction(InvalidTransaction):
    """A transaction already pending or already in a block."""


class MempoolFull(LedgerError):
    """The mempool holds as many transactions as it may."""

    http_status = 503


class InvalidBlock(LedgerError):
    """A block that breaks a rule of the state transition."""


class InvalidEvidence(LedgerError):
    """Evidence of equivocation that does not prove it (malformed, or a bad signature)."""

    http_status = 422


class EvidenceMismatch(InvalidEvidence):
    """Two proposals that are not from one validator for one height: no equivocation."""


class EvidenceTooOld(InvalidEvidence):
    """Evidence of an infraction ``unbonding_blocks`` or more blocks old: stake unbonded since then is out of reach."""


class DuplicateEvidence(InvalidEvidence):
    """Evidence already pending, already used in a block, or given twice in one block."""


class ValidatorTombstoned(InvalidEvidence):
    """Evidence against a validator already slashed and tombstoned: it can be punished once."""


class InvalidParams(LedgerError):
    """A chain parameter outside what the ledger can run with."""


class InvalidGenesis(LedgerError):
    """A genesis configuration the chain could not run with."""


class LotteryError(LedgerError):
    """A lottery asked to draw among no one, or with a non-positive weight."""


class NotFound(LedgerError):
    """A block, transaction or account that does not exist."""

    http_status = 404


class InvalidReference(LedgerError):
    """A block reference that cannot be one (``-1``, ``1e3``, ``zz``): malformed input, answered 400,
    where a well-formed height or hash that names no block is :class:`NotFound` (404)."""


class AmbiguousReference(LedgerError):
    """A block hash prefix that more than one block hash starts with."""


class ChainNotInitialized(LedgerError):
    """A home directory with no chain in it yet."""


class ChainExists(LedgerError):
    """An attempt to create a chain where one already is."""


class BackupFailed(LedgerError):
    """A backup's copy could not be written (its disk full, read-only, no permission). Not a
    failure of the chain's own storage: a node answers 507 and goes on (it once stopped, taking
    a full USB stick for a full chain disk)."""

    http_status = 507


class DatabaseLocked(LedgerError):
    """The database is held by another process (LevelDB admits one)."""


class DatabaseError(LedgerError):
    """A database that cannot be opened or read: unknown schema version, corruption, permissions."""

    http_status = 500


class DatabaseCorrupted(DatabaseError):
    """A chain database whose files are damaged (checksum mismatch, bad magic, missing files).

    Its message always points to ``posctl chain repair``. A node answers it with 503: it stops."""

    http_status = 503


class AddressIndexMissing(DatabaseError):
    """A chain made before posctl kept an address index: it has no history to show.

    Not damage, and nothing a retry fixes: the node answers 503 (it cannot serve this) and the
    message says how to rebuild the chain with the index."""

    http_status = 503


class DatabaseUnwritable(DatabaseError):
    """A chain database on a read-only file system, or without write permission: not a lock."""


class StorageFailure(DatabaseError):
    """A database write that failed. The store refuses every later write (fail-stop, as Bitcoin
    Core's AbortNode): LevelDB then drops the torn tail at the next open and nothing
    acknowledged is lost. A node answers it with 503 and stops."""

    http_status = 503


class DiskFull(StorageFailure):
    """No space left, or less free space than the configured floor (``POSCTL_MIN_FREE_MB``)."""


class WriteFailed(StorageFailure):
    """A write that failed for another reason (I/O error, read-only remount, permission)."""


class InvalidExport(LedgerError):
    """A chain export file that is malformed, truncated, or whose blocks do not verify."""


class VerificationError(LedgerError):
    """A stored chain that does not replay to itself; names the first bad height or entry."""

    def __init__(self, message: str, height: int | None = None) -> None:
        super().__init__(message)
        self.height = height


class NodeError(LedgerError):
    """A node that cannot start, or a request a node could not serve."""


class NodeRunning(NodeError):
    """A node already holds this home's database."""


class NodeUnavailable(NodeError):
    """A recorded node that stopped answering. ``cause`` is what happened, without the advice
    the message adds for a one-shot command (a validator waits for the node instead)."""

    http_status = 503

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or message

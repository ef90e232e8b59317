"""Genesis as people give it: a JSON file, command-line options on top, wallet names for addresses.

The ledger, not the CLI, decides how these merge and which chain id a new chain gets, so every
front end (CLI, tests, a future API) builds the same genesis from the same input. The result is a
:class:`GenesisConfig`, whose own checks then decide what is valid.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Mapping, Sequence

from ledger.chain.genesis_build import GenesisWorkers, checked_config
from ledger.chain.genesis_file import GenesisFileBuild, Resolver, ScannedGenesis
from ledger.consensus.genesis import GenesisConfig
from ledger.crypto.address import starts_like_address
from ledger.errors import InvalidGenesis


def default_chain_id() -> str:
    """A fresh chain id per chain: signatures name it, so txs signed for one local chain cannot
    be replayed on another."""
    return f"posctl-{secrets.token_hex(3)}"


def merge_genesis(
    base: Mapping[str, Any],
    *,
    resolve: Resolver,
    chain_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    allocations: Sequence[tuple[str, int]] = (),
    bonds: Sequence[tuple[str, int]] = (),
    now: int | None = None,
    workers: GenesisWorkers | None = None,
) -> GenesisConfig:
    """``base`` (a genesis file's object, or ``{}``) with the options applied on top.

    Options win over the file; ``chain_id`` wins over ``params['chain_id']`` (the caller refuses
    the two when they disagree); a missing chain id gets :func:`default_chain_id`, a missing
    timestamp ``now``. Each account may appear once per list, whatever name it is given under.
    """
    rest, resolved_allocations = _merge_rest(
        base, resolve=resolve, chain_id=chain_id, params=params, allocations=allocations, bonds=bonds, now=now
    )
    # The allocations (a million, perhaps) are checked in parts on every core, with the same
    # checks and messages as the constructor's.
    return checked_config(rest.params, resolved_allocations, rest.bonds, rest.timestamp, workers)


def genesis_from_file(
    scanned: ScannedGenesis,
    *,
    resolve: Resolver,
    workers: GenesisWorkers,
    chain_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    allocations: Sequence[tuple[str, int]] = (),
    bonds: Sequence[tuple[str, int]] = (),
    now: int | None = None,
) -> GenesisFileBuild:
    """:func:`merge_genesis` for a genesis file (:func:`scan_genesis_file`) whose allocations
    stream from it as the chain is written: everything else is merged and checked here, before
    anything is written; the allocations (the file's, then ``allocations``) as they stream."""
    # the options' allocations are checked here as any are (the file's stand as {} in its fields)
    rest, _ = _merge_rest(
        scanned.fields, resolve=resolve, chain_id=chain_id, params=params, allocations=allocations, bonds=bonds,
        now=now,
    )
    return GenesisFileBuild(scanned, rest, list(allocations), resolve, workers)


def _merge_rest(
    base: Mapping[str, Any], *, resolve: Resolver, chain_id: str | None, params: Mapping[str, Any] | None,
    allocations: Sequence[tuple[str, int]], bonds: Sequence[tuple[str, int]], now: int | None,
) -> tuple[GenesisConfig, dict[str, int]]:
    """The merged configuration without its allocations (checked), and the allocations resolved
    (names to addresses; each account once) but not yet checked."""
    merged = dict(base)
    file_params = merged.get("params", {})
    if not isinstance(file_params, dict):
        raise InvalidGenesis("genesis field 'params' must be an object of chain parameters")
    merged_params = dict(file_params)
    if "chain_id" in merged:
        merged_params["chain_id"] = merged.pop("chain_id")
    merged_params.update(params or {})
    if chain_id is not None:
        merged_params["chain_id"] = chain_id
    merged_params.setdefault("chain_id", default_chain_id())
    merged["params"] = merged_params
    for key, extra in (("allocations", allocations), ("bonds", bonds)):
        merged[key] = _resolve_amounts(key, merged.get(key, {}), extra, resolve)
    merged.setdefault("timestamp", int(time.time()) if now is None else now)
    resolved_allocations = merged.pop("allocations")
    return GenesisConfig.from_dict({**merged, "allocations": {}}), resolved_allocations


def _resolve_amounts(
    key: str, listed: Any, extra: Sequence[tuple[str, int]], resolve: Resolver
) -> dict[str, int]:
    if not isinstance(listed, dict):
        raise InvalidGenesis(f"genesis field {key!r} must map addresses (or wallet names) to amounts")
    resolved: dict[str, int] = {}
    named: dict[str, str] = {}
    for who, amount in listed.items():
        if type(amount) is not int:
            raise InvalidGenesis(f"genesis {key} of {who}: {amount!r} is not a whole number of tokens")
        if starts_like_address(who):
            # an address, never a wallet name: checked with the others, in parts on every core
            resolved[who] = amount
            continue
        address = resolve(who)
        if address in resolved:
            also = "" if named.get(address, address) == who else f" (also as {named.get(address, address)})"
            raise InvalidGenesis(f"{key}: {who} is given twice{also}: give each account once")
        resolved[address], named[address] = amount, who
    for who, amount in extra:
        if type(amount) is not int:
            raise InvalidGenesis(f"genesis {key} of {who}: {amount!r} is not a whole number of tokens")
        address = resolve(who)
        if address in resolved:  # most likely a typo: say so rather than add them up
            also = "" if named.get(address, address) == who else f" (also as {named.get(address, address)})"
            raise InvalidGenesis(f"{key}: {who} is given twice{also}: give each account once")
        resolved[address], named[address] = amount, who
    return resolved


__all__ = ["default_chain_id", "genesis_from_file", "merge_genesis"]

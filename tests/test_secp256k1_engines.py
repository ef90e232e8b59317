"""The two verification engines (pycryptodome, the reference; coincurve, the ``fast`` extra) accept
exactly the same signatures: over every secp256k1 key and point in the vectors, over thousands of
random keys and messages, their high-S twins, tampered messages and signatures, out-of-range r and
s, and random 33-byte strings as public keys.

Needs coincurve (``pip install -e '.[test,fast]'``); CI runs the suite a second time with it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from ledger.crypto import secp256k1
from ledger.errors import InvalidSignature

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path(__file__).resolve().parent / "vectors"
N = secp256k1.SECP256K1_ORDER
SEED = 20261206
ENGINES = (secp256k1.verify_pycryptodome, secp256k1.verify_coincurve)


def verdict(engine, public_key: bytes, message: bytes, signature: bytes) -> str | None:
    try:
        engine(public_key, message, signature)
    except InvalidSignature as exc:
        return str(exc)
    return None


def same(public_key: bytes, message: bytes, signature: bytes) -> str | None:
    """Both engines' verdict, which must be identical (message included)."""
    reference, fast = (verdict(engine, public_key, message, signature) for engine in ENGINES)
    assert reference == fast, (public_key.hex(), message.hex(), signature.hex(), reference, fast)
    return reference


def flip_s(signature: bytes) -> bytes:
    return signature[:32] + (N - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")


def test_every_key_and_point_of_the_vectors() -> None:
    data = json.loads((VECTORS / "ecvrf_secp256k1_sha256_tai.json").read_text())
    checked = 0
    for vector in data["vectors"]:
        private, public = bytes.fromhex(vector["sk"]), bytes.fromhex(vector["pk"])
        assert secp256k1.public_key_from_private(private) == public
        message = bytes.fromhex(vector["alpha"])
        signature = secp256k1.sign(private, message)
        assert same(public, message, signature) is None
        assert same(public, message, flip_s(signature)) is not None
        assert same(public, message + b"\x00", signature) is not None
        for name in ("h", "gamma", "u", "v"):  # every curve point the vector lists, as a key
            point = bytes.fromhex(vector[name])
            if len(point) == 33:
                same(point, message, signature)
                checked += 1
    for vector in data["negative_vectors"]:
        for name in ("pk", "gamma"):
            if isinstance(vector.get(name), str):
                same(bytes.fromhex(vector[name]), b"alpha", bytes(63) + b"\x01")
                checked += 1
    assert checked > 150


def test_edge_signatures_and_keys() -> None:
    private = bytes(31) + b"\x07"
    public = secp256k1.public_key_from_private(private)
    good = secp256k1.sign(private, b"m")
    r = good[:32]
    cases = [
        bytes(64), r + bytes(32), bytes(32) + good[32:], r + N.to_bytes(32, "big"), N.to_bytes(32, "big") + good[32:],
        r + (N - 1).to_bytes(32, "big"), r + (N // 2).to_bytes(32, "big"), r + (N // 2 + 1).to_bytes(32, "big"),
        good[:-1], good + b"\x00", flip_s(good),
    ]
    for signature in cases:
        assert same(public, b"m", signature) is not None
    for key in (b"\x04" + public[1:], b"\x05" + public[1:], public[:-1], b"\x02" + bytes(32),
                b"\x02" + (2**256 - 2**32 - 977).to_bytes(32, "big"), b"\x03" + b"\xff" * 32):
        assert same(key, b"m", good) is not None
    assert same(public, b"m", good) is None


def test_differential_over_random_keys_messages_and_twins() -> None:
    rng = random.Random(SEED)
    print("seed", SEED)
    for _ in range(2000):
        private = rng.randrange(1, N).to_bytes(32, "big")
        public = secp256k1.public_key_from_private(private)
        message = rng.randbytes(rng.randrange(0, 200))
        signature = secp256k1.sign(private, message)
        assert same(public, message, signature) is None
        assert same(public, message, flip_s(signature)) is not None  # the high-S twin: low-S rule
        tampered = bytearray(signature)
        tampered[rng.randrange(64)] ^= 1 << rng.randrange(8)
        same(public, message, bytes(tampered))
        same(public, message + b"!", signature)
    for _ in range(1000):  # random keys: about half are points, and both engines agree on which
        key = bytes([rng.choice((2, 3))]) + rng.randbytes(32)
        same(key, b"m", rng.randbytes(64))


def test_the_engine_is_chosen_by_environment() -> None:
    code = "from ledger.crypto import secp256k1; print(secp256k1.engine())"
    env = {k: v for k, v in os.environ.items() if k != secp256k1.ENGINE_VARIABLE}
    env["PYTHONPATH"] = str(ROOT)

    def engine(value: str | None) -> subprocess.CompletedProcess[str]:
        run_env = dict(env)
        if value is not None:
            run_env[secp256k1.ENGINE_VARIABLE] = value
        return subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60)

    assert engine(None).stdout.strip() == "coincurve"
    assert engine("pycryptodome").stdout.strip() == "pycryptodome"
    assert engine("coincurve").stdout.strip() == "coincurve"
    bad = engine("openssl")
    assert bad.returncode != 0 and "is not an engine" in bad.stderr

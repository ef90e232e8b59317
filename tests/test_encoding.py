import json

import pytest
from hypothesis import given, strategies as st

from ledger import encoding
from ledger.errors import EncodingError

json_values = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_encode_decode_encode_is_identity(value):
    data = encoding.encode(value)
    assert encoding.encode(encoding.decode(data)) == data
    assert encoding.decode(data) == value


def test_canonical_form_is_sorted_compact_ascii():
    assert encoding.encode({"b": 1, "a": "é"}) == b'{"a":"\\u00e9","b":1}'


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"a":1,"a":2}', "duplicate field 'a'"),
        (b'{"a":1.5}', "floats are not allowed"),
        (b'{"a":1e3}', "floats are not allowed"),
        (b'{"a":NaN}', "NaN is not allowed"),
        (b'{"a":Infinity}', "Infinity is not allowed"),
        (b'{"a":true}', "True is not allowed"),
        (b'{"a":null}', "None is not allowed"),
        (b'{"b":1,"a":2}', "not in canonical form"),
        (b'{"a": 1}', "not in canonical form"),
        (b'{"a":"\\u0041"}', "not in canonical form"),
        (b"\xff", "not ASCII"),
        (b"{", "not valid JSON"),
        (b'{"a":' + b"9" * 5000 + b"}", "not valid JSON: a number has thousands of digits, far above any amount"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
    ],
)
def test_decode_rejects_non_canonical_input(raw, message):
    with pytest.raises(EncodingError, match=message.replace("(", r"\(")):
        encoding.decode(raw)


def test_encode_refuses_floats_and_booleans_naming_the_field():
    with pytest.raises(EncodingError, match=r"\$\.amount: floats"):
        encoding.encode({"amount": 1.0})
    with pytest.raises(EncodingError, match=r"\$\.flag"):
        encoding.encode({"flag": True})


def test_require_int_treats_bool_as_wrong_type():
    with pytest.raises(EncodingError, match="'amount' must be an integer"):
        encoding.require_int(True, "amount")


def test_hex_fields_must_be_lowercase_and_sized():
    assert encoding.hex_to_bytes("00ff", "x", 2) == b"\x00\xff"
    with pytest.raises(EncodingError, match="lowercase"):
        encoding.hex_to_bytes("00FF", "x")
    with pytest.raises(EncodingError, match="must be 3 bytes"):
        encoding.hex_to_bytes("00ff", "x", 3)


def test_tagged_hashes_differ_by_tag():
    assert encoding.tagged_hash("a", b"x") != encoding.tagged_hash("b", b"x")
    assert json.loads(encoding.encode([1, "x"])) == [1, "x"]

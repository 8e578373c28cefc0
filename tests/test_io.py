"""imagenot.io's JSON command-line helpers: one wording for every option that takes JSON."""

from __future__ import annotations

import pytest

from imagenot.io import InputError, check_keys, parse_json


def test_parse_json_decodes_and_names_the_option_on_bad_json():
    assert parse_json('{"a": 1, "b": [2, 3]}', "--params") == {"a": 1, "b": [2, 3]}
    assert parse_json("[1, 2]", "--params") == [1, 2]  # any JSON value unless obj=True
    with pytest.raises(InputError, match=r"^--params \(config download\): not valid JSON: Expecting"):
        parse_json("{bad", "--params (config download)")
    with pytest.raises(InputError, match="^--recipe: not valid JSON"):
        parse_json("", "--recipe")  # an empty string is bad JSON unless `empty` is given


def test_parse_json_object_required():
    with pytest.raises(InputError, match=r"^--params \(curation\): expected a JSON object$"):
        parse_json("[1, 2]", "--params (curation)", obj=True)
    with pytest.raises(InputError, match="^--config: expected a JSON object$"):
        parse_json('"text"', "--config", obj=True)
    with pytest.raises(InputError, match="expected a JSON object"):
        parse_json(["a"], "--params", obj=True)  # an already-parsed value is checked too


def test_parse_json_passes_a_parsed_dict_through():
    given = {"n_classes": 3}
    assert parse_json(given, "--params", obj=True) is given
    assert parse_json(None, "--params") is None  # nothing to decode, no `empty`: as given


def test_parse_json_empty_value():
    default = {}
    for value in (None, ""):
        got = parse_json(value, "--params", obj=True, empty=default)
        assert got == {} and got is not default  # a fresh copy each time
    assert parse_json("{}", "--params", obj=True, empty={"x": 1}) == {}  # only None / "" are empty


def test_check_keys_names_the_first_unknown_key_and_lists_the_known():
    check_keys({"a": 1}, ["a", "b"], "--params")
    check_keys({}, ["a"], "--params")
    with pytest.raises(InputError, match=r"^--params \(config split\): unknown key 'c'; known keys: b, a$"):
        check_keys({"a": 1, "d": 2, "c": 3}, {"b": 0, "a": 0}, "--params (config split)")

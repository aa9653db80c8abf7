"""fleet.truth: true/false words read as Ansible reads them."""

from __future__ import annotations

import pytest

from fleet.truth import as_bool, parse_bool


@pytest.mark.parametrize(
    "word", ["yes", "YES", "y", "on", "1", "true", "True", "t", " yes ", 1, True]
)
def test_ansible_true_words_are_true(word):
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["no", "N", "n", "off", "0", "false", "F", 0, 0.0, False])
def test_ansible_false_words_are_false(word):
    assert parse_bool(word) is False


@pytest.mark.parametrize("word", ["", "maybe", "2", 2, None, "yess", [], "nope"])
def test_anything_else_is_not_a_boolean(word):
    assert parse_bool(word) is None


def test_a_bad_value_names_where_it_came_from_and_the_words():
    with pytest.raises(ValueError, match=r"ping: gateway must be one of true/false, .*'maybe'"):
        as_bool("maybe", "ping: gateway")

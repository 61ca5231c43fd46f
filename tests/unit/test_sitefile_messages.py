"""Pydantic's messages about the model's bounds, as validate shows them: onehci writes them itself
(to translate them) and its English must stay pydantic's own, word for word."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from installer.sitefile import _choices, _pydantic_message


class Bounds(BaseModel):
    model_config = ConfigDict(strict=True)

    gt: int = Field(default=1, gt=0)
    ge: float = Field(default=1, ge=0)
    lt: int = Field(default=1, lt=10)
    le: float = Field(default=1, le=30)
    step: int = Field(default=2, multiple_of=2)
    finite: float = Field(default=1, allow_inf_nan=False)
    one_char: str = Field(default="x", min_length=1, max_length=1)
    name: str = Field(default="xx", min_length=2, max_length=60, pattern="^x+$")
    one: list[int] = Field(default=[1], min_length=1, max_length=1)
    items: list[int] = Field(default=[1, 2], min_length=2, max_length=3)


@pytest.mark.parametrize("values", [
    {"gt": 0}, {"ge": -0.5}, {"lt": 10}, {"le": 30.5}, {"step": 3}, {"finite": float("inf")},
    {"one_char": ""}, {"one_char": "xx"}, {"name": "x"}, {"name": "x" * 61}, {"name": "xy"},
    {"one": []}, {"one": [1, 2]}, {"items": [1]}, {"items": [1, 2, 3, 4]}])
def test_the_english_of_a_bound_is_pydantics_own(values):
    with pytest.raises(ValidationError) as caught:
        Bounds(**values)
    for err in caught.value.errors():
        assert _pydantic_message(err) == err["msg"][0].lower() + err["msg"][1:]


def test_the_allowed_values_are_pydantics_list_in_english():
    assert _choices("'own' or 'proxy'") == "'own' or 'proxy'"
    assert _choices("'a', 'b' or 'c'") == "'a', 'b' or 'c'"
    assert _choices("1") == "1"  # one value: as pydantic wrote it

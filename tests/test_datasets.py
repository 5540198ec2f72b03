"""Bundled datasets load with R's factor columns as strings."""
import pandas as pd
import pytest

import mixedpy as mp

EXPECTED = {"sleepstudy": (180, "Subject"), "dyestuff": (30, "Batch"), "dyestuff2": (30, "Batch"),
            "penicillin": (144, "plate"), "pastes": (60, "cask"), "exam": (4059, "school"),
            "cbpp": (56, "herd"), "grouseticks": (403, "BROOD"), "verbagg": (7584, "item"),
            "insteval": (73421, "d"), "spotify": (350, "artist"), "mlm": (None, "id"),
            "radon": (919, "county"), "reedfrogs": (48, None), "seattle": (869, "zipcode")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load(name):
    df = mp.datasets.load(name)
    rows, factor = EXPECTED[name]
    assert isinstance(df, pd.DataFrame)
    if rows is not None:
        assert len(df) == rows
    if factor is not None:
        assert df[factor].map(type).eq(str).all()


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="available: .*sleepstudy"):
        mp.datasets.load("nope")

"""R's level order for the bundled datasets' factor columns whose order is not the sorted one.

The CSVs hold R's factors as strings, and a string column's levels are its sorted values (R's
``factor()`` of a character vector).  The factors of lme4's cbpp, grouseticks, VerbAgg and InstEval
and rstanarm's radon have their own order, which fixes lme4's ranef rows and the treatment-contrast
baseline: cbpp's ``herd`` is 1, 2, ..., 15 (not "1", "10", "11", ...), VerbAgg's ``mode`` is want,
do (so lme4's coefficient is ``modedo``).  From ``levels()`` in R 4.2.2 with lme4 1.1-31 and
rstanarm 2.21.3; tests/reference/gen/dataset_levels.R writes all of them for the test.
"""
from __future__ import annotations

#: the levels are the labels in numeric order (a factor of integer ids)
NUMERIC = "numeric"

#: dataset -> column -> R's levels (a tuple) or NUMERIC
R_LEVELS: dict[str, dict[str, tuple[str, ...] | str]] = {
    "cbpp": {"herd": NUMERIC},
    "grouseticks": {"INDEX": NUMERIC, "LOCATION": NUMERIC},
    "verbagg": {
        "id": NUMERIC,
        "mode": ("want", "do"),
        "item": ("S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse", "S2WantScold", "S2WantShout",
                 "S3WantCurse", "S3WantScold", "S3WantShout", "S4wantCurse", "S4WantScold", "S4WantShout",
                 "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse", "S2DoScold", "S2DoShout",
                 "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse", "S4DoScold", "S4DoShout"),
    },
    "insteval": {
        "s": NUMERIC,
        "d": NUMERIC,
        "dept": ("15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"),
    },
    # alphabetical but for STLOUIS, which sorts where "ST LOUIS" would
    "radon": {"county": (
        "AITKIN", "ANOKA", "BECKER", "BELTRAMI", "BENTON", "BIGSTONE", "BLUEEARTH", "BROWN", "CARLTON", "CARVER",
        "CASS", "CHIPPEWA", "CHISAGO", "CLAY", "CLEARWATER", "COOK", "COTTONWOOD", "CROWWING", "DAKOTA", "DODGE",
        "DOUGLAS", "FARIBAULT", "FILLMORE", "FREEBORN", "GOODHUE", "HENNEPIN", "HOUSTON", "HUBBARD", "ISANTI",
        "ITASCA", "JACKSON", "KANABEC", "KANDIYOHI", "KITTSON", "KOOCHICHING", "LACQUIPARLE", "LAKE",
        "LAKEOFTHEWOODS", "LESUEUR", "LINCOLN", "LYON", "MAHNOMEN", "MARSHALL", "MARTIN", "MCLEOD", "MEEKER",
        "MILLELACS", "MORRISON", "MOWER", "MURRAY", "NICOLLET", "NOBLES", "NORMAN", "OLMSTED", "OTTERTAIL",
        "PENNINGTON", "PINE", "PIPESTONE", "POLK", "POPE", "RAMSEY", "REDWOOD", "RENVILLE", "RICE", "ROCK",
        "ROSEAU", "SCOTT", "SHERBURNE", "SIBLEY", "STLOUIS", "STEARNS", "STEELE", "STEVENS", "SWIFT", "TODD",
        "TRAVERSE", "WABASHA", "WADENA", "WASECA", "WASHINGTON", "WATONWAN", "WILKIN", "WINONA", "WRIGHT",
        "YELLOWMEDICINE")},
}

"""Command line: fit a model to a CSV file and print its ``summary()`` (lmerTest's for lmer, lme4's for
glmer) or arm's ``display()``.

    python -m mixedpy fit "Reaction ~ Days + (Days | Subject)" sleepstudy.csv
    python -m mixedpy fit "Reaction ~ Days + (Days | Subject)" sleepstudy --ml --display
    python -m mixedpy fit "cbind(incidence, size - incidence) ~ period + (1 | herd)" cbpp --family binomial
    python -m mixedpy fit "popularity ~ (1 | artist)" spotify --bayes --chains 2 --iter 1000
    python -m mixedpy datasets

DATA is a CSV path or, when no such file exists, the name of a bundled dataset.  The exit status
is 0 on success, 2 for bad arguments or data (with the reason on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import pandas as pd

from .errors import MixedpyError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mixedpy",
                                     description="Fit linear and generalized linear mixed models (lme4 syntax).")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a model and print its summary",
                         description="Fit FORMULA to DATA and print its summary(): lmerTest's, with "
                                     "Satterthwaite's df, for lmer; lme4's for glmer (or arm's display()).")
    fit.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument("data", help="CSV file, or the name of a bundled dataset (see `python -m mixedpy datasets`)")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML (lmer)")
    fit.add_argument("--family", default="gaussian",
                     help="gaussian (lmer, default; glmer with a non-identity --link), binomial, poisson, Gamma, "
                          "inverse.gaussian (glmer) or negative_binomial (glmer.nb)")
    fit.add_argument("--link", default=None, help="link function for --family (default: canonical)")
    fit.add_argument("--nagq", type=int, default=1, help="glmer: adaptive Gauss-Hermite points (default 1, Laplace)")
    fit.add_argument("--bayes", action="store_true", help="Bayesian fit with rstanarm's default priors")
    fit.add_argument("--chains", type=int, default=4, help="--bayes: number of chains (default 4)")
    fit.add_argument("--iter", type=int, default=2000, help="--bayes: iterations per chain, half warmup (default 2000)")
    fit.add_argument("--seed", type=int, default=None, help="--bayes: random seed")
    fit.add_argument("--ddf", default="Satterthwaite", choices=["Satterthwaite", "Kenward-Roger", "lme4"],
                     help="lmer: denominator df of the summary's t tests; lme4 prints lme4's table (default Satterthwaite)")
    fit.add_argument("--display", action="store_true", help="print arm's display() instead of summary()")
    fit.add_argument("--tidy", action="store_true", help="print the broom.mixed-style tidy table as well")
    sub.add_parser("datasets", help="list the bundled datasets")
    return parser


def read_data(spec: str) -> pd.DataFrame:
    """A CSV file (strings kept as strings, so grouping columns stay factors) or a bundled dataset."""
    from . import datasets

    if os.path.isfile(spec):
        try:
            return datasets.read_r_csv(spec)
        except (OSError, ValueError, StopIteration) as exc:
            raise MixedpyError(f"cannot read {spec!r} as CSV: {exc}") from exc
    if spec.lower() in datasets.available():
        return datasets.load(spec)
    raise MixedpyError(f"{spec!r} is neither a file nor a bundled dataset ({', '.join(datasets.available())})")


#: --family values: lmer for gaussian(identity), glmer's families, glmer.nb for negative_binomial
CLI_FAMILIES = ("gaussian", "binomial", "poisson", "Gamma", "inverse.gaussian", "negative_binomial")


def _fit(args, data: pd.DataFrame):
    import mixedpy as mp

    family = {f.lower(): f for f in CLI_FAMILIES}.get(args.family.lower())
    if family is None:
        raise MixedpyError(f"--family must be one of {', '.join(CLI_FAMILIES)}, got {args.family!r}")
    lmm = family == "gaussian" and args.link in (None, "identity")
    if args.bayes:
        if args.ml:
            raise MixedpyError("--ml applies to lmer; a --bayes fit has no REML/ML choice")
        kw = dict(chains=args.chains, iter=args.iter, seed=args.seed)
        if lmm:
            return _require(mp, "bayes_lmer")(args.formula, data, **kw)
        fam_kw = {"family": family} if args.link is None else {"family": family, "link": args.link}
        return _require(mp, "bayes_glmer")(args.formula, data, **fam_kw, **kw)
    if lmm:
        return mp.lmer(args.formula, data, REML=not args.ml)
    if args.ml:
        raise MixedpyError("--ml applies to lmer; glmer always maximizes the (Laplace/AGQ) likelihood")
    kw = {"nAGQ": args.nagq} if args.link is None else {"nAGQ": args.nagq, "link": args.link}
    if family == "negative_binomial":
        return _require(mp, "glmer_nb")(args.formula, data, **kw)
    return _require(mp, "glmer")(args.formula, data, family=family, **kw)


def _require(mp, name: str):
    fn = getattr(mp, name, None)
    if fn is None:
        raise MixedpyError(f"this mixedpy build has no {name}()")
    return fn


def _report(args, result) -> str:
    import mixedpy as mp
    from .results import LmerFit

    if args.bayes:
        text = str(result) if not args.display else mp.display(result, print_output=False)
    elif args.display:
        text = mp.display(result, print_output=False)
    elif isinstance(result, LmerFit):      # glmer's z tests and posteriors have no ddf
        text = result.summary(ddf=args.ddf)
    else:
        text = result.summary()
    if not isinstance(text, str):   # a posterior's summary() is a table
        text = text.to_string()
    if args.tidy:
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            text += "\n\n" + mp.tidy(result).to_string(index=False)
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "datasets":
        from . import datasets

        print("\n".join(datasets.available()))
        return 0
    try:
        data = read_data(args.data)
        with warnings.catch_warnings():
            # fit warnings (convergence, singular fit) go to stderr as one line each
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, cat, *a, **k: print(f"warning: {msg}", file=sys.stderr)
            result = _fit(args, data)
        if hasattr(result, "data_name"):
            # the call line of display() names the data as the user gave it
            result.data_name = os.path.splitext(os.path.basename(args.data))[0]
        print(_report(args, result))
    except (MixedpyError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["main", "build_parser", "read_data"]

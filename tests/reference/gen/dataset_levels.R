# R's factor levels of the bundled datasets that come from R packages (lme4's sleepstudy, Dyestuff,
# Dyestuff2, Penicillin, Pastes, cbpp, grouseticks, VerbAgg, InstEval; rstanarm's radon), for the
# check that mixedpy.datasets.load gives every factor column R's level order (R's factor() of a
# character vector sorts, but these factors have their own order: cbpp's herd is 1, 2, ..., 15).
# mlmRev's Exam is left out (mlmRev is not installed here).  It also stores lme4's fit of cbpp as lme4
# ships it (herd a factor with levels 1..15): ranef rows in that order, for the fit of load("cbpp").
#
# Usage: Rscript tests/reference/gen/dataset_levels.R OUT_FILE
#   e.g. Rscript tests/reference/gen/dataset_levels.R tests/reference/tidy_s5/dataset_levels.json
# Made with R 4.2.2, lme4 1.1-31, rstanarm 2.21.3.
suppressMessages({library(lme4); library(jsonlite)})
out_file <- commandArgs(trailingOnly = TRUE)[1]
data(radon, package = "rstanarm")
sets <- list(sleepstudy = sleepstudy, dyestuff = Dyestuff, dyestuff2 = Dyestuff2, penicillin = Penicillin,
             pastes = Pastes, cbpp = cbpp, grouseticks = grouseticks, verbagg = VerbAgg, insteval = InstEval,
             radon = radon)
levels_of <- function(d) lapply(Filter(is.factor, d), function(x) list(levels = levels(x), ordered = is.ordered(x)))
gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
re <- ranef(gm)$herd
res <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), datasets = lapply(sets, levels_of),
            cbpp_glmer = list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                              fixef = as.list(fixef(gm)), ranef_levels = rownames(re),
                              ranef = unname(re[["(Intercept)"]])))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA), out_file)

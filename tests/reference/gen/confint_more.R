# More confint / anova references for mixedpy's inference tests (issue 3).
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/confint_more.R
# Reads the bundled csv files (mixedpy/datasets/data, tests/reference/data) and writes
# tests/reference/lme4/confint_more.json.  Made with R 4.2.2, lme4 1.1-31.
#
# * profile intervals (confint(m, method = "profile")) for four more models, including a
#   singular fit and a factor carrying two uncorrelated terms;
# * parametric bootstrap (bootMer, use.u = FALSE, nsim = 2000, seed = 1) for sleepstudy and
#   Penicillin: percentile intervals plus the mean and sd of every replicate column, which are
#   much tighter Monte-Carlo targets than the interval ends;
# * anova() of three nested sleepstudy models, one of them fitted by ML.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

rd <- function(path, chr) {
  d <- read.csv(path, stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
dy  <- rd("mixedpy/datasets/data/dyestuff.csv", "Batch")
dy2 <- rd("mixedpy/datasets/data/dyestuff2.csv", "Batch")
pa  <- rd("mixedpy/datasets/data/pastes.csv", c("batch", "cask", "sample"))
ss  <- rd("tests/reference/data/sleepstudy.csv", "Subject")
pe  <- rd("tests/reference/data/penicillin.csv", c("plate", "sample"))

ci_tab <- function(ci) list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))

profile_case <- function(name, formula, data, dataname, REML = TRUE) {
  m <- lmer(as.formula(formula), data = data, REML = REML)
  ci <- suppressMessages(suppressWarnings(confint(m, method = "profile")))
  cat(name, "profile ok\n")
  c(list(name = name, data = dataname, formula = formula, REML = REML), ci_tab(ci))
}

boot_case <- function(name, formula, data, dataname, nsim = 2000) {
  m <- lmer(as.formula(formula), data = data, REML = TRUE)
  FUN <- function(x) {
    th <- getME(x, "theta"); sc <- sigma(x)
    vc <- as.data.frame(VarCorr(x), order = "lower.tri")
    c(vc$sdcor, fixef(x))
  }
  t <- system.time(b <- suppressMessages(suppressWarnings(
    bootMer(m, FUN, nsim = nsim, seed = 1, use.u = FALSE, type = "parametric"))))[["elapsed"]]
  ci <- suppressMessages(suppressWarnings(confint(m, method = "boot", nsim = nsim, seed = 1)))
  cat(name, "boot ok", t, "\n")
  list(name = name, data = dataname, formula = formula, REML = TRUE, nsim = nsim, seed = 1,
       rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
       mean = unname(colMeans(b$t, na.rm = TRUE)), sd = unname(apply(b$t, 2, sd, na.rm = TRUE)),
       seconds = t)
}

out <- list(
  note = paste("lme4 1.1-31 confint(method='profile'), level 0.95, oldNames = TRUE;",
               "boot: confint(m, method='boot', nsim=2000, seed=1) percentile intervals and",
               "colMeans/sd of bootMer(m, FUN, nsim=2000, seed=1, use.u=FALSE)$t with FUN = (sd/cor in",
               "lme4's theta order, sigma, fixef)."),
  profile = list(
    profile_case("dyestuff_reml", "Yield ~ 1 + (1 | Batch)", dy, "dyestuff.csv"),
    profile_case("dyestuff2_singular", "Yield ~ 1 + (1 | Batch)", dy2, "dyestuff2.csv"),
    profile_case("pastes_nested", "strength ~ 1 + (1 | batch/cask)", pa, "pastes.csv"),
    profile_case("sleepstudy_uncorr", "Reaction ~ Days + (Days || Subject)", ss, "sleepstudy.csv"),
    profile_case("sleepstudy_ml", "Reaction ~ Days + (Days | Subject)", ss, "sleepstudy.csv", REML = FALSE)),
  boot = list(
    boot_case("penicillin_crossed", "diameter ~ 1 + (1 | plate) + (1 | sample)", pe, "penicillin.csv"),
    boot_case("sleepstudy_reml", "Reaction ~ Days + (Days | Subject)", ss, "sleepstudy.csv")))

m0 <- lmer(Reaction ~ 1 + (1 | Subject), data = ss, REML = FALSE)
m1 <- lmer(Reaction ~ Days + (1 | Subject), data = ss)
m2 <- lmer(Reaction ~ Days + (Days | Subject), data = ss)
a <- as.data.frame(suppressMessages(anova(m2, m0, m1)))
out$anova <- list(call = "anova(m2, m0, m1)",
                  models = list(m0 = "Reaction ~ 1 + (1 | Subject)  [ML]",
                                m1 = "Reaction ~ Days + (1 | Subject)  [REML]",
                                m2 = "Reaction ~ Days + (Days | Subject)  [REML]"),
                  rows = rownames(a),
                  table = lapply(setNames(colnames(a), colnames(a)), function(k) unname(a[[k]])))
write_json(out, "tests/reference/lme4/confint_more.json", auto_unbox = TRUE, digits = NA,
           pretty = TRUE, na = "null")
cat("confint_more ok\n")

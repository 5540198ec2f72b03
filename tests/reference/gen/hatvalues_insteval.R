# lme4's hatvalues and one-step cooks.distance on InstEval (73k rows) and on the rows of its
# even-numbered students (36k rows; the same block structure: s first, then d and dept), for the
# InstEval-size checks of tests/test_influence_speed.py, with the time lme4 takes.
# Usage (from the repository root): Rscript tests/reference/gen/hatvalues_insteval.R [OUT_DIR]
# Writes OUT_DIR/hatvalues_insteval.json (default tests/reference/residuals).  Made with R 4.2.2,
# lme4 1.1-31.  Every STEP-th row's value is kept (1-based rows 1, 1 + STEP, ...), and the sum
# over all rows.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/residuals"
d <- read.csv("mixedpy/datasets/data/insteval.csv", colClasses = c(s = "character", d = "character",
              dept = "character", service = "character"))
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept)
u <- function(x) unname(as.numeric(x))

case <- function(data, step) {
  m <- lmer(f, data)
  secs <- system.time(h <- hatvalues(m))[["elapsed"]]
  cd <- cooks.distance(m)
  keep <- seq(1, nrow(data), by = step)
  list(nobs = nrow(data), theta = u(getME(m, "theta")), step = step, hat = u(h[keep]),
       hat_sum = sum(h), cooks = u(cd[keep]), cooks_sum = sum(cd), seconds_hatvalues = secs)
}

half <- d[as.integer(d$s) %% 2 == 0, ]
res <- list(formula = deparse(f), data = "mixedpy/datasets/data/insteval.csv",
            subset = "as.integer(s) %% 2 == 0", full = case(d, 50L), even_students = case(half, 20L))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(outdir, "hatvalues_insteval.json"))

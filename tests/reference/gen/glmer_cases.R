# Extra glmer reference cases for mixedpy (issue 4): the cloglog link, and a 0/1 response with a
# correlated random slope (a vector random-effects term) on simulated data.
#
# Usage: Rscript tests/reference/gen/glmer_cases.R OUT_DIR CSV_DIR
#   e.g. Rscript tests/reference/gen/glmer_cases.R tests/reference/lme4 tests/reference/data
# Made with R 4.2.2, lme4 1.1-31, arm 1.13-1.

.this_dir <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f)) dirname(normalizePath(f[1])) else getwd()
})
source(file.path(.this_dir, "refgen.R"))        # defines outdir, csvdir, helpers
source(file.path(.this_dir, "extra_helpers.R"))

cb <- read.csv(file.path(csvdir, "cbpp.csv"), stringsAsFactors = FALSE)
cb$herd <- as.character(cb$herd); cb$period <- as.character(cb$period)
cbnd <- data.frame(period = c("1", "2", "4", "3"), herd = c("1", "5", "15", "NEW"),
                   size = c(10, 10, 10, 10), incidence = c(1, 1, 1, 1))
finish_fit("cbpp_cloglog",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
           cb, "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", newdata = cbnd,
           family = binomial(link = "cloglog"), nAGQ = 1)

## 0/1 response, (x | g): 50 groups of 20, true beta = (-0.5, 1), sd = (1, 0.7), corr 0.3
set.seed(7)
J <- 50; m <- 20
g <- rep(sprintf("g%02d", seq_len(J)), each = m)
x <- round(rnorm(J * m), 3)
S <- matrix(c(1, 0.3 * 0.7, 0.3 * 0.7, 0.49), 2)
b <- MASS::mvrnorm(J, c(0, 0), S)
gi <- rep(seq_len(J), each = m)
eta <- -0.5 + x + b[gi, 1] + b[gi, 2] * x
sb <- data.frame(y = rbinom(J * m, 1, plogis(eta)), x = x, g = g, stringsAsFactors = FALSE)
sbnd <- data.frame(x = c(-1, 0, 1.5, 0.5), g = c("g01", "g02", "g40", "NEW"))
finish_fit("binary_slope",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
           sb, "binary_slope", "y ~ x + (x | g)", newdata = sbnd, family = binomial(), nAGQ = 1)

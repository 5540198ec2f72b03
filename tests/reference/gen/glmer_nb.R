# Negative binomial GLMMs for mixedpy (issue 13): lme4's glmer.nb (theta estimated by optimize() on
# the profiled Laplace deviance) on three models (and one with nAGQ = 0), and glmer with
# MASS::negative.binomial(2) at a fixed theta (log and sqrt links).  Besides refgen.R's fields each
# JSON stores the NB theta (getME(m, "glmer.nb.theta")), its start (est_theta of the Poisson fit), the
# number of theta evaluations, Wald intervals, the summary/print text, all fitted values and, for
# nb_sim_intercept and nb_fixed_theta2, profile intervals.
#
# Usage: Rscript tests/reference/gen/glmer_nb.R OUT_DIR CSV_DIR
#   e.g. Rscript tests/reference/gen/glmer_nb.R tests/reference/glmer_nb tests/reference/data
# Made with R 4.2.2, lme4 1.1-31, MASS 7.3-58.2, arm 1.13-1.

.this_dir <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f)) dirname(normalizePath(f[1])) else getwd()
})
# refgen.R's helpers (outdir, csvdir, common(), ...) without its library(mlmRev), which no model here needs
suppressMessages({library(lme4); library(arm); library(jsonlite)})
for (e in parse(file.path(.this_dir, "refgen.R"))) if (!any(grepl("mlmRev", deparse(e)))) eval(e, globalenv())
source(file.path(.this_dir, "extra_helpers.R"))

nb_post <- function(profile = FALSE) function(d, m) {
  fam <- family(m)
  d$family <- fam$family; d$link <- fam$link; d$nAGQ <- unname(m@devcomp$dims[["nAGQ"]])
  d$nb_theta <- getME(m, "glmer.nb.theta")
  d$nevals <- if (is.null(attr(m, "nevals"))) NA else attr(m, "nevals")
  d$criterion <- -2 * as.numeric(logLik(m))
  ci <- confint(m, method = "Wald")
  d$confint_wald <- list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
  if (profile) {
    pr <- suppressWarnings(suppressMessages(confint(m, method = "profile")))
    d$confint_profile <- list(rows = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]))
  }
  d$summary <- paste(capture.output(print(summary(m))), collapse = "\n")
  d$print <- paste(capture.output(print(m)), collapse = "\n")
  d$fitted_all <- unname(fitted(m))
  d
}

# the start of glmer.nb's theta search: MASS::theta.ml on the Poisson glmer's fitted means
theta_start <- function(formula, data) {
  g0 <- suppressMessages(glmer(as.formula(formula), data = data, family = poisson))
  as.numeric(lme4:::est_theta(g0, limit = 20, eps = 1e-4))
}

nb_fit <- function(name, data, dataname, formula, newdata, profile = FALSE, nAGQ = 1) {
  th0 <- theta_start(formula, data)
  finish_fit(name, quote(glmer.nb(as.formula(formula), data = data, nAGQ = nAGQ)), data, dataname, formula,
             newdata = newdata, sim = FALSE, extra = list(nb_theta_start = th0), post = nb_post(profile),
             nAGQ = nAGQ)
}

## 1. simulated NB counts with a random intercept: 30 groups of 12, size 1.5
set.seed(13)
J <- 30; m <- 12
g <- rep(sprintf("g%02d", seq_len(J)), each = m)
x <- round(rnorm(J * m), 3)
b <- rnorm(J, 0, 0.6)
mu <- exp(1 + 0.5 * x + b[rep(seq_len(J), each = m)])
nb1 <- data.frame(y = rnbinom(J * m, size = 1.5, mu = mu), x = x, g = g, stringsAsFactors = FALSE)
nd1 <- data.frame(x = c(-1, 0, 1.5, 0.5), g = c("g01", "g02", "g20", "NEW"))
nb_fit("nb_sim_intercept", nb1, "nb_sim", "y ~ x + (1 | g)", nd1, profile = TRUE)
nb_fit("nb_sim_nagq0", nb1, "nb_sim", "y ~ x + (1 | g)", nd1, nAGQ = 0)

## 2. two random terms: grouseticks with brood nested in location (crossed coding as lme4's example)
gt <- read.csv(file.path(csvdir, "grouseticks.csv"), stringsAsFactors = FALSE)
gt$YEAR <- as.character(gt$YEAR); gt$BROOD <- as.character(gt$BROOD); gt$LOCATION <- as.character(gt$LOCATION)
nd2 <- data.frame(YEAR = c("95", "96", "97"), cHEIGHT = c(-10, 0, 20), BROOD = c("501", "NEW", "606"),
                  LOCATION = c("32", "NEW", "24"))
nb_fit("nb_grouseticks_two_terms", gt, "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", nd2)

## 3. a covariate and an offset: counts over an exposure time t, size 3, (1 | g)
set.seed(31)
J <- 25; m <- 10
g <- rep(sprintf("s%02d", seq_len(J)), each = m)
x <- round(runif(J * m, -1, 1), 3)
t <- round(runif(J * m, 0.5, 4), 2)
b <- rnorm(J, 0, 0.5)
mu <- t * exp(0.3 + 0.8 * x + b[rep(seq_len(J), each = m)])
nb3 <- data.frame(y = rnbinom(J * m, size = 3, mu = mu), x = x, t = t, logt = log(t), g = g,
                  stringsAsFactors = FALSE)
nd3 <- data.frame(x = c(-0.5, 0.2, 0.9), t = c(1, 2, 3), logt = log(c(1, 2, 3)), g = c("s01", "s07", "NEW"))
nb_fit("nb_sim_offset", nb3, "nb_sim_offset", "y ~ x + offset(logt) + (1 | g)", nd3)

## 4. glmer with a fixed theta: MASS::negative.binomial(2) on grouseticks, (1 | LOCATION); profile CIs
nd4 <- data.frame(YEAR = c("95", "96", "97"), cHEIGHT = c(-10, 0, 20), LOCATION = c("32", "NEW", "24"))
finish_fit("nb_fixed_theta2", quote(glmer(as.formula(formula), data = data, family = MASS::negative.binomial(2))),
           gt, "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", newdata = nd4, sim = FALSE,
           post = nb_post(profile = TRUE))

## 5. the same at theta = 2 with the sqrt link
finish_fit("nb_fixed_theta2_sqrt",
           quote(glmer(as.formula(formula), data = data, family = MASS::negative.binomial(2, link = "sqrt"))),
           nb1, "nb_sim", "y ~ x + (1 | g)", sim = FALSE, post = nb_post())

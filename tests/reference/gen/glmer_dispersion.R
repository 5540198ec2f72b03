# glmer reference fits for families with a dispersion parameter (issue 13): Gamma (log, inverse,
# identity links; a random intercept and a correlated random slope), inverse.gaussian (1/mu^2 and
# log links), gaussian(log); nAGQ = 0, 1 and 5.  Data are simulated here and written as CSV.
#
# Usage: Rscript tests/reference/gen/glmer_dispersion.R OUT_DIR CSV_DIR
#   e.g. Rscript tests/reference/gen/glmer_dispersion.R tests/reference/glmer_dispersion tests/reference/data
# Made with R 4.2.2, lme4 1.1-31, arm 1.13-1, statmod.
#
# What lme4 does for these families (and the JSON records): sigma() is sqrt((wrss + ||u||^2) / n)
# (mkMerMod's sigmaML), VarCorr scales theta by sigma and adds a Residual row, logLik counts sigma in
# its df, summary prints t values with Pr(>|z|), vcov for nAGQ = 0 is sigma^2 (R_X'R_X)^-1.

.this_dir <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f)) dirname(normalizePath(f[1])) else getwd()
})
suppressMessages({library(lme4); library(arm); library(jsonlite)})
# refgen.R's helpers (outdir, csvdir, common, write_ref, ...) without its library(mlmRev), unused here
for (.e in parse(file.path(.this_dir, "refgen.R")))
  if (!any(grepl("mlmRev", deparse(.e)))) eval(.e)
source(file.path(.this_dir, "extra_helpers.R"))

extra_disp <- function(d, m) {
  d$sigma <- sigma(m)
  vc <- as.data.frame(VarCorr(m))
  d$varcorr_df <- list(grp = vc$grp, var1 = ifelse(is.na(vc$var1), "", vc$var1),
                       var2 = ifelse(is.na(vc$var2), "", vc$var2), vcov = vc$vcov, sdcor = vc$sdcor)
  d$deviance <- deviance(m)
  d$wald <- unname(as.matrix(confint(m, method = "Wald")[-(seq_len(length(getME(m, "theta")) + 1)), ]))
  d$summary <- paste(capture.output(print(summary(m))), collapse = "\n")
  d$varcorr_print <- paste(capture.output(print(VarCorr(m))), collapse = "\n")
  d$pearson_head <- unname(head(residuals(m, type = "pearson"), 10))
  d$scaled_resid_quantiles <- unname(quantile(residuals(m, type = "pearson", scaled = TRUE)))
  d
}

nd <- data.frame(x = c(-0.5, 0, 0.8, 0.3), g = c("g01", "g02", "g20", "NEW"))
run <- function(name, data, dataname, formula, family, nAGQ = 1)
  finish_fit(name, quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
             data, dataname, formula, newdata = nd, sim = FALSE, family = family, nAGQ = nAGQ,
             post = extra_disp)

## Gamma, log link: 30 groups of 12, beta = (1, 0.5), sd(b) = 0.4, shape 3
set.seed(101)
J <- 30; m <- 12
g <- rep(sprintf("g%02d", 1:J), each = m)
x <- round(runif(J * m, -1, 1), 3)
b <- rnorm(J, 0, 0.4)
mu <- exp(1 + 0.5 * x + b[rep(1:J, each = m)])
gam <- data.frame(y = round(rgamma(J * m, shape = 3, scale = mu / 3), 4), x = x, g = g)
run("gamma_log", gam, "gamma_log", "y ~ x + (1 | g)", Gamma(link = "log"))
run("gamma_log_nagq0", gam, "gamma_log", "y ~ x + (1 | g)", Gamma(link = "log"), nAGQ = 0)
run("gamma_log_agq5", gam, "gamma_log", "y ~ x + (1 | g)", Gamma(link = "log"), nAGQ = 5)
run("gamma_inverse", gam, "gamma_log", "y ~ x + (1 | g)", Gamma())
run("gaussian_log", gam, "gamma_log", "y ~ x + (1 | g)", gaussian(link = "log"))

## Gamma with a correlated random slope (log link; simulated with the inverse link): 40 groups of 15,
## 1/mu = 0.5 + 0.2 x + b0 + b1 x
set.seed(202)
J <- 40; m <- 15
g <- rep(sprintf("g%02d", 1:J), each = m)
x <- round(runif(J * m, 0, 1), 3)
b0 <- rnorm(J, 0, 0.1); b1 <- 0.5 * b0 + rnorm(J, 0, 0.05)
gi <- rep(1:J, each = m)
eta <- 0.5 + 0.2 * x + b0[gi] + b1[gi] * x
gs <- data.frame(y = round(rgamma(J * m, shape = 5, scale = (1 / eta) / 5), 4), x = x, g = g)
run("gamma_log_slope", gs, "gamma_slope", "y ~ x + (x | g)", Gamma(link = "log"))
## the inverse link with (x | g): a multimodal nAGQ = 0 objective (stage 1); lme4's stage 1 is recorded too
run("gamma_inverse_slope", gs, "gamma_slope", "y ~ x + (x | g)", Gamma())
run("gamma_inverse_slope_nagq0", gs, "gamma_slope", "y ~ x + (x | g)", Gamma(), nAGQ = 0)
run("gamma_identity", gs, "gamma_slope", "y ~ x + (1 | g)", Gamma(link = "identity"))
run("gaussian_inverse", gs, "gamma_slope", "y ~ x + (1 | g)", gaussian(link = "inverse"))
## prior weights: Gamma's aic weights each log density (dispersion dev / sum(w)), sigma's wrss is weighted
gs$w <- rep(c(1, 2, 0.5), length.out = nrow(gs))
finish_fit("gamma_log_weights",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ, weights = w)),
           gs, "gamma_slope_w", "y ~ x + (1 | g)", newdata = nd, sim = FALSE, family = Gamma(link = "log"),
           nAGQ = 1, extra = list(weights = "w"), post = extra_disp)

## inverse Gaussian: 30 groups of 10, 1/mu^2 = 0.3 + 0.1 x + b, lambda = 4
set.seed(303)
J <- 30; m <- 10
g <- rep(sprintf("g%02d", 1:J), each = m)
x <- round(runif(J * m, 0, 1), 3)
b <- rnorm(J, 0, 0.04)
mu <- 1 / sqrt(0.3 + 0.1 * x + b[rep(1:J, each = m)])
ig <- data.frame(y = round(statmod::rinvgauss(J * m, mean = mu, shape = 4), 4), x = x, g = g)
run("invgauss", ig, "invgauss", "y ~ x + (1 | g)", inverse.gaussian())
run("invgauss_log", ig, "invgauss", "y ~ x + (1 | g)", inverse.gaussian(link = "log"))
run("invgauss_log_nagq0", ig, "invgauss", "y ~ x + (1 | g)", inverse.gaussian(link = "log"), nAGQ = 0)

## R's family functions at fixed (y, mu, wt): variance, dev.resids, aic (dispersion dev / n, + 2)
## and each link's linkfun / linkinv / mu.eta, for families.py's unit tests
y <- c(0.5, 1.2, 2.0, 3.7, 0.9); mu <- c(0.8, 1.0, 2.5, 3.0, 1.1); wt <- c(1, 2, 1, 0.5, 1.5)
eta_of <- function(fam) fam$linkfun(mu)
fams <- list(Gamma = Gamma, inverse.gaussian = inverse.gaussian, gaussian = gaussian)
links <- list(Gamma = c("inverse", "log", "identity"), inverse.gaussian = c("1/mu^2", "inverse", "identity", "log"),
              gaussian = c("identity", "log", "inverse"))
ff <- list(y = y, mu = mu, wt = wt, families = lapply(setNames(names(fams), names(fams)), function(nm) {
  f0 <- fams[[nm]]()
  dev <- sum(f0$dev.resids(y, mu, wt))
  list(variance = f0$variance(mu), dev_resids = f0$dev.resids(y, mu, wt),
       aic = f0$aic(y, rep(1, length(y)), mu, wt, dev),
       links = lapply(setNames(links[[nm]], links[[nm]]), function(l) {
         f <- fams[[nm]](link = l)
         eta <- f$linkfun(mu)
         list(linkfun = eta, linkinv = f$linkinv(eta), mu_eta = f$mu.eta(eta))
       }))
}))
write_json(ff, file.path(outdir, "family_functions.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat("family_functions ok\n")

# rstanarm stan_glmer references for the Bayesian mode's families with an auxiliary parameter
# (issue 13, part 4), on small simulated datasets with rstanarm's default priors, 4 chains x 2000:
#   nb, gamma, invgauss, gausslog: neg_binomial_2, Gamma, inverse.gaussian, gaussian (log links), y ~ x + (1 | g)
#   nb_slopes:          neg_binomial_2, y ~ x + (x | g)
#   gamma_inverse:      Gamma(inverse), rstanarm's default link
#   gamma_fewgroups:    Gamma(log) with 5 groups and shape 20, where the decov prior (whose scale
#                       rstanarm multiplies by the aux parameter) shows in the posterior
#   nb_offset_weights:  neg_binomial_2 with offset(logt) and prior weights (which rstanarm multiplies
#                       into each observation's log-likelihood)
#
# Usage: Rscript tests/reference/gen/rstanarm_families.R OUT_DIR CSV_DIR [CASE ...]
#   e.g. Rscript tests/reference/gen/rstanarm_families.R tests/reference/rstanarm tests/reference/data
# (all cases unless some are named; about 2 minutes).
# Made with R 4.2.2, rstanarm 2.21.3 (rstan 2.21.7), statmod for the inverse Gaussian draws.
#
# Per parameter (fixed effects, the aux parameter under rstanarm's name, Sigma and the derived
# random-effect SDs "sd[g:<coef>]" = sqrt(diagonal Sigma entry)) it stores rstan::monitor's mean, sd,
# se_mean (the MCSE of the mean), n_eff, Rhat and bulk ESS, plus print(fit), prior_summary(fit),
# loo(fit)'s estimates (not with weights: rstanarm has no loo then) and the posterior means of
# posterior_epred for the first rows.
suppressMessages({library(rstanarm); library(rstan); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- args[1]; csvdir <- args[2]
only <- args[-(1:2)]
dir.create(outdir, showWarnings = FALSE); dir.create(csvdir, showWarnings = FALSE)

simulate_case <- function(seed, J, m, beta, sd_b, draw, linkinv = exp, sd_slope = 0) {
  set.seed(seed)
  g <- rep(sprintf("g%02d", seq_len(J)), each = m)
  x <- round(rnorm(J * m), 3)
  b <- rnorm(J, 0, sd_b)
  b1 <- rnorm(J, 0, sd_slope)
  gi <- rep(seq_len(J), each = m)
  eta <- beta[1] + beta[2] * x + b[gi] + b1[gi] * x
  data.frame(y = draw(linkinv(eta)), x = x, g = g, stringsAsFactors = FALSE)
}

cases <- list(
  nb = list(family = neg_binomial_2(link = "log"), aux = "reciprocal_dispersion",
            data = simulate_case(11, 12, 10, c(1, 0.5), 0.6,
                                 function(mu) rnbinom(length(mu), size = 2.5, mu = mu))),
  gamma = list(family = Gamma(link = "log"), aux = "shape",
               data = simulate_case(12, 12, 10, c(0.5, 0.4), 0.5,
                                    function(mu) round(rgamma(length(mu), shape = 4, rate = 4 / mu), 4))),
  invgauss = list(family = inverse.gaussian(link = "log"), aux = "lambda",
                  data = simulate_case(13, 12, 10, c(0.3, 0.3), 0.4,
                                       function(mu) round(statmod::rinvgauss(length(mu), mean = mu, shape = 5), 4))),
  gausslog = list(family = gaussian(link = "log"), aux = "sigma",
                  data = simulate_case(14, 12, 10, c(1, 0.3), 0.3,
                                       function(mu) round(rnorm(length(mu), mu, 0.5), 4))),
  nb_slopes = list(family = neg_binomial_2(link = "log"), aux = "reciprocal_dispersion", formula = "y ~ x + (x | g)",
                   data = simulate_case(15, 15, 10, c(1, 0.5), 0.5,
                                        function(mu) rnbinom(length(mu), size = 4, mu = mu), sd_slope = 0.3)),
  gamma_inverse = list(family = Gamma(link = "inverse"), aux = "shape",
                       data = simulate_case(16, 12, 10, c(1, 0.2), 0.15,
                                            function(mu) round(rgamma(length(mu), shape = 3, rate = 3 / mu), 4),
                                            linkinv = function(eta) 1 / eta)),
  # few groups and a large shape: the group-SD prior (decov scale x shape, rstanarm's quirk) matters
  gamma_fewgroups = list(family = Gamma(link = "log"), aux = "shape",
                         data = simulate_case(18, 5, 8, c(0.5, 0.3), 0.5,
                                              function(mu) round(rgamma(length(mu), shape = 20, rate = 20 / mu), 4))),
  nb_offset_weights = list(family = neg_binomial_2(link = "log"), aux = "reciprocal_dispersion",
                           formula = "y ~ x + offset(logt) + (1 | g)", weights = "w",
                           data = local({
                             set.seed(17)
                             J <- 12; m <- 10; n <- J * m
                             g <- rep(sprintf("g%02d", seq_len(J)), each = m)
                             x <- round(rnorm(n), 3)
                             logt <- round(log(runif(n, 0.5, 3)), 4)
                             b <- rnorm(J, 0, 0.5)
                             mu <- exp(0.5 + 0.4 * x + logt + b[rep(seq_len(J), each = m)])
                             data.frame(y = rnbinom(n, size = 3, mu = mu), x = x, logt = logt,
                                        w = sample(1:3, n, replace = TRUE), g = g, stringsAsFactors = FALSE)
                           }))
)

monitor_list <- function(a) {
  mon <- rstan::monitor(a, warmup = 0, print = FALSE)
  lapply(setNames(rownames(mon), rownames(mon)), function(p)
    list(mean = mon[p, "mean"], sd = mon[p, "sd"], mcse = mon[p, "se_mean"], median = mon[p, "50%"],
         n_eff = mon[p, "n_eff"], rhat = mon[p, "Rhat"], ess_bulk = mon[p, "Bulk_ESS"]))
}

for (nm in if (length(only)) only else names(cases)) {
  cs <- cases[[nm]]
  dataname <- paste0("bayes_", nm)
  write.csv(cs$data, file.path(csvdir, paste0(dataname, ".csv")), row.names = FALSE)
  d <- read.csv(file.path(csvdir, paste0(dataname, ".csv")), stringsAsFactors = FALSE)
  formula <- if (is.null(cs$formula)) "y ~ x + (1 | g)" else cs$formula
  wts <- if (is.null(cs$weights)) NULL else d[[cs$weights]]
  t <- system.time(fit <- stan_glmer(as.formula(formula), data = d, family = cs$family, weights = wts,
                                     chains = 4, iter = 2000, seed = 1, cores = 1, refresh = 0))[["elapsed"]]
  a <- as.array(fit)
  pn <- dimnames(a)[[3]]
  keep <- pn[!grepl("^b\\[", pn) & !pn %in% c("mean_PPD", "log-posterior")]
  diag_sigma <- grep("^Sigma\\[g:([^,]+),\\1\\]$", keep, value = TRUE)
  sds <- sqrt(a[, , diag_sigma, drop = FALSE])
  sd_names <- sub("^Sigma\\[g:([^,]+),.*$", "sd[g:\\1]", diag_sigma)
  sub <- array(c(a[, , keep, drop = FALSE], sds), dim = c(dim(a)[1:2], length(keep) + length(sd_names)),
               dimnames = list(NULL, NULL, c(keep, sd_names)))
  lo <- if (is.null(wts)) suppressWarnings(loo(fit)) else NULL    # rstanarm has no loo with weights
  ep <- posterior_epred(fit)
  out <- list(
    name = dataname, formula = formula, data = paste0(dataname, ".csv"),
    family = family(fit)$family, link = family(fit)$link, aux_name = cs$aux,
    priors = "rstanarm defaults; chains=4, iter=2000, seed=1",
    params = monitor_list(sub), n_draws = dim(a)[1] * dim(a)[2],
    rstanarm_seconds = t,
    varcorr_sd = list(g = as.list(attr(VarCorr(fit)$g, "stddev"))),
    loo = if (!is.null(lo)) list(elpd_loo = lo$estimates["elpd_loo", "Estimate"],
                                 se_elpd_loo = lo$estimates["elpd_loo", "SE"],
                                 p_loo = lo$estimates["p_loo", "Estimate"], looic = lo$estimates["looic", "Estimate"]),
    epred_mean_head = unname(colMeans(ep)[1:6]),
    y_mean = mean(d$y),
    print = paste(capture.output(print(fit)), collapse = "\n"),
    prior_summary = paste(capture.output(prior_summary(fit)), collapse = "\n"))
  out$weights <- cs$weights        # (absent without weights)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
             file.path(outdir, paste0(dataname, ".json")))
  cat(nm, "done in", t, "s\n")
}

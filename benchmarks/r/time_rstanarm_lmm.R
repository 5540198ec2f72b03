# Time rstanarm::stan_lmer on any Gaussian LMM given by formula and CSV (4 chains x ITER, seed 1,
# cores 2, rstanarm's defaults) and report bulk ESS per parameter (fixed effects, sigma, Sigma).
# Usage: Rscript time_rstanarm_lmm.R CSV FORMULA GROUPING_COLUMNS(comma-separated) [ITER]
# Prints one JSON line (the layout of time_rstanarm.R).
suppressMessages({library(rstanarm); library(rstan); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 3) stop("usage: time_rstanarm_lmm.R CSV FORMULA GROUPS [ITER]")
d <- read.csv(args[1], stringsAsFactors = FALSE)
for (v in strsplit(args[3], ",")[[1]]) d[[v]] <- as.character(d[[v]])
iter <- if (length(args) >= 4) as.integer(args[4]) else 2000L
t <- system.time(fit <- stan_lmer(as.formula(args[2]), data = d, chains = 4, iter = iter, seed = 1,
                                  cores = 2, refresh = 0))[["elapsed"]]
a <- as.array(fit)
pn <- dimnames(a)[[3]]
keep <- pn[!grepl("^b\\[", pn) & pn != "mean_PPD" & pn != "log-posterior"]
ess <- sapply(keep, function(p) rstan::ess_bulk(a[, , p]))
rhat <- sapply(keep, function(p) rstan::Rhat(a[, , p]))
cat(toJSON(list(formula = args[2], seconds = t, chains = 4, iter = iter, params = unname(keep),
                ess_bulk = unname(ess), rhat = unname(rhat), min_ess_bulk = min(ess),
                min_ess_param = keep[which.min(ess)], min_ess_per_second = min(ess) / t,
                rstanarm = as.character(packageVersion("rstanarm"))),
            auto_unbox = TRUE, digits = NA), "\n", sep = "")

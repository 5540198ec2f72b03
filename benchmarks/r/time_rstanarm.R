# Time rstanarm::stan_lmer / stan_glmer with their defaults (4 chains x 2000 iter, seed 1, cores 2)
# and report bulk ESS per parameter (fixed effects, sigma, Sigma entries).
# Usage: Rscript time_rstanarm.R CASE CSV_DIR [ITER]   (ITER defaults to 2000)
#   CASE: sleepstudy (Reaction ~ Days + (Days | Subject))
#         exam       (normexam ~ standLRT + (standLRT | school))
#         cbpp       (cbind(incidence, size - incidence) ~ period + (1 | herd), binomial)
#         classrooms (passed ~ 1 + (1 | classroom), binomial; classrooms.csv written by bench_bayes.py)
#         verbagg    (r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), binomial)
# Prints one JSON line.
suppressMessages({library(rstanarm); library(rstan); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: time_rstanarm.R CASE CSV_DIR")
case <- args[1]; csvdir <- args[2]
iter <- if (length(args) >= 3) as.integer(args[3]) else 2000L
rd <- function(name, chr) {
  d <- read.csv(file.path(csvdir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
spec <- switch(case,
  sleepstudy = list(data = rd("sleepstudy", "Subject"), formula = "Reaction ~ Days + (Days | Subject)"),
  exam = list(data = rd("exam", c("school", "student", "sex", "schgend")),
              formula = "normexam ~ standLRT + (standLRT | school)"),
  cbpp = list(data = rd("cbpp", c("herd", "period")), family = binomial(),
              formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  classrooms = list(data = rd("classrooms", "classroom"), family = binomial(),
                    formula = "passed ~ 1 + (1 | classroom)"),
  verbagg = list(data = rd("verbagg", c("id", "item", "Gender", "btype", "situ", "mode")), family = binomial(),
                 formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"),
  stop("unknown case: ", case))
t <- system.time(fit <- if (is.null(spec$family))
  stan_lmer(as.formula(spec$formula), data = spec$data, chains = 4, iter = iter, seed = 1, cores = 2, refresh = 0)
else
  stan_glmer(as.formula(spec$formula), data = spec$data, family = spec$family, chains = 4, iter = iter,
             seed = 1, cores = 2, refresh = 0))[["elapsed"]]
a <- as.array(fit)                      # iterations x chains x parameters
pn <- dimnames(a)[[3]]
keep <- pn[!grepl("^b\\[", pn) & pn != "mean_PPD" & pn != "log-posterior"]
ess <- sapply(keep, function(p) rstan::ess_bulk(a[, , p]))
rhat <- sapply(keep, function(p) rstan::Rhat(a[, , p]))
cat(toJSON(list(case = case, formula = spec$formula, seconds = t,
                chains = 4, iter = iter, seed = 1, cores = 2,
                params = unname(keep), ess_bulk = unname(ess), rhat = unname(rhat),
                min_ess_bulk = min(ess), min_ess_param = keep[which.min(ess)],
                min_ess_per_second = min(ess) / t,
                rstanarm = as.character(packageVersion("rstanarm")),
                rstan = as.character(packageVersion("rstan"))),
            auto_unbox = TRUE, digits = NA), "\n", sep = "")

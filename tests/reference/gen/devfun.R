# lme4's profiled deviance functions (lmer(..., devFunOnly = TRUE)) at fixed thetas, for
# tests/test_engine.py (mp.lmer_devfun).  Usage: Rscript devfun.R OUT_JSON CSV_DIR
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
rd <- function(name, chr) {
  d <- read.csv(file.path(args[2], paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
cases <- list(
  list(name = "sleepstudy", data = rd("sleepstudy", "Subject"),
       formula = "Reaction ~ Days + (Days | Subject)",
       thetas = list(c(1, 0, 1), c(0.9, 0.05, 0.2), c(0.5, -0.3, 0.8))),
  list(name = "pastes", data = rd("pastes", c("batch", "cask", "sample")),
       formula = "strength ~ 1 + (1 | batch/cask)",
       thetas = list(c(1, 1), c(3.5, 1.2), c(0.2, 0.0))),
  list(name = "penicillin", data = rd("penicillin", c("plate", "sample")),
       formula = "diameter ~ 1 + (1 | plate) + (1 | sample)",
       thetas = list(c(1, 1), c(1.5, 3.4)))
)
out <- list()
for (cs in cases) {
  for (reml in c(TRUE, FALSE)) {
    f <- lmer(as.formula(cs$formula), data = cs$data, REML = reml, devFunOnly = TRUE)
    start <- as.numeric(environment(f)$pp$theta) + 0  # a copy, before f() moves pp's theta
    m <- lmer(as.formula(cs$formula), data = cs$data, REML = reml)
    out[[length(out) + 1]] <- list(
      name = cs$name, formula = cs$formula, REML = reml,
      start = start, lower = unname(environment(f)$lower),
      theta_names = names(getME(m, "theta")),
      thetas = cs$thetas, values = sapply(cs$thetas, function(th) f(th)))
  }
}
write_json(out, args[1], auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat("ok\n")

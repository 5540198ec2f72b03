# Time lme4 on the simulated data of benchmarks/bench_engine.py (issue 10's slow block structures).
# Usage: Rscript time_engine.R CASE CSV_DIR [REPS]
#   CASE: nested_slopes (y ~ x + h + (h | g1) + (1 | g2) + (1 | g1:g3), CSV nested_slopes.csv)
#         nested_outer  (y ~ x + (1 | a/b), CSV nested_outer.csv)
#         slopes_crossed (y ~ x + (x | b) + (1 | a), CSV slopes_crossed.csv)
# Prints one JSON line: seconds (median of REPS fits), the REML criterion, theta, the number of
# deviance evaluations and the median seconds of one evaluation of the deviance function at theta-hat.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: time_engine.R CASE CSV_DIR [REPS]")
case <- args[1]; csvdir <- args[2]
reps <- if (length(args) >= 3) as.integer(args[3]) else 3L
formula <- switch(case,
  nested_slopes = "y ~ x + h + (h | g1) + (1 | g2) + (1 | g1:g3)",
  nested_outer = "y ~ x + (1 | a/b)",
  slopes_crossed = "y ~ x + (x | b) + (1 | a)",
  stop("unknown case: ", case))
d <- read.csv(file.path(csvdir, paste0(case, ".csv")), stringsAsFactors = FALSE)
for (v in intersect(c("g1", "g2", "g3", "a", "b"), names(d))) d[[v]] <- as.character(d[[v]])
f <- as.formula(formula)
times <- numeric(reps)
for (i in seq_len(reps)) times[i] <- system.time(m <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
dev <- lmer(f, data = d, REML = TRUE, devFunOnly = TRUE)
th <- getME(m, "theta")
ev <- numeric(20)
for (i in seq_along(ev)) ev[i] <- system.time(dev(th))[["elapsed"]]
# system.time's resolution is 1 ms: also time 50 evaluations together
per_eval <- system.time(for (i in 1:50) dev(th))[["elapsed"]] / 50
cat(toJSON(list(case = case, formula = formula, seconds = median(times), times = times, reps = reps,
                deviance = as.numeric(-2 * logLik(m)), theta = unname(th),
                feval = m@optinfo$feval, eval_seconds = per_eval,
                ngrps = as.list(ngrps(m)), lme4 = as.character(packageVersion("lme4"))),
            auto_unbox = TRUE, digits = NA), "\n", sep = "")

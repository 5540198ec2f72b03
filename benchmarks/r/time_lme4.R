# Time one lme4 fit (the same model as the reference case) for benchmarks.
# Usage: Rscript time_lme4.R CASE CSV_DIR [REPS]
#   CASE: sleepstudy | exam | insteval | insteval10k (its first 10,000 rows) | verbagg
#   CSV_DIR: folder holding sleepstudy.csv, exam.csv, insteval.csv, verbagg.csv
#   REPS: repetitions, the median wall-clock time is reported (default 3; 1 for insteval)
# Prints one JSON line: {"case", "seconds", "deviance", "fixef", ...}
# "deviance" is -2*logLik of the fit as lme4 reports it (the REML criterion for REML fits).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: time_lme4.R CASE CSV_DIR [REPS]")
case <- args[1]; csvdir <- args[2]
reps <- if (length(args) >= 3) as.integer(args[3]) else if (case == "insteval") 1L else 3L

rd <- function(name, chr) {
  d <- read.csv(file.path(csvdir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
spec <- switch(case,
  sleepstudy = list(data = rd("sleepstudy", "Subject"),
                    formula = "Reaction ~ Days + (Days | Subject)", family = NULL),
  exam = list(data = rd("exam", c("school", "student", "sex", "schgend")),
              formula = "normexam ~ standLRT + sex + (standLRT | school)", family = NULL),
  insteval = list(data = rd("insteval", c("s", "d", "dept", "service")),
                  formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", family = NULL),
  insteval10k = list(data = head(rd("insteval", c("s", "d", "dept", "service")), 10000),
                     formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", family = NULL),
  verbagg = list(data = rd("verbagg", c("Gender", "item", "id", "btype", "situ", "mode")),
                 formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                 family = binomial()),
  stop("unknown case: ", case))

fit <- function() {
  f <- as.formula(spec$formula)
  if (is.null(spec$family)) lmer(f, data = spec$data, REML = TRUE)
  else glmer(f, data = spec$data, family = spec$family, nAGQ = 1)
}
times <- numeric(reps)
for (i in seq_len(reps)) times[i] <- system.time(m <- fit())[["elapsed"]]
cat(toJSON(list(case = case, seconds = median(times), times = times, reps = reps,
                formula = spec$formula, REML = if (isGLMM(m)) NA else isREML(m),
                deviance = as.numeric(-2 * logLik(m)),
                fixef = unname(fixef(m)), fixef_names = names(fixef(m)),
                theta = unname(getME(m, "theta")),
                lme4 = as.character(packageVersion("lme4")), nobs = nobs(m)),
            auto_unbox = TRUE, digits = NA), "\n", sep = "")

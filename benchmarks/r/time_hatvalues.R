# lme4's hatvalues on InstEval (y ~ service + (1 | s) + (1 | d) + (1 | dept)), for
# benchmarks/bench_influence.py.  Usage: Rscript time_hatvalues.R DATA_DIR.  Prints one JSON line.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "insteval.csv"), colClasses = c(s = "character", d = "character",
              dept = "character", service = "character"))
m <- lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), d)
secs <- system.time(h <- hatvalues(m))[["elapsed"]]
cat(toJSON(list(case = "insteval", hatvalues_seconds = secs, hat_sum = sum(h)), digits = NA, auto_unbox = TRUE), "\n")

# lmerTest's Satterthwaite coefficient table on InstEval (73k rows; issue 12's scaling case), with
# the time R takes.  Usage (from the repository root): Rscript tests/reference/gen/lmertest_insteval.R [OUT_DIR]
# Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3.
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/lmertest"
d <- read.csv("mixedpy/datasets/data/insteval.csv", colClasses = c(s = "character", d = "character",
              dept = "character", service = "character"))
f <- "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
t_fit <- system.time(m0 <- lme4::lmer(as.formula(f), d))[["elapsed"]]
t_lt <- system.time(m <- lmerTest::as_lmerModLmerTest(m0))[["elapsed"]]
ct <- summary(m)$coefficients
res <- list(name = "insteval", data = "mixedpy/datasets/data/insteval.csv", formula = f, REML = TRUE,
            theta = unname(getME(m0, "theta")), seconds_lmer = t_fit, seconds_lmertest = t_lt,
            coef = list(Satterthwaite = list(index = rownames(ct), columns = colnames(ct),
                                             data = lapply(as.data.frame(ct, check.names = FALSE), unname))))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE), file.path(outdir, "insteval.json"))

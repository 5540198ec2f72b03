# Bootstrap (bootMer) and profile intervals of the cbpp binomial glmer, for tests/test_inference.py.
# Usage: Rscript confint_glmer.R OUT_JSON CSV_DIR
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
cb <- read.csv(file.path(args[2], "cbpp.csv"), stringsAsFactors = FALSE)
cb$herd <- as.character(cb$herd); cb$period <- as.character(cb$period)
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb, family = binomial)
set.seed(1)
stat <- function(f) c(getME(f, "theta"), fixef(f))
b <- suppressWarnings(suppressMessages(bootMer(m, stat, nsim = 1000, use.u = FALSE, type = "parametric")))
ci <- suppressWarnings(suppressMessages(confint(m, method = "boot", nsim = 1000, boot.type = "perc")))
pr <- suppressWarnings(suppressMessages(confint(m, method = "profile")))
out <- list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            boot = list(nsim = 1000, rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                        mean = unname(colMeans(b$t, na.rm = TRUE)), sd = unname(apply(b$t, 2, sd, na.rm = TRUE))),
            profile = list(rows = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2])))
write_json(out, args[1], auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat("ok\n")

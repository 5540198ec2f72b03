# Time lmerTest's Satterthwaite table and pbkrtest's Kenward-Roger table for benchmarks.
# Usage: Rscript time_lmertest.R CASE CSV_DIR
#   CASE: insteval (73k rows: Satterthwaite only; pbkrtest forms n x n matrices) |
#         insteval2000 (its first 2,000 rows: both)
# The lme4 fit itself is not timed.  Satterthwaite's time includes as_lmerModLmerTest, where lmerTest
# computes the derivatives its df need (summary() then only combines them).  Printed: one JSON line.
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 2) stop("usage: time_lmertest.R CASE CSV_DIR")
case <- args[1]
d <- read.csv(file.path(args[2], "insteval.csv"),
              colClasses = c(s = "character", d = "character", dept = "character", service = "character"))
if (case == "insteval2000") d <- head(d, 2000) else if (case != "insteval") stop("unknown case: ", case)
f <- y ~ service + (1 | s) + (1 | d) + (1 | dept:service)
m0 <- lme4::lmer(f, d)
t_s <- system.time({
  m <- lmerTest::as_lmerModLmerTest(m0)
  ct <- summary(m, ddf = "Satterthwaite")$coefficients
})[["elapsed"]]
t_kr <- NA
df_kr <- NA
if (case == "insteval2000") {
  t_kr <- system.time(kr <- summary(m, ddf = "Kenward-Roger")$coefficients)[["elapsed"]]
  df_kr <- unname(kr[, "df"])
}
cat(toJSON(list(case = case, nobs = nrow(d), satterthwaite_seconds = t_s, kr_seconds = t_kr,
                df_satterthwaite = unname(ct[, "df"]), df_kr = df_kr,
                lmerTest = as.character(packageVersion("lmerTest")),
                pbkrtest = as.character(packageVersion("pbkrtest"))),
            auto_unbox = TRUE, digits = NA), "\n", sep = "")

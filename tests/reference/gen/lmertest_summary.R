# lmerTest's printed summary(m, ddf = ...) for mixedpy (issue 12 item 1): the title and the
# coefficient block with df, p-values and significance stars, the rest as lme4 prints it.
# Data and models are those of tests/reference/gen/lmertest.R (run that first).
#
# Usage (from the repository root): Rscript tests/reference/gen/lmertest_summary.R [OUT_DIR]
#   (default tests/reference/lmertest_summary)
# Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2.
suppressMessages({ library(lme4); library(lmerTest); library(pbkrtest) })
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/lmertest_summary"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
lt <- "tests/reference/lmertest"
save <- function(name, x) writeLines(capture.output(print(x)), file.path(outdir, paste0(name, ".txt")))

sleepstudy <- read.csv("mixedpy/datasets/data/sleepstudy.csv")
sleepstudy$Subject <- as.character(sleepstudy$Subject)
m1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
save("sleepstudy_Satterthwaite", summary(m1))
save("sleepstudy_Kenward-Roger", summary(m1, ddf = "Kenward-Roger"))
m1ml <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)
save("sleepstudy_ml_Satterthwaite", summary(m1ml))
repeated <- read.csv(file.path(lt, "repeated.csv"))
m2 <- lmer(y ~ week * group + (week | subject), repeated)
save("repeated_Satterthwaite", summary(m2))
save("repeated_Kenward-Roger", summary(m2, ddf = "Kenward-Roger"))
crossed <- read.csv(file.path(lt, "crossed.csv"))
m3 <- lmer(y ~ A * B + (1 | subj) + (1 | item), crossed)
save("crossed_Satterthwaite", summary(m3))

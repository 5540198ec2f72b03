# Which optimum lme4's glmer reaches on the Gamma(inverse) (x | g) fit of glmer_dispersion.R
# (gamma_slope.csv) with each stage-1 optimizer: the nAGQ = 0 criterion has a singular local optimum
# (theta_1 = 0) besides the interior one, and the path decides which one stage 1 reaches.
#
# Usage: Rscript tests/reference/gen/glmer_boundary.R OUT_DIR CSV_DIR
#   e.g. Rscript tests/reference/gen/glmer_boundary.R tests/reference/glmer_boundary tests/reference/data
# Made with R 4.2.2, lme4 1.1-31, minqa 1.2.5, nloptr.
#
# Each entry records glmerControl's optimizer pair and optCtrl, and the fit's theta, fixef, logLik,
# the optimizer of its last stage and whether it is singular.  "default" is lme4's
# c("bobyqa", "Nelder_Mead"), i.e. minqa's BOBYQA with npt = n + 2 interpolation points in stage 1;
# "minqa_npt_2n1" gives minqa npt = 2n + 1 (NLopt's BOBYQA's fixed number) in stage 1.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- args[1]; csvdir <- args[2]
d <- read.csv(file.path(csvdir, "gamma_slope.csv"))
fit1 <- function(label, nAGQ, optimizer, optCtrl = list()) {
  ctl <- glmerControl(optimizer = optimizer, optCtrl = optCtrl)
  m <- suppressMessages(suppressWarnings(
    glmer(y ~ x + (x | g), data = d, family = Gamma(), nAGQ = nAGQ, control = ctl)))
  list(label = label, nAGQ = nAGQ, optimizer = optimizer, optCtrl = optCtrl,
       theta = unname(getME(m, "theta")), fixef = unname(fixef(m)), logLik = as.numeric(logLik(m)),
       last_optimizer = m@optinfo$optimizer, feval = m@optinfo$feval, singular = isSingular(m))
}
fits <- list(
  fit1("default", 1, c("bobyqa", "Nelder_Mead")),
  fit1("minqa_npt_2n1", 1, c("bobyqa", "Nelder_Mead"), list(npt = 7)),
  fit1("nloptwrap_stage1", 1, c("nloptwrap", "Nelder_Mead")),
  fit1("default", 0, "bobyqa"),
  fit1("minqa_npt_2n1", 0, "bobyqa", list(npt = 7)),
  fit1("nloptwrap_stage1", 0, "nloptwrap"))
out <- list(name = "gamma_inverse_slope_optimizers", data = "gamma_slope.csv", formula = "y ~ x + (x | g)",
            family = "Gamma", link = "inverse", lme4 = as.character(packageVersion("lme4")),
            default_optimizer = glmerControl()$optimizer, fits = fits)
write_json(out, file.path(outdir, "gamma_inverse_slope_optimizers.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE)
cat("gamma_inverse_slope_optimizers ok\n")

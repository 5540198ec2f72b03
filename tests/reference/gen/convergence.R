# Reference for the profile-interval warm-start defect (issue 9, part C, defect 7).
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/convergence.R
# Writes tests/reference/convergence/slope_cor_near1.csv and
# tests/reference/convergence/profile_cor_boundary.json.  Made with R 4.2.2, lme4 1.1-31.
#
# The data: 8 groups of 4 observations from a correlated random intercept and slope model,
#   y = 1 + 0.5 x + b0_g + b1_g x + e,  (b0, b1) ~ N(0, [[1, 0.665], [0.665, 0.49]]) (correlation 0.95),
#   e ~ N(0, 0.5^2), x = 0, 1/3, 2/3, 1 in each group, set.seed(60).
# The ML fit is not singular (correlation 0.83), but profiling the slope SD (.sig03) towards 0
# drives the correlation to +1: a profile whose inner fits warm-start from that boundary point
# stopped there, and the lower end came out 0.0043 too high.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

set.seed(60)
J <- 8; nj <- 4; r <- 0.95
S <- matrix(c(1, r * 0.7, r * 0.7, 0.49), 2)
b <- MASS::mvrnorm(J, c(0, 0), S)
gi <- rep(1:J, each = nj)
x <- rep(seq(0, 1, length.out = nj), J)
y <- 1 + 0.5 * x + b[gi, 1] + b[gi, 2] * x + rnorm(J * nj, sd = 0.5)
d <- data.frame(y = y, x = x, g = sprintf("g%02d", gi))
write.csv(d, "tests/reference/convergence/slope_cor_near1.csv", row.names = FALSE)
# fit the data as stored (15 significant digits), which is what the Python test reads
d <- read.csv("tests/reference/convergence/slope_cor_near1.csv", stringsAsFactors = FALSE)

m <- lmer(y ~ x + (x | g), d)
mml <- refitML(m)
ci <- suppressMessages(suppressWarnings(confint(m, method = "profile")))
vc <- as.data.frame(VarCorr(mml), order = "lower.tri")
out <- list(
  note = paste("lme4 1.1-31 confint(lmer(y ~ x + (x | g), REML = TRUE), method = 'profile'), level 0.95,",
               "oldNames = TRUE; ml_sdcor = sd/cor/sigma of the ML refit (the profile's centre)."),
  data = "slope_cor_near1.csv", formula = "y ~ x + (x | g)", REML = TRUE,
  rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
  ml_sdcor = vc$sdcor, ml_deviance = deviance(mml)
)
write_json(out, "tests/reference/convergence/profile_cor_boundary.json", digits = NA, auto_unbox = TRUE,
           pretty = TRUE)
cat("wrote profile_cor_boundary.json\n")

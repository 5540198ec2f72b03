# lme4 reference for a random-slope first term crossed with a random intercept,
# y ~ x + (x | b) + (1 | a): b has 1,000 levels (first in lme4's order, a BlkDiag block in mixedpy),
# a 100, 4,000 rows, so that mixedpy's default block structure stores L[a, b] sparse and takes the
# vector-valued Gram plans (tests/test_slope_gram.py).  Writes the data and lme4's REML and ML fits
# with the profiled criteria at a few fixed thetas (devFunOnly = TRUE).
# Usage: Rscript tests/reference/gen/slope_gram.R   (from the repository root)
suppressMessages({library(lme4); library(jsonlite)})
set.seed(20261201)
n <- 4000; Jb <- 1000; Ja <- 100
b <- sample.int(Jb, n, replace = TRUE); a <- sample.int(Ja, n, replace = TRUE)
x <- rnorm(n)
rb <- cbind(rnorm(Jb, sd = 0.8), rnorm(Jb, sd = 0.4))
y <- 1 + 0.5 * x + rb[b, 1] + rb[b, 2] * x + rnorm(Ja, sd = 0.5)[a] + rnorm(n)
d <- data.frame(y = y, x = x, b = sprintf("b%04d", b), a = sprintf("a%03d", a), stringsAsFactors = FALSE)
write.csv(d, "tests/reference/data/slope_gram.csv", row.names = FALSE)
d <- read.csv("tests/reference/data/slope_gram.csv", stringsAsFactors = FALSE)
f <- y ~ x + (x | b) + (1 | a)
thetas <- list(c(0.8, 0.1, 0.4, 0.5), c(1.3, -0.4, 0.05, 1.7), c(0.2, 0.0, 0.0, 0.9))
one <- function(REML) {
  m <- lmer(f, data = d, REML = REML)
  dev <- lmer(f, data = d, REML = REML, devFunOnly = TRUE)
  list(REML = REML, objective = if (REML) unname(getME(m, "devcomp")$cmp["REML"]) else as.numeric(deviance(m)),
       theta = unname(getME(m, "theta")), fixef = as.list(fixef(m)), sigma = sigma(m),
       theta_names = names(getME(m, "theta")),
       at = lapply(thetas, function(th) list(theta = th, value = dev(th))))
}
out <- list(formula = "y ~ x + (x | b) + (1 | a)", data = "slope_gram.csv", ngrps = as.list(ngrps(lmer(f, data = d))),
            lme4 = as.character(packageVersion("lme4")), fits = list(one(TRUE), one(FALSE)))
write_json(out, "tests/reference/lme4/slope_gram.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat("ok\n")

# R's family$aic(y, n, mu, wt, dev) with the deviance passed in, for tests/test_family_cleanup.py:
# Gamma() uses dev only through the plug-in dispersion dev / sum(wt), so its aic at a dev other than
# the deviance at mu shows that the value passed is the one used; binomial(), poisson() and MASS's
# negative.binomial(theta) ignore dev.  (gaussian() and inverse.gaussian() assume dev is the deviance
# at mu: their formulas replace sum(d_i) / phi by n.)
#
# Usage: Rscript tests/reference/gen/family_cleanup.R OUT_DIR
#   e.g. Rscript tests/reference/gen/family_cleanup.R tests/reference/family_cleanup
# Also each family's default link.  Made with R 4.2.2, MASS 7.3-58.2.
suppressMessages({library(MASS); library(jsonlite)})
outdir <- commandArgs(TRUE)[1]
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

y <- c(0.5, 1.2, 2.0, 3.7, 0.9); mu <- c(0.8, 1.0, 2.5, 3.0, 1.1); wt <- c(1, 2, 1, 0.5, 1.5)
dev <- sum(Gamma()$dev.resids(y, mu, wt))
scales <- c(0.5, 1, 1.5)
gam <- list(y = y, mu = mu, wt = wt, deviance = dev, scales = scales,
            aic = sapply(scales, function(s) Gamma()$aic(y, rep(1, 5), mu, wt, s * dev)))

k <- c(0, 3, 1, 4, 2); m <- c(3, 5, 2, 4, 6); p <- c(0.2, 0.5, 0.4, 0.9, 0.3)
bdev <- sum(binomial()$dev.resids(k / m, p, m))
bin <- list(successes = k, trials = m, mu = p, deviance = bdev,
            aic = sapply(scales, function(s) binomial()$aic(k / m, m, p, m, s * bdev)))

yc <- c(0, 2, 5, 1, 3); muc <- c(0.7, 2.2, 3.9, 1.4, 2.6); wc <- c(1, 2, 1, 0.5, 1.5)
pdev <- sum(poisson()$dev.resids(yc, muc, wc))
pois <- list(y = yc, mu = muc, wt = wc, deviance = pdev,
             aic = sapply(scales, function(s) poisson()$aic(yc, 1, muc, wc, s * pdev)))
nbf <- negative.binomial(2.5)
ndev <- sum(nbf$dev.resids(yc, muc, wc))
nb <- list(theta = 2.5, y = yc, mu = muc, wt = wc, deviance = ndev,
           aic = sapply(scales, function(s) nbf$aic(yc, 1, muc, wc, s * ndev)))

# each family's default link (rstanarm's are R's: binomial(), poisson(), ..., MASS's negative.binomial)
links <- list(binomial = binomial()$link, poisson = poisson()$link, neg_binomial_2 = negative.binomial(1)$link,
              Gamma = Gamma()$link, inverse.gaussian = inverse.gaussian()$link, gaussian = gaussian()$link)

write_json(list(Gamma = gam, binomial = bin, poisson = pois, negative_binomial = nb, default_links = links),
           file.path(outdir, "aic_dev.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)
cat("aic_dev ok\n")

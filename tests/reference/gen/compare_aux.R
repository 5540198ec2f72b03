# lme4's estimates of the auxiliary parameter for mp.compare(fit, posterior) (tidy-up s5): on the
# datasets of tests/reference/gen/rstanarm_families.R, y ~ x + (1 | g) by lme4's glmer.nb (theta,
# getME(m, "glmer.nb.theta")) and glmer with Gamma(log), inverse.gaussian(log) and gaussian(log)
# (sigma(m), whose square is the dispersion phi: rstanarm's shape and lambda are 1 / phi, its sigma
# is sigma(m)).
#
# Usage: Rscript tests/reference/gen/compare_aux.R OUT_FILE CSV_DIR
#   e.g. Rscript tests/reference/gen/compare_aux.R tests/reference/tidy_s5/compare_aux.json tests/reference/data
# Made with R 4.2.2, lme4 1.1-31.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out_file <- args[1]; csvdir <- args[2]
f <- y ~ x + (1 | g)
rd <- function(name) read.csv(file.path(csvdir, paste0(name, ".csv")))
nb <- glmer.nb(f, rd("bayes_nb"))
fits <- list(gamma = glmer(f, rd("bayes_gamma"), family = Gamma(link = "log")),
             invgauss = glmer(f, rd("bayes_invgauss"), family = inverse.gaussian(link = "log")),
             gausslog = glmer(f, rd("bayes_gausslog"), family = gaussian(link = "log")))
res <- list(formula = deparse(f),
            nb = list(data = "bayes_nb.csv", nb_theta = getME(nb, "glmer.nb.theta"), fixef = unname(fixef(nb))))
for (n in names(fits)) {
  m <- fits[[n]]
  res[[n]] <- list(data = paste0("bayes_", n, ".csv"), family = family(m)$family, link = family(m)$link,
                   sigma = sigma(m), fixef = unname(fixef(m)))
}
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), out_file)

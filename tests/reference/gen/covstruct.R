# Reference fits for structured covariance terms (issue 13, part 3): glmmTMB's us, diag, cs and
# ar1, REML and ML, on simulated repeated-measures data, a Poisson ar1 and a binomial cs glmer, and
# the lme4 fits that the unstructured / diagonal / homogeneous-cs terms must reproduce exactly.
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/covstruct.R tests/reference/covstruct
# writes OUT_DIR/repeated.csv (the data) and OUT_DIR/covstruct.json.
# Made with R 4.2.2, glmmTMB 1.1.5, TMB 1.9.2, lme4 1.1-31, lmerTest, pbkrtest (Debian packages).
#
# glmmTMB 1.1.5 has no homcs(); lme4 2.x and later glmmTMB define homcs(0 + f | g) as one SD and
# one correlation (Sigma = s^2 ((1 - rho) I + rho 11')).  For rho >= 0 that is exactly lme4's
# (1 | g) + (1 | g:f) with s^2 = s_g^2 + s_gf^2 and rho = s_g^2 / s^2, which is the reference
# stored here.
suppressMessages({library(glmmTMB); library(lme4); library(jsonlite); library(lmerTest)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/covstruct"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

## the data: 60 subjects x 5 times x 2 replicates ------------------------------------------
set.seed(20261201)
ns <- 60; nt <- 5; nr <- 2
d <- expand.grid(rep = seq_len(nr), time = seq_len(nt), subj = seq_len(ns))
d$subj <- sprintf("s%02d", d$subj)
d$x <- round(rnorm(nrow(d)), 3)
# subject effects: AR(1) over time (sd 1.2, rho 0.6) plus a subject slope in x
R1 <- 0.6^abs(outer(1:nt, 1:nt, "-"))
B <- matrix(rnorm(ns * nt), ns) %*% chol(1.44 * R1)
slope <- rnorm(ns, 0, 0.5)
si <- match(d$subj, sprintf("s%02d", 1:ns))
eta <- B[cbind(si, d$time)]
d$y <- round(10 + 0.3 * d$time + 0.8 * d$x + eta + slope[si] * d$x + rnorm(nrow(d), 0, 0.7), 4)
# counts and binomial outcomes from the same subject effects on a smaller scale
d$count <- rpois(nrow(d), exp(0.5 + 0.1 * d$time + 0.5 * eta))
d$succ <- rbinom(nrow(d), 6, plogis(-0.2 + 0.1 * d$time + 0.6 * eta))
d$fail <- 6 - d$succ
d$time <- paste0("t", d$time)
write.csv(d, file.path(outdir, "repeated.csv"), row.names = FALSE)
d$time <- factor(d$time)
d$subj <- factor(d$subj)

## helpers ----------------------------------------------------------------------------------
tmb_cov <- function(m) {
  vc <- VarCorr(m)$cond
  lapply(setNames(names(vc), names(vc)), function(g) {
    v <- vc[[g]]
    list(names = colnames(v), cov = unname(as.matrix(v)), sd = unname(attr(v, "stddev")),
         corr = unname(as.matrix(attr(v, "correlation"))))
  })
}
tmb_case <- function(formula, family = gaussian(), REML = FALSE, ranef = FALSE) {
  m <- glmmTMB(as.formula(formula), data = d, family = family, REML = REML)
  out <- list(engine = "glmmTMB", formula = formula, family = family$family, REML = REML,
              logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
              fixef = as.list(fixef(m)$cond), se_fixef = as.list(sqrt(diag(vcov(m)$cond))),
              varcorr = tmb_cov(m), theta = unname(getME(m, "theta")),
              convergence = m$fit$convergence, pdHess = m$sdr$pdHess,
              print_varcorr = paste(capture.output(print(VarCorr(m))), collapse = "\n"))
  if (family$family == "gaussian") out$sigma <- sigma(m)
  if (ranef) {
    re <- ranef(m)$cond
    out$ranef <- lapply(re, function(r) list(levels = rownames(r), names = colnames(r),
                                             values = unname(as.matrix(r))))
  }
  out
}
lme4_case <- function(formula, REML = TRUE, family = NULL) {
  m <- if (is.null(family)) lmer(as.formula(formula), data = d, REML = REML)
       else glmer(as.formula(formula), data = d, family = family)
  vc <- VarCorr(m)
  out <- list(engine = "lme4", formula = formula, REML = REML,
              logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
              fixef = as.list(fixef(m)), se_fixef = as.list(sqrt(diag(as.matrix(vcov(m))))),
              theta = unname(getME(m, "theta")),
              varcorr = lapply(vc, function(v) list(names = colnames(v), cov = unname(as.matrix(v)),
                                                    sd = unname(attr(v, "stddev")))))
  if (is.null(family)) {
    out$sigma <- sigma(m)
    if (REML) {
      # lmerTest's Satterthwaite df and pbkrtest's Kenward-Roger df of the fixed effects
      mt <- as(m, "lmerModLmerTest")
      out$satterthwaite_df <- unname(summary(mt, ddf = "Satterthwaite")$coefficients[, "df"])
      out$kr_df <- unname(summary(mt, ddf = "Kenward-Roger")$coefficients[, "df"])
    }
  }
  out
}

cases <- list()
for (reml in c(TRUE, FALSE)) {
  tag <- if (reml) "reml" else "ml"
  cases[[paste0("cs_", tag)]] <- tmb_case("y ~ time + cs(0 + time | subj)", REML = reml, ranef = reml)
  cases[[paste0("ar1_", tag)]] <- tmb_case("y ~ time + ar1(0 + time | subj)", REML = reml, ranef = reml)
  cases[[paste0("us_tmb_", tag)]] <- tmb_case("y ~ x + us(x | subj)", REML = reml)
  cases[[paste0("diag_tmb_", tag)]] <- tmb_case("y ~ x + diag(x | subj)", REML = reml)
  # glmmTMB's diag() of a factor with an intercept: every model-matrix column independent
  cases[[paste0("diag_factor_tmb_", tag)]] <- tmb_case("y ~ time + diag(time | subj)", REML = reml)
  cases[[paste0("us_lme4_", tag)]] <- lme4_case("y ~ x + (x | subj)", REML = reml)
  cases[[paste0("diag_lme4_", tag)]] <- lme4_case("y ~ x + (x || subj)", REML = reml)
  # homcs(0 + time | subj) for rho >= 0
  cases[[paste0("homcs_lme4_", tag)]] <- lme4_case("y ~ time + (1 | subj) + (1 | subj:time)", REML = reml)
}
# lme4 1.1-31's (time || subj) for a factor: (1 | subj) + (0 + time | subj), the factor's block unstructured
cases$diag_factor_lme4_reml <- lme4_case("y ~ time + (time || subj)", REML = TRUE)
cases$ar1_poisson <- tmb_case("count ~ time + ar1(0 + time | subj)", family = poisson(), ranef = TRUE)
cases$cs_binomial <- tmb_case("cbind(succ, fail) ~ time + cs(0 + time | subj)", family = binomial())
cases$diag_poisson_tmb <- tmb_case("count ~ x + diag(x | subj)", family = poisson())
cases$diag_poisson_lme4 <- lme4_case("count ~ x + (x || subj)", family = poisson())

# profile-likelihood intervals of the ML ar1 fit; glmmTMB profiles its theta (log SD, and
# t with rho = t / sqrt(1 + t^2)), and a profile interval maps through a monotone transform, so the
# SD and rho intervals are exp() and t / sqrt(1 + t^2) of glmmTMB's
m_ar1 <- glmmTMB(y ~ time + ar1(0 + time | subj), data = d, REML = FALSE)
ci <- confint(m_ar1, method = "profile")
th <- ci[grep("^theta_", rownames(ci)), , drop = FALSE]
cases$ar1_ml_profile <- list(
  fixef_names = rownames(ci)[!grepl("^theta_", rownames(ci))],
  fixef_lower = unname(ci[!grepl("^theta_", rownames(ci)), 1]),
  fixef_upper = unname(ci[!grepl("^theta_", rownames(ci)), 2]),
  sd_lower = exp(th[1, 1]), sd_upper = exp(th[1, 2]),
  rho_lower = th[2, 1] / sqrt(1 + th[2, 1]^2), rho_upper = th[2, 2] / sqrt(1 + th[2, 2]^2))

m_pois <- glmmTMB(count ~ time + ar1(0 + time | subj), data = d, family = poisson())
thp <- confint(m_pois, method = "profile", parm = "theta_")
cases$ar1_poisson_profile <- list(
  sd_lower = exp(thp[1, 1]), sd_upper = exp(thp[1, 2]),
  rho_lower = thp[2, 1] / sqrt(1 + thp[2, 1]^2), rho_upper = thp[2, 2] / sqrt(1 + thp[2, 2]^2))

# glmmTMB's documentation example (two terms on Subject; one observation per random effect of the
# ar1 term, which lme4 2.x allows for structured terms); glmmTMB's intercept SD (0.06) is the
# log-scale approach to the boundary at 0
data(sleepstudy, package = "lme4")
m_ss <- glmmTMB(Reaction ~ 1 + (1 | Subject) + ar1(0 + factor(Days) | Subject), sleepstudy, REML = TRUE)
cases$sleepstudy_ar1 <- list(logLik = as.numeric(logLik(m_ss)), sigma = sigma(m_ss),
                             ar1_sd = unname(attr(VarCorr(m_ss)$cond[[2]], "stddev")[1]),
                             ar1_rho = unname(attr(VarCorr(m_ss)$cond[[2]], "correlation")[2, 1]),
                             intercept_sd = unname(attr(VarCorr(m_ss)$cond[[1]], "stddev")))

# glmmTMB's own messages for bad ar1() input
err <- function(expr) tryCatch({expr; NA_character_}, error = function(e) conditionMessage(e),
                               warning = function(w) paste("warning:", conditionMessage(w)))
cases$errors <- list(
  ar1_numeric = err(glmmTMB(y ~ x + ar1(0 + x | subj), data = d)),
  ar1_intercept = err(glmmTMB(y ~ time + ar1(time | subj), data = d)))

cases$versions <- list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                       TMB = as.character(packageVersion("TMB")), lme4 = as.character(packageVersion("lme4")))
writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(outdir, "covstruct.json"))

# Reference for issue 12 part 6: residuals of each type, na.exclude padding, prediction standard
# errors and intervals, hat values, Cook's distance and lme4's case-deletion influence.
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/residuals_predict.R
# Writes tests/reference/residuals/residuals_predict.json.  Made with R 4.2.2, lme4 1.1-31.
#
# lme4 1.1-31 has influence.merMod, hatvalues.merMod and cooks.distance.merMod but its predict()
# has no se.fit (that came with lme4's vcov_full in later versions; merTools is not installed).
# The standard errors below are therefore computed by hand from lme4's getME() pieces with the
# formula of later lme4's vcov_full:
#   Cmat = sigma^2 D A^{-1} D',  A = [Lambda'Z'WZ Lambda + I, Lambda'Z'WX; X'WZ Lambda, X'WX],
#   D = blockdiag(Lambda, I),  se.fit_i = sqrt([Z X]_i Cmat [Z X]_i')
# (A is formed densely here, so no CHOLMOD permutation is involved.)
#
# The fits use tight optimizer tolerances so that both programs stop at the same optimum and the
# residuals can be compared at 1e-6 relative.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

sleep <- read.csv("tests/reference/data/sleepstudy.csv", stringsAsFactors = FALSE)
sleep$Subject <- factor(sleep$Subject)
cbpp_d <- read.csv("tests/reference/data/cbpp.csv", stringsAsFactors = FALSE)
cbpp_d$period <- factor(cbpp_d$period)
cbpp_d$herd <- factor(cbpp_d$herd)
grouse <- read.csv("tests/reference/data/grouseticks.csv", stringsAsFactors = FALSE)
grouse$YEAR <- factor(grouse$YEAR)
grouse$BROOD <- factor(grouse$BROOD)
grouse$LOCATION <- factor(grouse$LOCATION)

tight_l <- lmerControl(optCtrl = list(ftol_abs = 1e-12, xtol_abs = 1e-10))
tight_g <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5), tolPwrss = 1e-10)
u <- function(x) unname(as.numeric(x))

all_types <- function(m) {
  out <- list()
  for (ty in c("response", "pearson", "deviance", "working")) out[[ty]] <- u(residuals(m, type = ty))
  out$default <- u(residuals(m))
  out$scaled <- u(residuals(m, scaled = TRUE))
  out$fitted <- u(fitted(m))
  out$sigma <- sigma(m)
  out$theta <- u(getME(m, "theta"))
  out$fixef <- u(fixef(m))
  out
}

# ---- residuals -------------------------------------------------------------------------------
m <- lmer(Reaction ~ Days + (Days | Subject), sleep, control = tight_l)
sleep_w <- sleep
sleep_w$w <- 1 + (sleep_w$Days %% 3)
mw <- lmer(Reaction ~ Days + (Days | Subject), sleep_w, weights = w, control = tight_l)
g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_d, family = binomial, control = tight_g)
p <- glmer(TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION), grouse, family = poisson, control = tight_g)
# a 0/1 binomial response with prior weights: the proportions/trials form of cbpp
cbpp_p <- cbpp_d
cbpp_p$prop <- cbpp_p$incidence / cbpp_p$size
gp <- glmer(prop ~ period + (1 | herd), cbpp_p, family = binomial, weights = size, control = tight_g)

# ---- na.exclude ------------------------------------------------------------------------------
sleep_na <- sleep
sleep_na$Reaction[c(3, 50)] <- NA
sleep_na$Days[100] <- NA
rownames(sleep_na) <- paste0("r", seq_len(nrow(sleep_na)))
m_na <- lmer(Reaction ~ Days + (Days | Subject), sleep_na, na.action = na.exclude, control = tight_l)
cbpp_na <- cbpp_d
cbpp_na$incidence[c(5, 20)] <- NA
g_na <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_na, family = binomial,
              na.action = na.exclude, control = tight_g)
na_part <- function(m) list(
  names = names(residuals(m)), residuals = u(residuals(m)), pearson = u(residuals(m, type = "pearson")),
  fitted = u(fitted(m)), predict = u(predict(m)), predict_response = u(predict(m, type = "response")),
  predict_pop = u(predict(m, re.form = NA)), theta = u(getME(m, "theta")))

# ---- prediction standard errors ---------------------------------------------------------------
joint_cov <- function(m) {
  # sigma^2 D A^{-1} D' in the (b, beta) coordinates (later lme4's vcov_full)
  Z <- as.matrix(getME(m, "Z")); X <- getME(m, "X"); Lt <- as.matrix(getME(m, "Lambdat"))
  sw <- if (isGLMM(m)) as.numeric(m@resp$sqrtXwt) else sqrt(weights(m))
  ZL <- (Z %*% t(Lt)) * sw; Xw <- X * sw
  A <- rbind(cbind(crossprod(ZL) + diag(ncol(ZL)), crossprod(ZL, Xw)),
             cbind(crossprod(Xw, ZL), crossprod(Xw)))
  D <- as.matrix(Matrix::bdiag(t(Lt), diag(ncol(X))))
  sigma(m)^2 * D %*% solve(A) %*% t(D)
}
# rows [Z X] for newdata in lme4's b order (term by term, level-major): each term's model matrix at
# its fitted level, 0 for a new level and for the terms a prediction leaves out.  spec lists the
# terms in lme4's order as (grouping factor, model-matrix formula).
new_rows <- function(m, nd, spec, chosen, fixed) {
  fl <- getME(m, "flist")
  Z <- do.call(cbind, lapply(seq_along(spec), function(i) {
    lv <- levels(fl[[spec[[i]][1]]])
    M <- model.matrix(as.formula(paste("~", spec[[i]][2])), nd)
    k <- ncol(M)
    Zi <- matrix(0, nrow(nd), length(lv) * k)
    code <- match(as.character(nd[[spec[[i]][1]]]), lv)
    if (i %in% chosen) for (r in which(!is.na(code))) Zi[r, (code[r] - 1) * k + seq_len(k)] <- M[r, ]
    Zi
  }))
  cbind(Z, model.matrix(as.formula(paste("~", fixed)), nd))
}
se_of <- function(m, R) sqrt(rowSums((R %*% joint_cov(m)) * R))
re_var <- function(m, nd, spec, dropped) {
  # z_i' Sigma_t z_i summed over the terms whose effects a prediction leaves out
  vc <- VarCorr(m); out <- numeric(nrow(nd))
  for (i in dropped) {
    M <- model.matrix(as.formula(paste("~", spec[[i]][2])), nd)
    out <- out + rowSums((M %*% vc[[i]]) * M)
  }
  out
}
m2 <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleep, control = tight_l)
spec_m <- list(c("Subject", "1 + Days"))
spec_m2 <- list(c("Subject", "1"), c("Subject", "0 + Days"))
spec_g <- list(c("herd", "1"))
# the hand-built rows reproduce lme4's own Z and X on the fitted data
stopifnot(max(abs(new_rows(m, sleep, spec_m, 1, "Days") -
                  cbind(as.matrix(getME(m, "Z")), getME(m, "X")))) == 0)
stopifnot(max(abs(new_rows(m2, sleep, spec_m2, 1:2, "Days") -
                  cbind(as.matrix(getME(m2, "Z")), getME(m2, "X")))) == 0)

nd <- data.frame(Days = c(0, 3, 9, 5, 2))
nd$Subject <- factor(c("308", "335", "372", "999", "999"), levels = union(levels(sleep$Subject), "999"))
R_cond <- new_rows(m, nd, spec_m, 1, "Days")
R_pop <- new_rows(m, nd, spec_m, integer(0), "Days")
se_cond <- se_of(m, R_cond); se_pop <- se_of(m, R_pop)
fit_cond <- u(predict(m, nd, allow.new.levels = TRUE)); fit_pop <- u(predict(m, nd, re.form = NA))
z <- qnorm(0.975)
s2 <- sigma(m)^2
new_lvl <- as.character(nd$Subject) == "999"
pv_cond <- se_cond^2 + s2 + ifelse(new_lvl, re_var(m, nd, spec_m, 1), 0)
pv_pop <- se_pop^2 + s2 + re_var(m, nd, spec_m, 1)
# the fit's own rows, conditional
R_own <- cbind(as.matrix(getME(m, "Z")), getME(m, "X"))
se_own <- se_of(m, R_own)

# two terms on one factor, predicting with one of them (re.form = ~ (1 | Subject))
nd2 <- nd[1:3, ]
R_part <- new_rows(m2, nd2, spec_m2, 1, "Days")
se_part <- se_of(m2, R_part)
fit_part <- u(predict(m2, nd2, re.form = ~ (1 | Subject)))
pv_part <- se_part^2 + sigma(m2)^2 + re_var(m2, nd2, spec_m2, 2)

# glmer: link-scale se and the delta method on the response scale
ndg <- data.frame(period = factor(c("1", "2", "4", "3"), levels = levels(cbpp_d$period)),
                  herd = factor(c("1", "5", "15", "99"), levels = c(levels(cbpp_d$herd), "99")))
Rg <- new_rows(g, ndg, spec_g, 1, "period")
se_g <- se_of(g, Rg)
eta_g <- u(predict(g, ndg, allow.new.levels = TRUE))
se_g_resp <- se_g * binomial()$mu.eta(eta_g)
Rg_pop <- new_rows(g, ndg, spec_g, integer(0), "period")
se_g_pop <- se_of(g, Rg_pop)

# ---- hat values, Cook's distance, influence ----------------------------------------------------
hat_m <- u(hatvalues(m)); cook_m <- u(cooks.distance(m))
hat_mw <- u(hatvalues(mw)); cook_mw <- u(cooks.distance(mw))
hat_g <- u(suppressWarnings(hatvalues(g))); cook_g <- u(suppressWarnings(cooks.distance(g)))
infl_part <- function(inf, m) list(
  deleted = as.character(inf$deleted),
  fixed = unname(inf[[2]]), var_cov = unname(inf[[4]]), var_cov_names = colnames(inf[[4]]),
  dfbeta = unname(dfbeta(inf)), dfbeta_var_cov = unname(dfbeta(inf, which = "var.cov")),
  dfbetas = unname(dfbetas(inf)), cooks = u(cooks.distance(inf)), converged = u(inf$converged))
inf_subj <- influence(m, groups = "Subject", data = sleep)
sleep6 <- droplevels(sleep[sleep$Subject %in% levels(sleep$Subject)[1:6], ])
rownames(sleep6) <- NULL
m6 <- lmer(Reaction ~ Days + (1 | Subject), sleep6, control = tight_l)
inf_case <- influence(m6, data = sleep6)
inf_herd <- influence(g, groups = "herd", data = cbpp_d)
# the same deletion refits with the tight control (influence.merMod's own use maxfun = 1000 and
# Nelder_Mead in stage 2, which stop ~1e-5 from the optimum: too loose for the small dfbeta), put
# in the influence object so that lme4's dfbeta, dfbetas and cooks.distance methods apply
inf_herd_tight <- inf_herd
for (h in as.character(inf_herd$deleted)) {
  gh <- update(g, data = cbpp_d[cbpp_d$herd != h, ], start = list(theta = getME(g, "theta"), fixef = fixef(g)),
               control = tight_g)
  inf_herd_tight[[2]][h, ] <- fixef(gh)
  inf_herd_tight[[4]][h, ] <- c(1, VarCorr(gh)[[1]][1, 1])
  inf_herd_tight[[6]][[h]] <- as.matrix(vcov(gh))
}

out <- list(
  note = paste("lme4 1.1-31 with lmerControl(optCtrl = list(ftol_abs = 1e-12, xtol_abs = 1e-10)) and",
               "glmerControl(optimizer = 'bobyqa', tolPwrss = 1e-10).  residuals(fit, type), fitted,",
               "sigma; na.exclude fits of sleepstudy (NA Reaction in rows 3, 50, NA Days in row 100) and cbpp",
               "(NA incidence in rows 5, 20); prediction SEs by hand (lme4 1.1-31 predict has no se.fit):",
               "sigma^2 D A^{-1} D' of the joint (b, beta) system, intervals fit -/+ qnorm(0.975) sqrt(var),",
               "var = se^2 (+ sigma^2 + z'Sigma z of the terms left out, for prediction intervals);",
               "hatvalues, cooks.distance(m); influence(m, groups = 'Subject'), influence(m6) (case",
               "deletion, first 6 subjects, (1 | Subject)), influence(g, groups = 'herd'), and influence_herd_tight:",
               "the same with each refit made with the tight control."),
  lmer = all_types(m), lmer_weighted = all_types(mw), glmer_binomial = all_types(g),
  glmer_poisson = all_types(p), glmer_prop = all_types(gp),
  na_lmer = na_part(m_na), na_glmer = na_part(g_na),
  predict_lmer = list(fit_cond = fit_cond, se_cond = se_cond, fit_pop = fit_pop, se_pop = se_pop,
                      lwr_conf = fit_cond - z * se_cond, upr_conf = fit_cond + z * se_cond,
                      lwr_pred = fit_cond - z * sqrt(pv_cond), upr_pred = fit_cond + z * sqrt(pv_cond),
                      lwr_pred_pop = fit_pop - z * sqrt(pv_pop), upr_pred_pop = fit_pop + z * sqrt(pv_pop),
                      se_own = se_own),
  predict_partial = list(theta = u(getME(m2, "theta")), fit = fit_part, se = se_part, lwr_pred = fit_part - z * sqrt(pv_part),
                         upr_pred = fit_part + z * sqrt(pv_part)),
  predict_glmer = list(eta = eta_g, se_link = se_g, mu = binomial()$linkinv(eta_g), se_response = se_g_resp,
                       se_pop = se_g_pop, lwr_link = eta_g - z * se_g, upr_link = eta_g + z * se_g),
  hat_lmer = hat_m, cooks_lmer = cook_m, hat_lmer_weighted = hat_mw, cooks_lmer_weighted = cook_mw,
  hat_glmer = hat_g, cooks_glmer = cook_g,
  influence_subject = infl_part(inf_subj, m), influence_case = infl_part(inf_case, m6),
  influence_herd = infl_part(inf_herd, g), influence_herd_tight = infl_part(inf_herd_tight, g)
)
dir.create("tests/reference/residuals", showWarnings = FALSE)
write_json(out, "tests/reference/residuals/residuals_predict.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

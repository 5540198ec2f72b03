# Reference values for mixedpy's validation layer (issue 9, "No silent wrong answers"): lme4's
# per-term identifiability checks (checkNlevels / checkZdims, allow.n for glmer), fits that the
# checks must let through, zero prior weights, and lme4's messages for the cases it refuses.
#
# Usage: Rscript tests/reference/gen/validation.R [OUT_DIR] [CSV_DIR]
#   defaults: tests/reference/validation and tests/reference/data (run from the repository root).
# Made with R 4.2.2, lme4 1.1-31.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args) >= 1) args[1] else "tests/reference/validation"
csvdir <- if (length(args) >= 2) args[2] else "tests/reference/data"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
write_ref <- function(d, name) write_json(d, file.path(outdir, paste0(name, ".json")), auto_unbox = TRUE,
                                          digits = NA, pretty = TRUE)
read_chr <- function(name, chr) {
  d <- read.csv(file.path(csvdir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
err_msg <- function(expr) tryCatch({ force(expr); NA_character_ }, error = function(e) conditionMessage(e))
fit_values <- function(m) {
  d <- list(fixef = as.list(fixef(m)), theta = unname(getME(m, "theta")), theta_names = names(getME(m, "theta")),
            logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), nobs = nobs(m),
            ngrps = as.list(ngrps(m)), df_residual = df.residual(m))
  if (!isGLMM(m)) d$sigma <- sigma(m)
  d
}

gt <- read_chr("grouseticks", c("INDEX", "BROOD", "YEAR", "LOCATION"))
ss <- read_chr("sleepstudy", "Subject")
cb <- read_chr("cbpp", c("herd", "period"))

## 1. lme4's own example (?grouseticks): an observation-level term (INDEX, 403 levels = n) beside
##    two others; the random effects total 584 > n, but checkZdims is per term and glmer has allow.n.
m <- glmer(TICKS ~ YEAR + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data = gt, family = poisson)
write_ref(c(list(formula = "TICKS ~ YEAR + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", data = "grouseticks",
                 family = "poisson"), fit_values(m)), "grouseticks_obs_level")

## 2. binomial with an observation-level effect beside the herd effect (lme4's cbpp overdispersion model)
cbo <- cb; cbo$obs <- as.character(seq_len(nrow(cbo)))
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), data = cbo, family = binomial)
write_ref(c(list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
                 data = "cbpp + obs = row number", family = "binomial"), fit_values(m)), "cbpp_obs_level")

## 3. lmer: three terms with 66 random effects for 60 observations; each term has fewer than n
s60 <- ss[1:60, ]
s60$half <- paste(s60$Subject, s60$Days %/% 2, sep = "_")   # 30 levels
s60$fifth <- paste(s60$Subject, s60$Days %% 5, sep = "_")   # 30 levels
m <- lmer(Reaction ~ Days + (1 | Subject) + (1 | half) + (1 | fifth), data = s60)
write_ref(c(list(formula = "Reaction ~ Days + (1 | Subject) + (1 | half) + (1 | fifth)",
                 data = "sleepstudy rows 1-60, half = Subject_(Days %/% 2), fifth = Subject_(Days %% 5)",
                 REML = TRUE), fit_values(m)), "lmer_total_q_above_n")

## 4. lme4's refusals (messages), lmer vs glmer
se <- ss; se$each <- as.character(seq_len(nrow(se)))
s20 <- ss[1:20, ]; s20$g10 <- rep(letters[1:10], 2)
gt2 <- gt; gt2$BIG <- as.character(c(seq_len(nrow(gt2) - 1), 1))  # 402 levels for 403 rows
one <- ss; one$f <- "a"
msgs <- list(
  lmer_levels_eq_n = err_msg(lmer(Reaction ~ Days + (1 | each), data = se)),
  lmer_levels_eq_n_beside = err_msg(lmer(Reaction ~ Days + (1 | Subject) + (1 | each), data = se)),
  lmer_term_q_eq_n = err_msg(lmer(Reaction ~ 1 + (Days | g10), data = s20)),
  glmer_levels_eq_n = err_msg(glmer(TICKS ~ 1 + (1 | INDEX), data = gt, family = poisson)),
  glmer_slope_q_gt_n = err_msg(glmer(TICKS ~ 1 + (cHEIGHT | BIG), data = gt2, family = poisson)),
  one_level_fixed = err_msg(lmer(Reaction ~ Days + f + (1 | Subject), data = one)),
  one_level_in_term = err_msg(lmer(Reaction ~ Days + (f | Subject), data = one)),
  one_level_group = err_msg(lmer(Reaction ~ Days + (1 | f), data = one)),
  string_response = err_msg(lmer(r ~ Days + (1 | Subject), data = transform(ss, r = as.character(Reaction)))),
  inf_predictor = err_msg(lmer(Reaction ~ Days + x + (1 | Subject),
                               data = transform(ss, x = ifelse(seq_along(Days) == 3, Inf, Days^2))))
)
msgs$glmer_levels_eq_n <- if (is.na(msgs$glmer_levels_eq_n)) "fits (allow.n = TRUE)" else msgs$glmer_levels_eq_n
write_ref(msgs, "lme4_messages")

## 5. zero prior weights.  lmer keeps the rows and its profiled deviance has -sum(log w) = +Inf:
##    logLik -Inf and "Gradient contains NAs", i.e. no defined answer.  R's lm() leaves them out of
##    the residual df; the reference for mixedpy is the fit without those rows.  glmer keeps the rows
##    (they add nothing to the likelihood) and counts them in nobs.
w <- rep(1, nrow(ss)); w[c(1, 5, 30, 100)] <- 0
m0 <- lmer(Reaction ~ Days + (1 | Subject), data = ss, weights = w)
md <- lmer(Reaction ~ Days + (1 | Subject), data = ss[w > 0, ])
mdml <- lmer(Reaction ~ Days + (1 | Subject), data = ss[w > 0, ], REML = FALSE)
lmw <- lm(Reaction ~ Days, data = ss, weights = w)
lmd <- lm(Reaction ~ Days, data = ss[w > 0, ])
write_ref(list(formula = "Reaction ~ Days + (1 | Subject)", zero_rows_1based = c(1, 5, 30, 100),
               dropped_fit = fit_values(md), dropped_fit_ml = fit_values(mdml),
               lme4_with_zero_weights = list(logLik = as.character(as.numeric(logLik(m0))),
                                             sigma = sigma(m0), nobs = nobs(m0),
                                             conv_messages = m0@optinfo$conv$lme4$messages),
               lm_sigma_with_zero_weights = summary(lmw)$sigma, lm_sigma_dropped = summary(lmd)$sigma,
               lm_df_with_zero_weights = df.residual(lmw)), "lmer_zero_weights")
wg <- rep(1, nrow(cb)); wg[c(2, 7)] <- 0
g0 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb, family = binomial, weights = wg)
gd <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb[wg > 0, ], family = binomial)
write_ref(list(formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", zero_rows_1based = c(2, 7),
               with_zero_weights = c(fit_values(g0), list(BIC = BIC(g0))), dropped_fit = fit_values(gd)),
          "glmer_zero_weights")

## 6. predict: an integer grouping column matched by value; NA in newdata's grouping column
ssi <- ss; ssi$Sub <- as.integer(ssi$Subject)
m <- lmer(Reaction ~ Days + (1 | Sub), data = ssi)
nd <- data.frame(Days = c(1, 2, 3), Sub = c(NA, 308, 309.0))
write_ref(list(formula = "Reaction ~ Days + (1 | Sub)", newdata = list(Days = nd$Days, Sub = c(NA, 308, 309)),
               predict_allow_new = unname(predict(m, nd, allow.new.levels = TRUE)),
               predict_known = unname(predict(m, nd[2:3, ])),
               na_error = err_msg(predict(m, nd)),
               new_level_error = err_msg(predict(m, data.frame(Days = 1, Sub = 308.5)))),
          "predict_group_keys")

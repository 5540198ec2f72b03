# Extra reference cases for mixedpy (weights, offsets, rank deficiency, probit,
# proportion+weights, nAGQ=0/9, confint, anova).
#
# Usage (from anywhere):
#   Rscript tests/reference/gen/extra_cases.R OUT_DIR CSV_DIR [SRC_CSV_DIR]
# OUT_DIR: where <case>.json go; CSV_DIR: where the csv files used are written
# (augmented ones are created, base ones copied); SRC_CSV_DIR: where the base
# csv files (sleepstudy.csv, cbpp.csv, grouseticks.csv, penicillin.csv) are read
# from (default: CSV_DIR).  Afterwards run normalize.py on OUT_DIR.
# Made with R 4.2.2, lme4 1.1-31, arm 1.13-1 (Debian bookworm packages).

.this_dir <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f)) dirname(normalizePath(f[1])) else getwd()
})
source(file.path(.this_dir, "refgen.R"))        # defines outdir, csvdir, helpers
source(file.path(.this_dir, "extra_helpers.R"))
srcdir <- if (length(args) >= 3) args[3] else csvdir

read_src <- function(name, chr) {
  d <- read.csv(file.path(srcdir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  # keep a copy of the base csv beside the augmented ones
  f <- file.path(csvdir, paste0(name, ".csv"))
  if (!file.exists(f)) file.copy(file.path(srcdir, paste0(name, ".csv")), f)
  d
}

ss <- read_src("sleepstudy", "Subject")
cb <- read_src("cbpp", c("herd", "period"))
gt <- read_src("grouseticks", c("INDEX", "BROOD", "YEAR", "LOCATION"))
pe <- read_src("penicillin", c("plate", "sample"))

## a. sleepstudy with prior weights and an offset -------------------------------
sw <- ss; sw$w <- 1 + (sw$Days %% 3); sw$off <- 0.5 * sw$Days
ndw <- data.frame(Days = c(0, 5, 9, 3), Subject = c("308", "309", "372", "NEW"))
ndw$w <- 1 + (ndw$Days %% 3); ndw$off <- 0.5 * ndw$Days
finish_fit("sleepstudy_weights_offset",
           quote(lmer(as.formula(formula), data = data, REML = TRUE, weights = w, offset = off)),
           sw, "sleepstudy_wo", "Reaction ~ Days + (Days | Subject)", newdata = ndw,
           extra = list(weights = "w = 1 + (Days %% 3)", offset = "off = 0.5 * Days"),
           post = function(d, m) {
             # lme4 1.1-31's predict(newdata=) silently drops an offset given through the
             # `offset =` argument (it keeps offset() terms in the formula); fitted() keeps it.
             # Record also the predictions of the identical fit with `+ offset(off)` in the formula.
             m2 <- lmer(Reaction ~ Days + (Days | Subject) + offset(off), data = sw, REML = TRUE, weights = w)
             d$predict$note <- paste("with_re/fixed_only: predict(m, newdata) as lme4 1.1-31 returns it, which IGNORES",
               "the offset passed via offset= (fitted() includes it). *_with_offset: same fit written with",
               "+ offset(off) in the formula (identical estimates), whose predictions include the offset.")
             d$predict$with_re_with_offset <- unname(predict(m2, newdata = ndw, allow.new.levels = TRUE))
             d$predict$fixed_only_with_offset <- unname(predict(m2, newdata = ndw, re.form = NA))
             d$predict$offset_formula_fixef_equal <- isTRUE(all.equal(fixef(m), fixef(m2)))
             d
           })

## b. rank-deficient fixed-effects design -----------------------------------------
sr <- ss; sr$Days2 <- 2 * sr$Days
finish_fit("sleepstudy_rankdef",
           quote(lmer(as.formula(formula), data = data, REML = TRUE)),
           sr, "sleepstudy_rankdef", "Reaction ~ Days + Days2 + (1 | Subject)",
           post = function(d, m) {
             d$col_dropped <- as.list(attr(getME(m, "X"), "col.dropped"))
             d
           })

## c/f/g. cbpp: probit link, nAGQ = 0, nAGQ = 9 -------------------------------
cbnd <- data.frame(period = c("1", "2", "4", "3"), herd = c("1", "5", "15", "NEW"),
                   size = c(10, 10, 10, 10), incidence = c(1, 1, 1, 1))
cbf <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
pr <- binomial(link = "probit")
finish_fit("cbpp_probit",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
           cb, "cbpp", cbf, newdata = cbnd, family = pr, nAGQ = 1)
finish_fit("cbpp_nagq0",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
           cb, "cbpp", cbf, newdata = cbnd, family = binomial(), nAGQ = 0)
finish_fit("cbpp_agq9",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ)),
           cb, "cbpp", cbf, newdata = cbnd, family = binomial(), nAGQ = 9)

## d. cbpp as proportions with binomial weights --------------------------------
cp <- cb; cp$prop <- cp$incidence / cp$size
cpnd <- cbnd; cpnd$prop <- cpnd$incidence / cpnd$size
finish_fit("cbpp_prop_weights",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ, weights = size)),
           cp, "cbpp_prop", "prop ~ period + (1 | herd)", newdata = cpnd, family = binomial(), nAGQ = 1,
           extra = list(weights = "size"))

## e. grouseticks poisson with an offset ----------------------------------------
go <- gt; go$logexp <- log(go$HEIGHT / 500)
finish_fit("grouseticks_offset",
           quote(glmer(as.formula(formula), data = data, family = family, nAGQ = nAGQ, offset = logexp)),
           go, "grouseticks_offset", "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)",
           family = poisson(), nAGQ = 1, extra = list(offset = "logexp = log(HEIGHT / 500)"))

## confint and anova ---------------------------------------------------------------
ci_tab <- function(ci) list(rows = rownames(ci), cols = colnames(ci),
                            lower = unname(ci[, 1]), upper = unname(ci[, 2]))
ci_all <- function(name, m, dataname, formula) {
  out <- list(name = name, data = paste0(dataname, ".csv"), formula = formula, REML = isREML(m),
              theta = unname(getME(m, "theta")), sigma = sigma(m), fixef = as.list(fixef(m)))
  t <- system.time(r <- with_msgs(confint(m, method = "profile")))[["elapsed"]]
  out$profile <- c(ci_tab(r$value), list(seconds = t, messages = r$messages))
  t <- system.time(r <- with_msgs(confint(m, method = "Wald")))[["elapsed"]]
  out$Wald <- c(ci_tab(r$value), list(seconds = t, messages = r$messages))
  t <- system.time(r <- with_msgs(confint(m, method = "boot", nsim = 500, seed = 1)))[["elapsed"]]
  out$boot <- c(ci_tab(r$value), list(seconds = t, nsim = 500, seed = 1, boot_type = "perc",
                                      messages = r$messages))
  cat(name, "confint ok\n")
  out
}
m_ss <- lmer(Reaction ~ Days + (Days | Subject), data = ss, REML = TRUE)
m_pe <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), data = pe, REML = TRUE)
ci <- list(
  note = paste("confint.merMod (lme4 1.1-31), level 0.95, oldNames = TRUE; NA written as null",
               "(Wald gives NA for variance parameters). boot: confint(m, method='boot', nsim=500, seed=1),",
               "percentile intervals; Monte-Carlo, compare loosely."),
  cases = list(
    ci_all("sleepstudy_reml", m_ss, "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ci_all("penicillin_crossed", m_pe, "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)")))

m_int <- lmer(Reaction ~ Days + (1 | Subject), data = ss)
m_slope <- lmer(Reaction ~ Days + (Days | Subject), data = ss)
r <- with_msgs(anova(m_int, m_slope))
a <- as.data.frame(r$value)
ci$anova <- list(
  call = "anova(m_int, m_slope)",
  models = list(m_int = "Reaction ~ Days + (1 | Subject)", m_slope = "Reaction ~ Days + (Days | Subject)"),
  fitted_REML = TRUE, refit = TRUE, data = "sleepstudy.csv",
  rows = rownames(a), cols = colnames(a),
  table = lapply(setNames(colnames(a), colnames(a)), function(k) unname(a[[k]])),
  messages = r$messages)
write_json(ci, file.path(outdir, "confint_cases.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE, na = "null")
cat("confint_cases ok\n")

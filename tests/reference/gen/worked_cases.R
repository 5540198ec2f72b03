# Reference values for issue 6 (tidy/glance and the worked analyses in examples/).
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/worked_cases.R
# Reads mixedpy/datasets/data/*.csv, writes tests/reference/lme4/tidy_cases.json and
# tests/reference/lme4/worked_analyses.json.
# Made with R 4.2.2, lme4 1.1-31, arm 1.13-1, broom.mixed 0.2.9.4 (Debian bookworm packages).
suppressMessages({library(lme4); library(arm); library(broom.mixed); library(jsonlite)})

csv <- function(name, chr) {
  d <- read.csv(file.path("mixedpy/datasets/data", paste0(name, ".csv")), stringsAsFactors = FALSE)
  for (v in chr) d[[v]] <- as.character(d[[v]])
  d
}
frame <- function(x) { x <- as.data.frame(x); rownames(x) <- NULL; x }

## tidy / glance -------------------------------------------------------------------------
ss <- csv("sleepstudy", "Subject")
pe <- csv("penicillin", c("plate", "sample"))
cb <- csv("cbpp", c("herd", "period"))
fm <- lmer(Reaction ~ Days + (Days | Subject), ss)
fm_ml <- lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
fm_two <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), ss)
pen <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pe)
gm <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cb, family = binomial)

tidy_case <- function(m, formula, data, family = NULL, REML = TRUE) list(
  formula = formula, data = data, family = family, REML = REML,
  fixed = frame(tidy(m, effects = "fixed", conf.int = TRUE)),
  fixed_90 = frame(tidy(m, effects = "fixed", conf.int = TRUE, conf.level = 0.9)),
  ran_pars = frame(tidy(m, effects = "ran_pars")),
  ran_pars_vcov = frame(tidy(m, effects = "ran_pars", scales = "vcov")),
  ran_vals = frame(tidy(m, effects = "ran_vals", conf.int = TRUE)),
  default = frame(tidy(m)),
  glance = frame(glance(m)))

tidy_cases <- list(
  sleepstudy_reml = tidy_case(fm, "Reaction ~ Days + (Days | Subject)", "sleepstudy"),
  sleepstudy_ml = tidy_case(fm_ml, "Reaction ~ Days + (Days | Subject)", "sleepstudy", REML = FALSE),
  sleepstudy_two_terms = tidy_case(fm_two, "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "sleepstudy"),
  penicillin = tidy_case(pen, "diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
  cbpp = tidy_case(gm, "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", family = "binomial"))
writeLines(toJSON(tidy_cases, digits = NA, na = "null", auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/lme4/tidy_cases.json")

## worked analyses ------------------------------------------------------------------------
fit_summary <- function(m) {
  vc <- as.data.frame(VarCorr(m))
  out <- list(formula = paste(deparse(formula(m), width.cutoff = 500), collapse = ""),
              REML = isREML(m), nobs = nobs(m), fixef = as.list(fixef(m)),
              se_fixef = as.list(sqrt(diag(as.matrix(vcov(m))))),
              varcorr = vc[, c("grp", "var1", "var2", "vcov", "sdcor")],
              logLik = as.numeric(logLik(m)), AIC = AIC(m))
  if (isLMM(m)) out$sigma <- sigma(m)
  re <- ranef(m, condVar = TRUE)
  out$ranef <- lapply(names(re), function(g) {
    r <- re[[g]]
    list(group = g, levels = rownames(r), terms = colnames(r), condval = unname(as.matrix(r)),
         condsd = unname(t(apply(attr(r, "postVar"), 3, function(v) sqrt(diag(as.matrix(v)))))))
  })
  names(out$ranef) <- names(re)
  co <- coef(m)
  out$coef <- lapply(co, function(x) list(levels = rownames(x), terms = colnames(x), values = unname(as.matrix(x))))
  out
}

sp <- csv("spotify", c("artist", "title", "genre"))
art <- lmer(popularity ~ 1 + (1 | artist), sp)
mlm <- csv("mlm", c("id", "group"))
mlm <- mlm[!is.na(mlm$week) & !is.na(mlm$group), ]
pt1 <- lmer(con ~ 1 + (1 | id), mlm)
pt2 <- lmer(con ~ week + (1 | id), mlm)
pt3 <- lmer(con ~ week + group + (1 | id), mlm)
pt4 <- lmer(con ~ week + group + (week | id), mlm)
rd <- csv("radon", "county")
rad <- lmer(log_radon ~ 1 + (1 | county), rd)
rad_floor <- lmer(log_radon ~ floor + (1 | county), rd)
se <- csv("seattle", "zipcode")
h1 <- lmer(price ~ (1 | zipcode), se)
h2 <- lmer(price ~ scale_sqft + (1 | zipcode), se)
h3 <- lmer(price ~ scale_sqft + (scale_sqft | zipcode), se, REML = FALSE)
rf <- csv("reedfrogs", c("pred", "size", "tank"))
# one row per tadpole, as examples/classrooms.py fits it (same likelihood as the cbind form; lme4's
# default optimizer stops early on the cbind form, with a convergence warning, at 1.3875 / 1.5766)
tp <- rf[rep(seq_len(nrow(rf)), rf$density), ]
tp$survived <- unlist(lapply(seq_len(nrow(rf)), function(i) as.integer(seq_len(rf$density[i]) <= rf$surv[i])))
frogs <- glmer(survived ~ 1 + (1 | tank), tp, family = binomial)

disp <- function(m) paste(capture.output(display(m)), collapse = "\n")
worked <- list(
  artists = fit_summary(art),
  people_1 = fit_summary(pt1), people_2 = fit_summary(pt2), people_3 = fit_summary(pt3),
  people_4 = fit_summary(pt4),
  radon = fit_summary(rad), radon_floor = fit_summary(rad_floor),
  house_1 = fit_summary(h1), house_2 = fit_summary(h2), house_3 = fit_summary(h3),
  reedfrogs = fit_summary(frogs))
worked$house_3$display <- disp(h3)
worked$house_2$display <- disp(h2)
worked$people_4$is_singular <- isSingular(pt4)
worked$artists$complete_pooling_mean <- mean(sp$popularity)
worked$artists$artist_means <- as.list(tapply(sp$popularity, sp$artist, mean))
writeLines(toJSON(worked, digits = NA, na = "null", auto_unbox = TRUE, pretty = TRUE, matrix = "rowmajor"),
           "tests/reference/lme4/worked_analyses.json")
cat("wrote tidy_cases.json and worked_analyses.json\n")

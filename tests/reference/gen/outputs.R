# Reference for issue 14, "Printing and outputs": ranef's conditional SDs as lme4 tabulates them,
# and glmer's optimum under each choice of optimizer.
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/outputs.R
# Writes tests/reference/outputs/outputs.json.  Made with R 4.2.2, lme4 1.1-31.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

sleep <- read.csv("tests/reference/data/sleepstudy.csv", stringsAsFactors = FALSE)
sleep$Subject <- factor(sleep$Subject)
cbpp_d <- read.csv("tests/reference/data/cbpp.csv", stringsAsFactors = FALSE)
cbpp_d$period <- factor(cbpp_d$period)
cbpp_d$herd <- factor(cbpp_d$herd)

# as.data.frame(ranef(m, condVar = TRUE)): grpvar, term, grp, condval, condsd
m <- lmer(Reaction ~ Days + (Days | Subject), sleep)
re <- as.data.frame(ranef(m, condVar = TRUE))
m2 <- lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleep)
re2 <- as.data.frame(ranef(m2, condVar = TRUE))
tab <- function(d) list(grpvar = as.character(d$grpvar), term = as.character(d$term), grp = as.character(d$grp),
                        condval = d$condval, condsd = d$condsd)

# glmer with lme4's default optimizers (bobyqa, Nelder_Mead), bobyqa for both stages, Nelder_Mead for both
f <- cbind(incidence, size - incidence) ~ period + (1 | herd)
glm_fit <- function(opt) {
  g <- glmer(f, cbpp_d, family = binomial, control = glmerControl(optimizer = opt))
  list(optimizer = opt, fixef = unname(fixef(g)), theta = unname(getME(g, "theta")),
       minus2loglik = -2 * as.numeric(logLik(g)))
}
glmer_opts <- list(glm_fit(c("bobyqa", "Nelder_Mead")), glm_fit("bobyqa"), glm_fit("Nelder_Mead"))

# lmer with each optimizer reaches the same REML optimum
lmer_fit <- function(opt) {
  l <- lmer(Reaction ~ Days + (Days | Subject), sleep, control = lmerControl(optimizer = opt))
  list(optimizer = opt, theta = unname(getME(l, "theta")), reml_crit = unname(REMLcrit(l)))
}
lmer_opts <- list(lmer_fit("nloptwrap"), lmer_fit("Nelder_Mead"), lmer_fit("bobyqa"))

# the printed summaries, line by line
summary_sleep <- capture.output(print(summary(m)))
# (with bobyqa for both stages, mixedpy's default, so that the printed digits are those of one optimum)
g_bobyqa <- glmer(f, cbpp_d, family = binomial, control = glmerControl(optimizer = "bobyqa"))
summary_cbpp <- capture.output(print(summary(g_bobyqa)))

out <- list(
  note = paste("lme4 1.1-31. ranef_sleepstudy = as.data.frame(ranef(lmer(Reaction ~ Days + (Days | Subject)),",
               "condVar = TRUE)); ranef_two_terms the same for (1 | Subject) + (0 + Days | Subject);",
               "glmer_optimizers: cbpp binomial fits with glmerControl(optimizer = ...);",
               "summary_*: capture.output(print(summary(fit))) of the sleepstudy REML fit and the cbpp fit",
               "with glmerControl(optimizer = 'bobyqa');",
               "lmer_optimizers: sleepstudy REML fits with lmerControl(optimizer = ...)."),
  ranef_sleepstudy = tab(re), ranef_two_terms = tab(re2),
  glmer_optimizers = glmer_opts, lmer_optimizers = lmer_opts,
  summary_sleepstudy = summary_sleep, summary_cbpp = summary_cbpp
)
write_json(out, "tests/reference/outputs/outputs.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)

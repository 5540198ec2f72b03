# Model-building reference values for mixedpy (issue 12, parts 2 and 6): R's update.formula,
# lmerTest's drop1 and ranova, lme4's drop1 for glmer, getME entries and an allFit-style refit.
#
# Usage (from the repository root): Rscript tests/reference/gen/model_building.R [OUT_DIR]
#   (default tests/reference/model_building; the ham subset is written there as CSV)
# Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2.
suppressMessages({ library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite) })
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/model_building"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
datadir <- "mixedpy/datasets/data"

tab <- function(x) {   # a data frame / matrix as list(index, columns, values by column)
  x <- as.data.frame(x, check.names = FALSE)
  list(index = rownames(x), columns = colnames(x), data = lapply(x, function(v) unname(v)))
}
dep <- function(f) paste(deparse(f, width.cutoff = 500L), collapse = "")
write <- function(x, name) writeLines(toJSON(x, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
                                      file.path(outdir, paste0(name, ".json")))

## 1. update.formula: R's strings
cases <- list(
  c("Reaction ~ Days + (Days | Subject)", ". ~ . + I(Days^2)"),
  c("Reaction ~ Days + (Days | Subject)", ". ~ . - Days"),
  c("Reaction ~ Days + (Days | Subject)", "log(.) ~ ."),
  c("Reaction ~ Days + (Days | Subject)", "~ . + (1 | h)"),
  c("Reaction ~ Days + (Days | Subject)", ". ~ . - (Days | Subject) + (1 | Subject)"),
  c("y ~ a*b + (1|g)", ". ~ . - a:b"),
  c("y ~ a*b + (1|g)", ". ~ . + c"),
  c("y ~ x + (1|g)", "~ . - 1"),
  c("y ~ 0 + x + (1|g)", ". ~ . + z"),
  c("y ~ x + offset(o) + (1|g)", ". ~ . + z"),
  c("cbind(s, f) ~ period + (1 | herd)", ". ~ . - period"),
  c("y ~ x + (1|g)", "z ~ ."),
  c("y ~ (a + b + c)^2 + (1|g)", ". ~ . - b:c"),
  c("y ~ x + (x || g)", ". ~ . + w"),
  c("y ~ x + (1|g)", "~ . - x - 1"),
  c("y ~ x + (1 | g/h)", ". ~ . + z"),
  c("y ~ poly(x, 2) + (1|g)", ". ~ . - poly(x, 2)"),
  c("y ~ x + (1|g)", ". ~ . - x"),
  c("y ~ x + (1|g)", "~ 1 + (1|g)"),
  c("y ~ x + (1|g)", ". + 1 ~ ."),
  c("log(y) ~ x + (1|g)", "exp(.) ~ ."),
  c("y ~ x*f + (1|g)", ". ~ . - x"),
  c("y ~ x + (1|g)", ". ~ . + x:z"),
  c("y ~ x + z + (1|g)", ". ~ (.)^2"),
  c("y ~ x + (1|g)", ". ~ . + 0"),
  c("y ~ 0 + x + (1|g)", ". ~ . + 1"),
  c("y ~ x + (1|g)", "~ . - (1|g)"),
  c("y ~ x + (1|g) + (1|h)", ". ~ . - (1 | h)"),
  c("y ~ a/b + (1|g)", ". ~ . + z"),
  c("y ~ x + (1|g)", ". ~ . + offset(log(n))"),
  c("y ~ x + (0 + x | g)", ". ~ . + (1 | g)"),
  c("y ~ x + (1|g)", ". ~ . - x + I(x^2)"),
  c("y ~ x + (1|g)", "~ .*w"),
  c("y ~ `odd name` + (1|g)", ". ~ . + z"),
  c("y ~ x", ". ~ . - x"),
  c("y ~ x", ". ~ . - x - 1"),
  c("y ~ x + offset(o)", ". ~ . - x"),
  c("y ~ 0 + x + offset(o)", ". ~ . + z"),
  c("y ~ x", ". ~ . - offset(o)"),
  c("y ~ x", "~ . + x %in% w"),
  c("y ~ x", "~ . + (x > 2)"),
  c("y ~ x + z", "~ x")
)
write(lapply(cases, function(cc) list(old = cc[1], new = cc[2],
  result = dep(update.formula(as.formula(cc[1]), as.formula(cc[2]))))), "update_formula")

## 2. drop1 and ranova of lmer fits (lmerTest)
sl <- read.csv(file.path(datadir, "sleepstudy.csv")); sl$Subject <- as.character(sl$Subject)
rep <- read.csv("tests/reference/lmertest/repeated.csv")
data(ham, package = "lmerTest")
set.seed(20261201)
hm <- ham[sort(sample(nrow(ham), 560)), c("Consumer", "Product", "Information", "Gender", "Informed.liking")]
rownames(hm) <- NULL
write.csv(hm, file.path(outdir, "ham_unbalanced.csv"), row.names = FALSE)
for (v in c("Consumer", "Product", "Information", "Gender")) hm[[v]] <- factor(hm[[v]])
# a missing cell (no product 4 with information 2): X is rank deficient, lme4 drops a column and
# lmerTest's drop1 tests the difference of the model matrices (get_Ldiffmat2)
hmc <- hm[!(hm$Product == "4" & hm$Information == "2"), ]
rownames(hmc) <- NULL
write.csv(hmc, file.path(outdir, "ham_missing_cell.csv"), row.names = FALSE)

lmer_case <- function(name, formula, data, data_file, reml = TRUE) {
  m <- if (!"w" %in% names(data)) lmer(as.formula(formula), data, REML = reml) else
    lmer(as.formula(formula), data, REML = reml, weights = w)     # prior weights: the column w
  d1 <- list(Satterthwaite = tab(drop1(m, ddf = "Satterthwaite")))
  if (reml) d1[["Kenward-Roger"]] <- tab(drop1(m, ddf = "Kenward-Roger"))
  d1$lme4_Chisq <- tab(suppressMessages(drop1(m, ddf = "lme4", test = "Chisq")))
  r1 <- ranova(m); r2 <- ranova(m, reduce.terms = FALSE)
  list(name = name, formula = formula, data = data_file, REML = reml,
       theta = unname(getME(m, "theta")), beta = unname(fixef(m)),
       drop1 = d1, ranova = tab(r1), ranova_complete = tab(r2),
       ranova_heading = attr(r1, "heading")[3],
       ranova_formulae = lapply(attr(r1, "formulae"), dep))
}
slw <- sl; slw$w <- 1 + slw$Days %% 3
write.csv(slw, file.path(outdir, "sleepstudy_weights.csv"), row.names = FALSE)
pa <- read.csv(file.path(datadir, "pastes.csv"))
write(list(
  lmer_case("sleepstudy_weights", "Reaction ~ Days + (Days | Subject)", slw, "sleepstudy_weights.csv"),
  lmer_case("pastes_nested", "strength ~ 1 + (1 | batch/cask)", pa, "mixedpy/datasets/data/pastes.csv"),
  lmer_case("sleepstudy", "Reaction ~ Days + (Days | Subject)", sl, "mixedpy/datasets/data/sleepstudy.csv"),
  lmer_case("sleepstudy_ml", "Reaction ~ Days + (Days | Subject)", sl, "mixedpy/datasets/data/sleepstudy.csv",
            reml = FALSE),
  lmer_case("sleepstudy_diag", "Reaction ~ Days + (Days || Subject)", sl, "mixedpy/datasets/data/sleepstudy.csv"),
  lmer_case("sleepstudy_slope_only", "Reaction ~ Days + (0 + Days | Subject)", sl,
            "mixedpy/datasets/data/sleepstudy.csv"),
  lmer_case("repeated", "y ~ week * group + (week | subject)", rep, "tests/reference/lmertest/repeated.csv"),
  lmer_case("ham", "Informed.liking ~ Product * Information * Gender + (1 | Consumer) + (1 | Consumer:Product)",
            hm, "ham_unbalanced.csv"),
  lmer_case("ham_missing_cell", "Informed.liking ~ Product * Information + Gender + (1 | Consumer)", hmc,
            "ham_missing_cell.csv"),
  lmer_case("ham_additive", "Informed.liking ~ Product + Information + Gender + (1 | Consumer) + (1 | Consumer:Product)",
            hm, "ham_unbalanced.csv")
), "lmer_cases")

## 3. drop1 of glmer fits (lme4: refits without each marginal term)
cb <- read.csv(file.path(datadir, "cbpp.csv")); cb$herd <- factor(cb$herd); cb$period <- factor(cb$period)
glmer_case <- function(name, formula, data, data_file) {
  m <- glmer(as.formula(formula), data, family = binomial)
  list(name = name, formula = formula, data = data_file, family = "binomial",
       theta = unname(getME(m, "theta")), beta = unname(fixef(m)),
       drop1_Chisq = tab(drop1(m, test = "Chisq")), drop1_none = tab(drop1(m)))
}
write(list(
  glmer_case("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, "mixedpy/datasets/data/cbpp.csv"),
  glmer_case("cbpp_size", "cbind(incidence, size - incidence) ~ period + size + (1 | herd)", cb,
             "mixedpy/datasets/data/cbpp.csv")
), "glmer_cases")

## 4. getME entries
sparse <- function(M) { M <- as(M, "TsparseMatrix")
  list(i = M@i, j = M@j, x = M@x, dim = dim(M), colnames = colnames(M)) }
getme_case <- function(name, m, data_file) {
  dc <- getME(m, "devcomp")
  list(name = name, formula = dep(formula(m)), data = data_file, REML = isREML(m), glmm = isGLMM(m),
       theta = as.list(getME(m, "theta")), lower = as.list(getME(m, "lower")),
       beta = unname(getME(m, "beta")), u = unname(getME(m, "u")), b = unname(as.vector(getME(m, "b"))),
       cnms = getME(m, "cnms"), X_colnames = colnames(getME(m, "X")), X_dim = dim(getME(m, "X")),
       Z = sparse(getME(m, "Z")), Lambdat = sparse(getME(m, "Lambdat")),
       flist = lapply(getME(m, "flist"), levels), Gp = getME(m, "Gp"),
       devcomp = list(cmp = as.list(dc$cmp), dims = as.list(dc$dims)),
       nb_theta = getME(m, "glmer.nb.theta"))
}
pen <- read.csv(file.path(datadir, "penicillin.csv"))
write(list(
  getme_case("sleepstudy", lmer(Reaction ~ Days + (Days | Subject), sl), "mixedpy/datasets/data/sleepstudy.csv"),
  getme_case("sleepstudy_ml", lmer(Reaction ~ Days + (Days | Subject), sl, REML = FALSE),
             "mixedpy/datasets/data/sleepstudy.csv"),
  getme_case("sleepstudy_two_terms", lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sl),
             "mixedpy/datasets/data/sleepstudy.csv"),
  getme_case("penicillin", lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen),
             "mixedpy/datasets/data/penicillin.csv"),
  getme_case("cbpp", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial),
             "mixedpy/datasets/data/cbpp.csv")
), "getme_cases")

## 5. allFit: the refits of lme4's summary(allFit(m)).  allFit() itself stops in lme4 1.1-31 when
## dfoptim or optimx is missing (its meth.tab subsetting), so the fits are made as allFit makes them
## (update(m, control = lmerControl(optimizer = ...))) and summarized by lme4's summary.allFit.
af_case <- function(name, m, ctl, opts) {
  fits <- lapply(opts, function(o) { r <- update(m, control = ctl(optimizer = o)); attr(r, "time") <- 0; r })
  class(fits) <- "allFit"
  s <- summary(fits)
  list(name = name, optimizers = names(opts), fixef = tab(s$fixef), theta = tab(s$theta),
       sdcor = tab(s$sdcor), llik = as.list(s$llik))
}
opts <- list(bobyqa = "bobyqa", Nelder_Mead = "Nelder_Mead", nlminbwrap = "nlminbwrap",
             "nloptwrap.NLOPT_LN_BOBYQA" = "nloptwrap")
write(list(
  af_case("sleepstudy", lmer(Reaction ~ Days + (Days | Subject), sl), lmerControl, opts),
  af_case("cbpp", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial),
          glmerControl, opts)
), "allfit_cases")

# lmerTest / pbkrtest / performance reference values for mixedpy (issue 12 items 1, 2 and 4):
# coefficient tables with Satterthwaite and Kenward-Roger df, contest(), single-fit anova tables
# of types 1-3, Nakagawa's R2 and the ICC.
#
# Usage (from the repository root): Rscript tests/reference/gen/lmertest.R [OUT_DIR]
#   (default tests/reference/lmertest; simulated data sets are written there as CSV beside the JSON)
# Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, performance 0.10.2.
suppressMessages({
  library(lme4); library(lmerTest); library(pbkrtest); library(performance); library(jsonlite)
})
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/lmertest"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
datadir <- "mixedpy/datasets/data"

tab <- function(x) {   # a data frame / matrix as list(index, columns, values by column)
  x <- as.data.frame(x, check.names = FALSE)
  list(index = rownames(x), columns = colnames(x), data = lapply(x, function(v) unname(v)))
}

coef_tables <- function(m) {
  out <- list(Satterthwaite = tab(summary(m, ddf = "Satterthwaite")$coefficients),
              lme4 = tab(summary(m, ddf = "lme4")$coefficients))
  if (isREML(m)) out[["Kenward-Roger"]] <- tab(summary(m, ddf = "Kenward-Roger")$coefficients)
  out
}

anova_tables <- function(m, types = 1:3) {
  out <- list()
  ddfs <- if (isREML(m)) c("Satterthwaite", "Kenward-Roger") else "Satterthwaite"
  for (type in types) for (ddf in ddfs)
    out[[paste0(type, "_", ddf)]] <- tab(anova(m, type = type, ddf = ddf))
  out
}

perf <- function(m) {
  r2 <- r2_nakagawa(m); ic <- icc(m)
  list(R2_marginal = unname(r2$R2_marginal), R2_conditional = unname(r2$R2_conditional),
       ICC_adjusted = unname(ic$ICC_adjusted), ICC_unadjusted = unname(ic$ICC_unadjusted))
}

write_case <- function(name, m, data_file, formula, reml = TRUE, family = NULL, extra = list(), types = 1:3) {
  res <- list(name = name, data = data_file, formula = formula, REML = reml,
              theta = unname(getME(m, "theta")), beta = unname(fixef(m)))
  if (is.null(family)) {
    res$sigma <- sigma(m)
    res$coef <- coef_tables(m)
    res$anova <- anova_tables(m, types)
    res$hypotheses <- lapply(setNames(types, as.character(types)), function(type)
      lapply(attr(anova(m, type = type), "hypotheses"), function(L) tab(as.matrix(L))))
  } else {
    res$family <- family
    res$coef <- list(lme4 = tab(summary(m)$coefficients))
  }
  res$performance <- tryCatch(perf(m), error = function(e) NULL)
  res <- c(res, extra)
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
             file.path(outdir, paste0(name, ".json")))
}

## 1. sleepstudy: random slope
sl <- read.csv(file.path(datadir, "sleepstudy.csv"))
sl$Subject <- as.character(sl$Subject)
f1 <- "Reaction ~ Days + (Days | Subject)"
m1 <- lmer(as.formula(f1), sl)
write_case("sleepstudy_slope", m1, "mixedpy/datasets/data/sleepstudy.csv", f1)
m1ml <- lmer(as.formula(f1), sl, REML = FALSE)
write_case("sleepstudy_slope_ml", m1ml, "mixedpy/datasets/data/sleepstudy.csv", f1, reml = FALSE)
f1b <- "Reaction ~ Days + (1 | Subject)"
m1b <- lmer(as.formula(f1b), sl)
write_case("sleepstudy_intercept", m1b, "mixedpy/datasets/data/sleepstudy.csv", f1b)

## 1b. a singular fit (theta = 0): the Hessian in (theta, sigma) is taken across the boundary
dy <- read.csv(file.path(datadir, "dyestuff2.csv")); dy$Batch <- as.character(dy$Batch)
f1c <- "Yield ~ 1 + (1 | Batch)"
m1c <- suppressMessages(lmer(as.formula(f1c), dy))
write_case("dyestuff2_singular", m1c, "mixedpy/datasets/data/dyestuff2.csv", f1c)

## 2. repeated measures: numeric week x 3-level group, unbalanced (random dropout), random slopes
set.seed(20261201)
ns <- 36
subj <- sprintf("s%02d", 1:ns)
grp <- rep(c("ctl", "lo", "hi"), times = c(14, 12, 10))
d2 <- expand.grid(week = 0:5, subject = subj, stringsAsFactors = FALSE)
d2$group <- grp[match(d2$subject, subj)]
b0 <- rnorm(ns, 0, 2); b1 <- rnorm(ns, 0, 0.6)
si <- match(d2$subject, subj)
gi <- match(d2$group, c("ctl", "lo", "hi"))
d2$y <- round(10 + c(0, 1, 2)[gi] + (0.5 + c(0, 0.3, -0.4)[gi]) * d2$week + b0[si] + b1[si] * d2$week +
              rnorm(nrow(d2), 0, 1.5), 4)
d2 <- d2[runif(nrow(d2)) > 0.15, ]
d2 <- d2[, c("y", "week", "group", "subject")]
write.csv(d2, file.path(outdir, "repeated.csv"), row.names = FALSE)
f2 <- "y ~ week * group + (week | subject)"
m2 <- lmer(as.formula(f2), d2)
L1 <- c(0, 1, 0, 0, 0, 0)
L2 <- rbind(c(0, 0, 1, 0, 0, 0), c(0, 0, 0, 1, 0, 0))
L3 <- rbind(c(0, 0, 0, 0, 1, 0), c(0, 0, 0, 0, 0, 1), c(0, 0, 0, 0, 1, 1))  # rank 2
ct <- list(L1 = L1, L2 = L2, L3 = L3,
           t_S = tab(contest(m2, L1, joint = FALSE, confint = FALSE)),
           t_KR = tab(contest(m2, L1, joint = FALSE, confint = FALSE, ddf = "Kenward-Roger")),
           F2_S = tab(contest(m2, L2)), F2_KR = tab(contest(m2, L2, ddf = "Kenward-Roger")),
           F3_S = tab(contest(m2, L3)),
           t_rhs = tab(contest(m2, L1, joint = FALSE, confint = FALSE, rhs = 0.5)),
           F2_rhs = tab(contest(m2, L2, rhs = c(1, -1))))
write_case("repeated", m2, "repeated.csv", f2, extra = list(contest = ct))
m2ml <- lmer(as.formula(f2), d2, REML = FALSE)
write_case("repeated_ml", m2ml, "repeated.csv", f2, reml = FALSE)

## 3. two crossed factors A (3 levels) x B (2 levels), crossed random intercepts, unbalanced cells
set.seed(42)
d3 <- expand.grid(rep = 1:2, item = sprintf("i%02d", 1:12), subj = sprintf("p%02d", 1:15),
                  stringsAsFactors = FALSE)
d3$A <- c("a1", "a2", "a3")[(match(d3$item, sprintf("i%02d", 1:12)) %% 3) + 1]
d3$B <- ifelse(runif(nrow(d3)) < 0.4, "b1", "b2")
bs <- rnorm(15, 0, 1); bi <- rnorm(12, 0, 0.7)
d3$y <- round(5 + c(0, 0.5, 1)[match(d3$A, c("a1", "a2", "a3"))] + 0.4 * (d3$B == "b2") +
              0.6 * (d3$A == "a3" & d3$B == "b2") + bs[match(d3$subj, sprintf("p%02d", 1:15))] +
              bi[match(d3$item, sprintf("i%02d", 1:12))] + rnorm(nrow(d3)), 4)
d3 <- d3[runif(nrow(d3)) > 0.2, c("y", "A", "B", "subj", "item")]
write.csv(d3, file.path(outdir, "crossed.csv"), row.names = FALSE)
f3 <- "y ~ A * B + (1 | subj) + (1 | item)"
m3 <- lmer(as.formula(f3), d3)
write_case("crossed", m3, "crossed.csv", f3)

## 4. ordered factor (contr.poly) with a covariate: type 3 maps through treatment contrasts
set.seed(3)
d4 <- d3
d4$x <- round(rnorm(nrow(d4)), 3)
d4$y <- round(d4$y + 0.3 * d4$x, 4)
write.csv(d4, file.path(outdir, "ordered.csv"), row.names = FALSE)
d4$A <- factor(d4$A, ordered = TRUE)
f4 <- "y ~ A * x + B + (1 | subj)"
m4 <- lmer(as.formula(f4), d4)
write_case("ordered", m4, "ordered.csv", f4, extra = list(ordered = "A"))

## 4b. a larger crossed design for Kenward-Roger: the first 2,000 rows of InstEval (pbkrtest works
## with n x n matrices, so this is about as large as it goes in minutes)
ie <- read.csv(file.path(datadir, "insteval.csv"), colClasses = c(s = "character", d = "character",
               dept = "character", service = "character"))[1:2000, ]
f4b <- "y ~ service + (1 | s) + (1 | d)"
m4b <- lmer(as.formula(f4b), ie)
write_case("insteval2000", m4b, "mixedpy/datasets/data/insteval.csv", f4b, extra = list(rows = 2000),
           types = 3)

## 5. glmer: R2 and ICC (binomial cbind, binary, poisson)
cb <- read.csv(file.path(datadir, "cbpp.csv"))
cb$herd <- as.character(cb$herd); cb$period <- as.character(cb$period)
f5 <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
m5 <- glmer(as.formula(f5), cb, family = binomial)
write_case("cbpp", m5, "mixedpy/datasets/data/cbpp.csv", f5, family = "binomial")
set.seed(5)
d6 <- d2
d6$z <- as.integer(d6$y > 12)
d6 <- d6[, c("z", "week", "group", "subject")]
write.csv(d6, file.path(outdir, "binary.csv"), row.names = FALSE)
f6 <- "z ~ week + group + (1 | subject)"
m6 <- glmer(as.formula(f6), d6, family = binomial)
write_case("binary", m6, "binary.csv", f6, family = "binomial")
gt <- read.csv(file.path(datadir, "grouseticks.csv"))
gt$BROOD <- as.character(gt$BROOD); gt$LOCATION <- as.character(gt$LOCATION); gt$YEAR <- as.character(gt$YEAR)
f7 <- "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)"
m7 <- glmer(as.formula(f7), gt, family = poisson)
write_case("grouseticks", m7, "mixedpy/datasets/data/grouseticks.csv", f7, family = "poisson")

# emmeans reference values for mixedpy (issue 12 item 3): estimated marginal means on emmeans'
# reference grid with Kenward-Roger and Satterthwaite df, and pairwise contrasts with the Tukey,
# Holm and no adjustment; glmer fits on the link and the response scale.  The models and data are
# those of tests/reference/gen/lmertest.R (run that first: it writes the simulated CSVs).
#
# Usage (from the repository root): Rscript tests/reference/gen/emmeans.R [OUT_DIR]
#   (default tests/reference/emmeans)
# Made with R 4.2.2, lme4 1.1-31, lmerTest 3.1-3, pbkrtest 0.5.2, emmeans 1.8.4-1.
suppressMessages({ library(lme4); library(lmerTest); library(pbkrtest); library(emmeans); library(jsonlite) })
args <- commandArgs(TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/emmeans"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
lt <- "tests/reference/lmertest"
datadir <- "mixedpy/datasets/data"

tab <- function(x) {   # a data frame as list(columns, values by column); factors as strings
  x <- as.data.frame(x, check.names = FALSE)
  for (c in names(x)) if (is.factor(x[[c]])) x[[c]] <- as.character(x[[c]])
  list(columns = colnames(x), data = lapply(x, function(v) unname(v)))
}

means <- function(m, specs, ddf, type = "link") {
  em <- suppressMessages(emmeans(m, specs, lmer.df = ddf, type = type))
  out <- list(emmeans = tab(summary(em)))
  for (adj in c("tukey", "holm", "none"))
    out[[paste0("pairwise_", adj)]] <- tab(summary(contrast(em, "pairwise", adjust = adj)))
  out
}

write_case <- function(name, m, data_file, formula, cases, reml = TRUE, family = NULL) {
  res <- list(name = name, data = data_file, formula = formula, REML = reml, family = family,
              theta = unname(getME(m, "theta")), beta = unname(fixef(m)), cases = cases)
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, null = "null", na = "null"),
             file.path(outdir, paste0(name, ".json")))
}

lmer_cases <- function(m, specs) {
  out <- list()
  for (s in specs) for (ddf in c("kenward-roger", "satterthwaite"))
    out[[length(out) + 1]] <- c(list(specs = s, ddf = ddf), means(m, s, ddf))
  out
}

## repeated measures: numeric week x group, random slopes, unbalanced; week at its mean
d2 <- read.csv(file.path(lt, "repeated.csv"))
f2 <- "y ~ week * group + (week | subject)"
m2 <- lmer(as.formula(f2), d2)
write_case("repeated", m2, "repeated.csv", f2, lmer_cases(m2, "group"))

## crossed random intercepts, two factors with an interaction, unbalanced cells
d3 <- read.csv(file.path(lt, "crossed.csv"))
f3 <- "y ~ A * B + (1 | subj) + (1 | item)"
m3 <- lmer(as.formula(f3), d3)
write_case("crossed", m3, "crossed.csv", f3, lmer_cases(m3, list("A", "B", c("A", "B"))))

## ordered factor (contr.poly) with a covariate and a second factor
d4 <- read.csv(file.path(lt, "ordered.csv"))
d4$A <- factor(d4$A, ordered = TRUE)
f4 <- "y ~ A * x + B + (1 | subj)"
m4 <- lmer(as.formula(f4), d4)
write_case("ordered", m4, "ordered.csv", f4, lmer_cases(m4, list("A", "B")))

## glmer: link and response scale (asymptotic df)
glmer_cases <- function(m, specs) {
  out <- list()
  for (s in specs) for (type in c("link", "response"))
    out[[length(out) + 1]] <- c(list(specs = s, type = type), means(m, s, "asymptotic", type))
  out
}
d6 <- read.csv(file.path(lt, "binary.csv"))
f6 <- "z ~ week + group + (1 | subject)"
m6 <- glmer(as.formula(f6), d6, family = binomial)
write_case("binary", m6, "binary.csv", f6, glmer_cases(m6, "group"), reml = FALSE, family = "binomial")
cb <- read.csv(file.path(datadir, "cbpp.csv"))
cb$herd <- as.character(cb$herd); cb$period <- as.character(cb$period)
f5 <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
m5 <- glmer(as.formula(f5), cb, family = binomial)
write_case("cbpp", m5, "mixedpy/datasets/data/cbpp.csv", f5, glmer_cases(m5, "period"), reml = FALSE,
           family = "binomial")
gt <- read.csv(file.path(datadir, "grouseticks.csv"))
gt$BROOD <- as.character(gt$BROOD); gt$LOCATION <- as.character(gt$LOCATION); gt$YEAR <- as.character(gt$YEAR)
f7 <- "TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)"
m7 <- glmer(as.formula(f7), gt, family = poisson)
write_case("grouseticks", m7, "mixedpy/datasets/data/grouseticks.csv", f7, glmer_cases(m7, "YEAR"),
           reml = FALSE, family = "poisson")

# Differential corpus for mixedpy (issue 9, part E): random designs fitted by lme4 with its defaults
# (lmerControl(), glmerControl()).  Every design's data is written to CORPUS_DIR/data/<id>.csv, read
# back, and fitted from the file, so lme4 and mixedpy see the same numbers.  lme4's results (objective,
# theta, fixef, sigma, warnings, refusals) go to CORPUS_DIR/designs.json.
#
# Usage: Rscript tests/reference/gen/corpus.R tests/reference/corpus
# Made with R 4.2.2, lme4 1.1-31 (the versions are recorded in designs.json).
#
# The objective is what lme4's optimizer minimizes: the REML criterion of a REML lmer fit, the
# deviance (-2 logLik) of an ML fit, and -2 logLik (Laplace or adaptive quadrature) of a glmer fit.

suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/corpus"
datadir <- file.path(outdir, "data")
dir.create(datadir, showWarnings = FALSE, recursive = TRUE)
unlink(list.files(datadir, full.names = TRUE))
set.seed(20261201)

# ---------------------------------------------------------------------------------------------
# building blocks

ru <- function(a, b) runif(1, a, b)
ri <- function(a, b) sample(a:b, 1)
# group index for n rows over J levels, every level present, sizes unbalanced (gamma weights)
gidx <- function(n, J, skew = ru(0.3, 3)) {
  p <- rgamma(J, shape = skew); p <- p / sum(p)
  sample(c(seq_len(J), sample.int(J, n - J, replace = TRUE, prob = p)))
}
lab <- function(prefix, i) sprintf("%s%02d", prefix, i)
r3 <- function(x) round(x, 3)
# 2 x J correlated effects: sds s, correlation rho
mvn2 <- function(J, s, rho) {
  z1 <- rnorm(J); z2 <- rho * z1 + sqrt(max(0, 1 - rho^2)) * rnorm(J)
  cbind(s[1] * z1, s[2] * z2)
}
xcov <- function(n) if (runif(1) < 0.3) sample(0:9, n, replace = TRUE) else r3(rnorm(n, ru(-1, 1), ru(0.5, 2)))

designs <- list()
add <- function(id, features, formula, data, kind = "lmer", REML = TRUE, family = NULL, link = NULL,
                nAGQ = 1L, weights = NULL, offset = NULL, truth = list()) {
  designs[[length(designs) + 1]] <<- list(id = id, features = features, formula = formula, data = data,
    kind = kind, REML = REML, family = family, link = link, nAGQ = nAGQ, weights = weights,
    offset = offset, truth = truth)
}
num <- function(k) sprintf("%03d", k)

# ---------------------------------------------------------------------------------------------
# LMMs

# random intercepts, several fixed-effect shapes
for (k in 1:20) {
  n <- ri(50, 600); J <- ri(3, min(60, n %/% 3)); g <- gidx(n, J)
  x <- xcov(n); sg <- ru(0.1, 3); se <- ru(0.3, 3)
  y <- 2 + 0.5 * x + rnorm(J, 0, sg)[g] + rnorm(n, 0, se)
  f <- c("y ~ x + (1 | g)", "y ~ 1 + (1 | g)", "y ~ 0 + x + (1 | g)", "y ~ x + I(x^2) + (1 | g)")[1 + k %% 4]
  add(paste0("lmm_int_", num(k)), c("intercept", "unbalanced"), f,
      data.frame(y = r3(y), x = x, g = lab("g", g)), REML = k %% 2 == 1, truth = list(sd = sg, sigma = se))
}
# correlated slopes
for (k in 1:20) {
  n <- ri(80, 800); J <- ri(5, min(60, n %/% 5)); g <- gidx(n, J)
  x <- xcov(n); s <- c(ru(0.2, 3), ru(0.1, 1.5)); rho <- ru(-0.8, 0.8); se <- ru(0.3, 2)
  b <- mvn2(J, s, rho)
  y <- 1 + 0.8 * x + b[g, 1] + b[g, 2] * x + rnorm(n, 0, se)
  f <- c("y ~ x + (x | g)", "y ~ x + (1 + x | g)", "y ~ 1 + (x | g)")[1 + k %% 3]
  add(paste0("lmm_slope_", num(k)), c("correlated_slope", "unbalanced"), f,
      data.frame(y = r3(y), x = x, g = lab("g", g)), REML = k %% 2 == 1, truth = list(sd = s, rho = rho))
}
# uncorrelated slopes, || and the explicit form
for (k in 1:10) {
  n <- ri(80, 600); J <- ri(5, min(50, n %/% 5)); g <- gidx(n, J)
  x <- xcov(n); s <- c(ru(0.2, 2), ru(0.1, 1)); se <- ru(0.3, 2)
  b <- mvn2(J, s, 0)
  y <- 1 - 0.3 * x + b[g, 1] + b[g, 2] * x + rnorm(n, 0, se)
  f <- if (k <= 7) "y ~ x + (x || g)" else "y ~ x + (1 | g) + (0 + x | g)"
  add(paste0("lmm_uncorr_", num(k)), c("uncorrelated_slope"), f,
      data.frame(y = r3(y), x = x, g = lab("g", g)), REML = k %% 2 == 0, truth = list(sd = s))
}
# nested (1 | a/b): b labels reused inside each a
for (k in 1:12) {
  Ja <- ri(3, 15); nb <- sample(2:6, Ja, replace = TRUE)
  a_of_b <- rep(seq_len(Ja), nb); b_in_a <- unlist(lapply(nb, seq_len)); Jb <- length(a_of_b)
  n <- max(50, min(800, Jb * ri(2, 10))); bi <- gidx(n, Jb)
  x <- xcov(n); sa <- ru(0.2, 2); sb <- ru(0.1, 1.5); se <- ru(0.3, 1.5)
  y <- 3 + 0.4 * x + rnorm(Ja, 0, sa)[a_of_b[bi]] + rnorm(Jb, 0, sb)[bi] + rnorm(n, 0, se)
  f <- if (k %% 3 == 0) "y ~ x + (1 | a) + (1 | a:b)" else "y ~ x + (1 | a/b)"
  add(paste0("lmm_nested_", num(k)), c("nested", "interaction_group"), f,
      data.frame(y = r3(y), x = x, a = lab("a", a_of_b[bi]), b = lab("b", b_in_a[bi])),
      REML = k %% 2 == 1, truth = list(sd = c(sa, sb)))
}
# fully crossed (1 | a) + (1 | b)
for (k in 1:12) {
  n <- ri(60, 600); Ja <- ri(3, 30); Jb <- ri(3, 30)
  ai <- gidx(n, Ja); bi <- gidx(n, Jb)
  x <- xcov(n); sa <- ru(0.2, 2); sb <- ru(0.2, 2); se <- ru(0.3, 1.5)
  y <- 0.5 * x + rnorm(Ja, 0, sa)[ai] + rnorm(Jb, 0, sb)[bi] + rnorm(n, 0, se)
  f <- if (k %% 4 == 0) "y ~ x + (x | a) + (1 | b)" else "y ~ x + (1 | a) + (1 | b)"
  add(paste0("lmm_crossed_", num(k)), c("crossed"), f,
      data.frame(y = r3(y), x = x, a = lab("a", ai), b = lab("b", bi)), REML = k %% 2 == 0,
      truth = list(sd = c(sa, sb)))
}
# partially crossed: b mostly follows a, some rows random
for (k in 1:8) {
  n <- ri(80, 600); Ja <- ri(4, 30); Jb <- ri(4, 40)
  ai <- gidx(n, Ja); home <- sample.int(Jb, Ja, replace = TRUE)
  bi <- ifelse(runif(n) < ru(0.5, 0.9), home[ai], sample.int(Jb, n, replace = TRUE))
  bi <- match(bi, sort(unique(bi)))
  x <- xcov(n); se <- ru(0.3, 1.5)
  y <- 1 + x + rnorm(Ja, 0, ru(0.2, 2))[ai] + rnorm(max(bi), 0, ru(0.2, 2))[bi] + rnorm(n, 0, se)
  add(paste0("lmm_pcross_", num(k)), c("partially_crossed"), "y ~ x + (1 | a) + (1 | b)",
      data.frame(y = r3(y), x = x, a = lab("a", ai), b = lab("b", bi)), REML = k %% 2 == 1)
}
# interaction grouping factor (1 | a:b), with and without the main terms
for (k in 1:8) {
  Ja <- ri(3, 8); Jb <- ri(3, 8); n <- ri(100, 600)
  ai <- gidx(n, Ja); bi <- gidx(n, Jb)
  cell <- (ai - 1) * Jb + bi
  y <- 2 + rnorm(Ja, 0, 1)[ai] + rnorm(Jb, 0, 0.7)[bi] + rnorm(Ja * Jb, 0, ru(0.2, 1.5))[cell] + rnorm(n)
  f <- c("y ~ 1 + (1 | a:b)", "y ~ x + (1 | a) + (1 | b) + (1 | a:b)", "y ~ x + (1 | a:b) + (1 | a)",
         "y ~ x + (1 | b) + (1 | a:b)")[1 + k %% 4]
  add(paste0("lmm_inter_", num(k)), c("interaction_group", "crossed"), f,
      data.frame(y = r3(y), x = xcov(n), a = lab("a", ai), b = lab("b", bi)), REML = k %% 2 == 0)
}
# factor fixed effects with interactions
for (k in 1:12) {
  n <- ri(80, 700); J <- ri(5, min(50, n %/% 4)); g <- gidx(n, J)
  L <- ri(2, 4); fl <- LETTERS[seq_len(L)]; fi <- sample.int(L, n, replace = TRUE)
  h <- sample(c("lo", "hi"), n, replace = TRUE)
  x <- xcov(n); se <- ru(0.3, 2); b <- mvn2(J, c(ru(0.3, 2), ru(0.1, 0.8)), ru(-0.5, 0.5))
  y <- 1 + c(0, rnorm(L - 1))[fi] + (0.5 + c(0, rnorm(L - 1, 0, 0.5))[fi]) * x + 0.7 * (h == "hi") +
    b[g, 1] + b[g, 2] * x + rnorm(n, 0, se)
  f <- c("y ~ f * x + (1 | g)", "y ~ f * x + (x | g)", "y ~ f * h + x + (1 | g)", "y ~ f + h:x + (1 | g)")[1 + k %% 4]
  add(paste0("lmm_ffix_", num(k)), c("factor_fixed", "interaction_fixed"), f,
      data.frame(y = r3(y), x = x, f = fl[fi], h = h, g = lab("g", g)), REML = k %% 2 == 1)
}
# prior weights
for (k in 1:10) {
  n <- ri(60, 600); J <- ri(4, min(50, n %/% 4)); g <- gidx(n, J)
  x <- xcov(n); w <- if (k %% 2) sample(1:5, n, replace = TRUE) else round(runif(n, 0.2, 4), 2)
  se <- ru(0.5, 2)
  y <- 1 + 0.5 * x + rnorm(J, 0, ru(0.2, 2))[g] + rnorm(n, 0, se / sqrt(w))
  f <- if (k %% 3 == 0) "y ~ x + (x | g)" else "y ~ x + (1 | g)"
  add(paste0("lmm_wts_", num(k)), c("weights"), f,
      data.frame(y = r3(y), x = x, w = w, g = lab("g", g)), REML = k %% 2 == 0, weights = "w")
}
# offsets: as the offset= argument, or offset() in the formula
for (k in 1:8) {
  n <- ri(60, 500); J <- ri(4, min(40, n %/% 4)); g <- gidx(n, J)
  x <- xcov(n); o <- r3(rnorm(n, 2, 1.5))
  y <- o + 1 + 0.5 * x + rnorm(J, 0, ru(0.2, 2))[g] + rnorm(n, 0, ru(0.3, 1.5))
  d <- data.frame(y = r3(y), x = x, o = o, g = lab("g", g))
  if (k %% 2) add(paste0("lmm_off_", num(k)), c("offset"), "y ~ x + (1 | g)", d, REML = k %% 4 == 1, offset = "o")
  else add(paste0("lmm_off_", num(k)), c("offset", "offset_formula"), "y ~ x + offset(o) + (1 | g)", d,
           REML = k %% 4 == 0)
}
# singular truths: a zero variance component
for (k in 1:10) {
  n <- ri(50, 500); J <- ri(3, min(40, n %/% 4)); g <- gidx(n, J)
  x <- xcov(n); se <- ru(0.5, 2)
  if (k <= 4) {
    y <- 1 + x + rnorm(n, 0, se); f <- "y ~ x + (1 | g)"
  } else if (k <= 7) {
    y <- 1 + x + rnorm(J, 0, ru(0.5, 2))[g] + rnorm(n, 0, se); f <- "y ~ x + (x | g)"  # zero slope variance
  } else {
    Jb <- ri(3, 20); bi <- gidx(n, Jb)
    y <- 1 + x + rnorm(J, 0, 1)[g] + rnorm(n, 0, se); f <- "y ~ x + (1 | g) + (1 | b)"  # zero for b
  }
  d <- data.frame(y = r3(y), x = x, g = lab("g", g))
  if (k > 7) d$b <- lab("b", bi)
  add(paste0("lmm_sing0_", num(k)), c("singular_truth", "zero_variance"), f, d, REML = k %% 2 == 1)
}
# singular truths: correlation +-1
for (k in 1:8) {
  n <- ri(60, 500); J <- ri(5, min(40, n %/% 4)); g <- gidx(n, J)
  x <- xcov(n); u <- rnorm(J, 0, ru(0.5, 2)); sgn <- if (k %% 2) 1 else -1
  y <- 1 + x + u[g] + sgn * ru(0.2, 0.8) * u[g] * x + rnorm(n, 0, ru(0.3, 1.5))
  add(paste0("lmm_singr_", num(k)), c("singular_truth", "correlation_pm1"), "y ~ x + (x | g)",
      data.frame(y = r3(y), x = x, g = lab("g", g)), REML = k %% 4 < 2, truth = list(rho = sgn))
}
# large means: y + 1e4 .. 1e6 (also a covariate far from zero)
# (the last five: residual and group SDs of 0.001 .. 0.1 beside a mean of 1e5 .. 1e6)
for (k in 1:20) {
  n <- ri(50, 500); J <- ri(3, min(40, n %/% 4)); g <- gidx(n, J)
  x <- xcov(n); shift <- 10^ru(4, 6); se <- ru(0.3, 3)
  b <- mvn2(J, c(ru(0.2, 3), ru(0.1, 1)), ru(-0.5, 0.5))
  if (k > 15) { shift <- 10^ru(5, 6); se <- ru(0.001, 0.1); b <- b * ru(0.001, 0.1) }
  y <- shift + 0.5 * x + b[g, 1] + rnorm(n, 0, se)
  f <- "y ~ x + (1 | g)"
  if (k %% 3 == 1) { y <- y + b[g, 2] * x; f <- "y ~ x + (x | g)" }
  if (k %% 5 == 0) { x <- x + 2000; f <- "y ~ x + (1 | g)" }
  add(paste0("lmm_big_", num(k)), c("large_mean"), f,
      data.frame(y = if (k > 15) round(y, 5) else r3(y), x = x, g = lab("g", g)), REML = k %% 2 == 1, truth = list(shift = shift))
}
# different scales of y and x
for (k in 1:10) {
  n <- ri(50, 500); J <- ri(4, min(40, n %/% 4)); g <- gidx(n, J)
  sy <- 10^ru(-3, 4); sx <- 10^ru(-3, 3); x <- rnorm(n) * sx
  b <- mvn2(J, c(1, 0.4), 0.3)
  y <- sy * (1 + x / sx + b[g, 1] + b[g, 2] * x / sx + rnorm(n))
  f <- if (k %% 2) "y ~ x + (1 | g)" else "y ~ x + (x | g)"
  add(paste0("lmm_scale_", num(k)), c("scales"), f,
      data.frame(y = signif(y, 7), x = signif(x, 7), g = lab("g", g)), REML = k %% 3 != 0,
      truth = list(sy = sy, sx = sx))
}
# many random effects in total, each term fewer than n (lme4 checks per term)
for (k in 1:6) {
  n <- ri(50, 110); Jg <- ri(n %/% 2 + 3, 60); Jh <- ri(n %/% 2 + 3, 60)   # Jg + Jh > n, each < n
  gi <- gidx(n, Jg); hi <- gidx(n, Jh)
  x <- xcov(n)
  y <- 1 + x + rnorm(Jg, 0, 1)[gi] + rnorm(Jh, 0, 0.8)[hi] + rnorm(n, 0, 0.7)
  f <- if (k <= 4) "y ~ x + (1 | g) + (1 | h)" else "y ~ x + (1 | g) + (0 + x | h)"
  add(paste0("lmm_manyre_", num(k)), c("many_random_effects", "crossed"), f,
      data.frame(y = r3(y), x = x, g = lab("g", gi), h = lab("h", hi)), REML = k %% 2 == 1)
}
# designs lme4 refuses
for (k in 1:6) {
  n <- ri(50, 120); x <- xcov(n); y <- r3(1 + x + rnorm(n))
  if (k <= 2) {         # observation-level effect: levels == observations (check.nobs.vs.nlev)
    d <- data.frame(y = y, x = x, obs = lab("o", seq_len(n))); f <- "y ~ x + (1 | obs)"
  } else if (k <= 4) {  # (x | g) with 1-2 obs per group: 2J random effects > n (check.nobs.vs.nRE)
    J <- n %/% 2 + 1; d <- data.frame(y = y, x = x, g = lab("g", sample(rep_len(seq_len(J), n))))
    f <- "y ~ x + (x | g)"
  } else {              # one-level grouping factor (check.nlev.gtr.1)
    d <- data.frame(y = y, x = x, g = "g01"); f <- "y ~ x + (1 | g)"
  }
  add(paste0("lmm_refuse_", num(k)), c("refused"), f, d, REML = TRUE)
}

# ---------------------------------------------------------------------------------------------
# GLMMs

plogis_ <- function(e) 1 / (1 + exp(-e))
links <- c("logit", "probit", "cloglog")
linkinv <- function(e, link) switch(link, logit = plogis(e), probit = pnorm(e), cloglog = 1 - exp(-exp(e)))

# binomial 0/1, (1 | g)
for (k in 1:12) {
  n <- ri(100, 800); J <- ri(5, min(60, n %/% 6)); g <- gidx(n, J)
  x <- r3(rnorm(n)); link <- if (k <= 8) "logit" else links[2 + k %% 2]
  eta <- ru(-1, 1) + 0.7 * x + rnorm(J, 0, ru(0.3, 1.5))[g]
  y <- rbinom(n, 1, linkinv(eta, link))
  add(paste0("glmm_bin01_", num(k)), c("binomial", "binary", "intercept", if (link != "logit") "link"),
      "y ~ x + (1 | g)", data.frame(y = y, x = x, g = lab("g", g)), kind = "glmer",
      family = "binomial", link = link)
}
# binomial 0/1, (x | g)
for (k in 1:6) {
  n <- ri(300, 800); J <- ri(10, min(60, n %/% 10)); g <- gidx(n, J)
  x <- r3(rnorm(n)); b <- mvn2(J, c(ru(0.5, 1.5), ru(0.2, 0.8)), ru(-0.5, 0.5))
  y <- rbinom(n, 1, plogis(-0.3 + x + b[g, 1] + b[g, 2] * x))
  add(paste0("glmm_bin01s_", num(k)), c("binomial", "binary", "correlated_slope"), "y ~ x + (x | g)",
      data.frame(y = y, x = x, g = lab("g", g)), kind = "glmer", family = "binomial", link = "logit")
}
# binomial cbind(successes, failures) with trials
for (k in 1:12) {
  n <- ri(50, 400); J <- ri(4, min(50, n %/% 3)); g <- gidx(n, J)
  x <- r3(rnorm(n)); m <- sample(1:20, n, replace = TRUE)
  ff <- sample(c("A", "B", "C"), n, replace = TRUE)
  eta <- ru(-1.5, 1) + 0.5 * x + c(A = 0, B = 0.4, C = -0.3)[ff] + rnorm(J, 0, ru(0.2, 1.2))[g]
  d <- data.frame(s = rbinom(n, m, plogis(eta)), m = m, x = x, f = ff, g = lab("g", g))
  f <- "cbind(s, m - s) ~ x + (1 | g)"
  if (k %% 3 == 0) f <- "cbind(s, m - s) ~ f + x + (1 | g)"
  if (k %% 4 == 0) {
    Jb <- ri(3, 15); d$b <- lab("b", gidx(n, Jb)); f <- "cbind(s, m - s) ~ x + (1 | g) + (1 | b)"
  }
  add(paste0("glmm_bincb_", num(k)), c("binomial", "cbind", if (grepl("\\| b", f)) "crossed",
                                        if (grepl("f \\+", f)) "factor_fixed"), f, d,
      kind = "glmer", family = "binomial", link = "logit")
}
# binomial proportions with weights = trials
for (k in 1:8) {
  n <- ri(50, 400); J <- ri(4, min(50, n %/% 3)); g <- gidx(n, J)
  x <- r3(rnorm(n)); m <- sample(1:25, n, replace = TRUE)
  s <- rbinom(n, m, plogis(ru(-1, 1) + 0.6 * x + rnorm(J, 0, ru(0.2, 1.2))[g]))
  f <- if (k %% 4 == 0) "p ~ x + (x | g)" else "p ~ x + (1 | g)"
  add(paste0("glmm_binprop_", num(k)), c("binomial", "proportion", "weights"), f,
      data.frame(p = round(s / m, 12), m = m, x = x, g = lab("g", g)), kind = "glmer",
      family = "binomial", link = if (k == 3) "probit" else "logit", weights = "m")
}
# Poisson
for (k in 1:12) {
  n <- ri(60, 600); J <- ri(4, min(60, n %/% 4)); g <- gidx(n, J)
  x <- r3(rnorm(n, 0, 0.7)); b <- mvn2(J, c(ru(0.2, 1), ru(0.1, 0.4)), ru(-0.5, 0.5))
  eta <- ru(-0.5, 2.5) + 0.4 * x + b[g, 1]
  f <- "y ~ x + (1 | g)"
  if (k %% 3 == 0) { eta <- eta + b[g, 2] * x; f <- "y ~ x + (x | g)" }
  d <- data.frame(x = x, g = lab("g", g))
  if (k %% 4 == 1) {
    Jb <- ri(3, 20); bi <- gidx(n, Jb); eta <- eta + rnorm(Jb, 0, 0.4)[bi]; d$b <- lab("b", bi)
    f <- "y ~ x + (1 | g) + (1 | b)"
  }
  d$y <- rpois(n, exp(eta))
  add(paste0("glmm_pois_", num(k)), c("poisson", if (grepl("\\| b", f)) "crossed", if (grepl("x \\|", f)) "correlated_slope"),
      f, d, kind = "glmer", family = "poisson", link = "log")
}
# Poisson with offset log(exposure)
for (k in 1:10) {
  n <- ri(60, 500); J <- ri(4, min(50, n %/% 4)); g <- gidx(n, J)
  x <- r3(rnorm(n, 0, 0.7)); expo <- round(runif(n, 0.5, 20), 2); lexpo <- round(log(expo), 6)
  y <- rpois(n, exp(lexpo + ru(-2, 0.5) + 0.3 * x + rnorm(J, 0, ru(0.2, 1))[g]))
  d <- data.frame(y = y, x = x, lexpo = lexpo, g = lab("g", g))
  if (k %% 2) add(paste0("glmm_poisoff_", num(k)), c("poisson", "offset"), "y ~ x + (1 | g)", d,
                  kind = "glmer", family = "poisson", link = "log", offset = "lexpo")
  else add(paste0("glmm_poisoff_", num(k)), c("poisson", "offset", "offset_formula"),
           "y ~ x + offset(lexpo) + (1 | g)", d, kind = "glmer", family = "poisson", link = "log")
}
# observation-level random effects beside a grouping term (Poisson and binomial cbind)
for (k in 1:14) {
  n <- ri(50, 300); J <- ri(4, min(40, n %/% 3)); g <- gidx(n, J)
  x <- r3(rnorm(n, 0, 0.7)); eta <- ru(-0.5, 1.5) + 0.4 * x + rnorm(J, 0, ru(0.2, 1))[g] + rnorm(n, 0, ru(0.2, 0.8))
  d <- data.frame(x = x, g = lab("g", g), obs = lab("o", seq_len(n)))
  if (k <= 8) {
    d$y <- rpois(n, exp(eta)); f <- "y ~ x + (1 | g) + (1 | obs)"; fam <- "poisson"; lk <- "log"
  } else {
    d$m <- sample(2:15, n, replace = TRUE); d$s <- rbinom(n, d$m, plogis(eta - 0.5))
    f <- "cbind(s, m - s) ~ x + (1 | g) + (1 | obs)"; fam <- "binomial"; lk <- "logit"
  }
  add(paste0("glmm_olre_", num(k)), c(fam, "observation_level", "many_random_effects"), f, d,
      kind = "glmer", family = fam, link = lk)
}
# nAGQ = 0
for (k in 1:6) {
  n <- ri(100, 600); J <- ri(5, min(50, n %/% 5)); g <- gidx(n, J); x <- r3(rnorm(n))
  eta <- ru(-1, 1) + 0.5 * x + rnorm(J, 0, ru(0.3, 1.2))[g]
  if (k %% 2) { d <- data.frame(y = rbinom(n, 1, plogis(eta)), x = x, g = lab("g", g)); fam <- "binomial"; lk <- "logit" }
  else { d <- data.frame(y = rpois(n, exp(eta)), x = x, g = lab("g", g)); fam <- "poisson"; lk <- "log" }
  f <- if (k >= 5) "y ~ x + (x | g)" else "y ~ x + (1 | g)"
  add(paste0("glmm_agq0_", num(k)), c(fam, "nAGQ0"), f, d, kind = "glmer", family = fam, link = lk, nAGQ = 0L)
}
# nAGQ > 1, one scalar term
for (k in 1:8) {
  n <- ri(60, 500); J <- ri(5, min(50, n %/% 4)); g <- gidx(n, J); x <- r3(rnorm(n))
  eta <- ru(-1, 1) + 0.5 * x + rnorm(J, 0, ru(0.5, 2))[g]
  if (k %% 2) {
    m <- sample(1:10, n, replace = TRUE)
    d <- data.frame(s = rbinom(n, m, plogis(eta)), m = m, x = x, g = lab("g", g))
    f <- "cbind(s, m - s) ~ x + (1 | g)"; fam <- "binomial"; lk <- "logit"
  } else {
    d <- data.frame(y = rpois(n, exp(eta)), x = x, g = lab("g", g)); f <- "y ~ x + (1 | g)"; fam <- "poisson"; lk <- "log"
  }
  add(paste0("glmm_agq_", num(k)), c(fam, "nAGQ>1"), f, d, kind = "glmer", family = fam, link = lk,
      nAGQ = c(3L, 5L, 9L, 25L)[1 + (k - 1) %% 4])
}
# singular truths in glmer
for (k in 1:6) {
  n <- ri(100, 500); J <- ri(4, min(30, n %/% 5)); g <- gidx(n, J); x <- r3(rnorm(n))
  if (k <= 3) {
    d <- data.frame(y = rbinom(n, 1, plogis(0.2 + 0.6 * x)), x = x, g = lab("g", g)); fam <- "binomial"; lk <- "logit"
  } else {
    d <- data.frame(y = rpois(n, exp(0.5 + 0.3 * x)), x = x, g = lab("g", g)); fam <- "poisson"; lk <- "log"
  }
  f <- if (k %% 3 == 0) "y ~ x + (x | g)" else "y ~ x + (1 | g)"
  add(paste0("glmm_gsing_", num(k)), c(fam, "singular_truth", "zero_variance"), f, d,
      kind = "glmer", family = fam, link = lk)
}

# glmer with nested and partially crossed factors, and covariates on extreme scales
for (k in 1:9) {
  n <- ri(100, 500); x <- r3(rnorm(n))
  if (k <= 3) {          # cbind response, (1 | a/b)
    Ja <- ri(3, 10); nb <- sample(2:5, Ja, replace = TRUE)
    a_of_b <- rep(seq_len(Ja), nb); b_in_a <- unlist(lapply(nb, seq_len)); bi <- gidx(n, length(a_of_b))
    m <- sample(1:12, n, replace = TRUE)
    eta <- -0.5 + 0.5 * x + rnorm(Ja, 0, ru(0.3, 1))[a_of_b[bi]] + rnorm(length(a_of_b), 0, ru(0.2, 0.8))[bi]
    d <- data.frame(s = rbinom(n, m, plogis(eta)), m = m, x = x, a = lab("a", a_of_b[bi]), b = lab("b", b_in_a[bi]))
    add(paste0("glmm_nested_", num(k)), c("binomial", "cbind", "nested"), "cbind(s, m - s) ~ x + (1 | a/b)", d,
        kind = "glmer", family = "binomial", link = "logit")
  } else if (k <= 6) {   # Poisson, partially crossed
    Ja <- ri(4, 25); Jb <- ri(4, 30); ai <- gidx(n, Ja); home <- sample.int(Jb, Ja, replace = TRUE)
    bi <- ifelse(runif(n) < 0.7, home[ai], sample.int(Jb, n, replace = TRUE)); bi <- match(bi, sort(unique(bi)))
    y <- rpois(n, exp(0.8 + 0.3 * x + rnorm(Ja, 0, 0.5)[ai] + rnorm(max(bi), 0, 0.4)[bi]))
    add(paste0("glmm_pcross_", num(k - 3)), c("poisson", "partially_crossed", "crossed"), "y ~ x + (1 | a) + (1 | b)",
        data.frame(y = y, x = x, a = lab("a", ai), b = lab("b", bi)), kind = "glmer", family = "poisson", link = "log")
  } else {               # covariate scaled by 1e-3 .. 1e3
    J <- ri(5, 40); g <- gidx(n, J); sx <- 10^c(-3, 3, 2)[k - 6]
    y <- rbinom(n, 1, plogis(0.3 + 0.8 * x + rnorm(J, 0, 0.8)[g]))
    add(paste0("glmm_scale_", num(k - 6)), c("binomial", "binary", "scales"), "y ~ x + (1 | g)",
        data.frame(y = y, x = signif(x * sx, 7), g = lab("g", g)), kind = "glmer", family = "binomial", link = "logit")
  }
}

# ---------------------------------------------------------------------------------------------
# fit every design with lme4's defaults, from its CSV

with_msgs <- function(expr) {
  w <- character(0); m <- character(0)
  val <- tryCatch(withCallingHandlers(expr,
      message = function(c) { m <<- c(m, trimws(conditionMessage(c))); invokeRestart("muffleMessage") },
      warning = function(c) { w <<- c(w, trimws(conditionMessage(c))); invokeRestart("muffleWarning") }),
    error = function(e) e)
  list(value = val, warnings = w, messages = m)
}

fit_design <- function(ds) {
  file <- paste0(ds$id, ".csv")
  write.csv(ds$data, file.path(datadir, file), row.names = FALSE)
  data <- read.csv(file.path(datadir, file), stringsAsFactors = FALSE)
  wt <- if (!is.null(ds$weights)) data[[ds$weights]] else NULL
  of <- if (!is.null(ds$offset)) data[[ds$offset]] else NULL
  form <- as.formula(ds$formula)
  t0 <- proc.time()[["elapsed"]]
  r <- if (ds$kind == "lmer") {
    with_msgs(lmer(form, data = data, REML = ds$REML, weights = wt, offset = of))
  } else {
    fam <- get(ds$family)(link = ds$link)
    with_msgs(glmer(form, data = data, family = fam, nAGQ = ds$nAGQ, weights = wt, offset = of))
  }
  secs <- proc.time()[["elapsed"]] - t0
  out <- ds[c("id", "features", "formula", "kind", "REML", "family", "link", "nAGQ", "weights", "offset", "truth")]
  out$REML <- ds$kind == "lmer" && ds$REML
  out$data <- file; out$nobs_data <- nrow(data)
  out$features <- I(ds$features); out$warnings <- I(r$warnings); out$messages <- I(r$messages)
  out$lme4_seconds <- secs
  m <- r$value
  if (inherits(m, "error")) {
    out$status <- "error"; out$error <- conditionMessage(m)
    return(out)
  }
  out$status <- "ok"
  out$objective <- if (ds$kind == "lmer") {
    if (ds$REML) unname(REMLcrit(m)) else unname(deviance(m))
  } else -2 * as.numeric(logLik(m))
  out$logLik <- as.numeric(logLik(m))
  out$nobs <- nobs(m); out$ngrps <- as.list(ngrps(m))
  out$theta <- I(unname(getME(m, "theta"))); out$theta_names <- I(names(getME(m, "theta")))
  out$lower <- I(unname(getME(m, "lower")))
  out$fixef <- as.list(fixef(m)); out$se_fixef <- I(unname(sqrt(diag(as.matrix(vcov(m))))))
  out$sigma <- sigma(m)
  out$is_singular <- isSingular(m)
  cv <- m@optinfo$conv
  out$optimizer_code <- cv$opt
  out$conv_messages <- I(as.character(unlist(cv$lme4$messages)))
  # finite-difference Hessian of the objective at the optimum (over theta for lmer, over (theta,
  # beta) for glmer): the tests' scale for how well theta is determined
  H <- m@optinfo$derivs$Hessian
  out$hessian <- if (is.null(H)) NULL else unname(H)
  out
}

results <- vector("list", length(designs))
t_all <- proc.time()[["elapsed"]]
for (i in seq_along(designs)) {
  results[[i]] <- fit_design(designs[[i]])
  o <- results[[i]]
  cat(sprintf("%-18s %-5s %8.3fs %s\n", o$id, o$status, o$lme4_seconds,
              if (o$status == "ok") format(o$objective, digits = 10) else o$error))
}
meta <- list(
  description = paste("Differential corpus of random designs (issue 9, part E), fitted by lme4 with",
                      "lmerControl()/glmerControl() defaults by tests/reference/gen/corpus.R."),
  objective = paste("REML criterion (REML lmer), deviance = -2 logLik (ML lmer), -2 logLik",
                    "(glmer, Laplace or adaptive Gauss-Hermite; nAGQ = 0 evaluates the Laplace deviance)"),
  seed = 20261201L, R_version = R.version.string, lme4_version = as.character(packageVersion("lme4")),
  Matrix_version = as.character(packageVersion("Matrix")),
  n_designs = length(results), total_lme4_seconds = proc.time()[["elapsed"]] - t_all)
write_json(list(meta = meta, designs = results), file.path(outdir, "designs.json"),
           auto_unbox = TRUE, digits = NA, pretty = FALSE, null = "null", na = "null")
cat("designs:", length(results), " lme4 errors:", sum(sapply(results, function(o) o$status == "error")), "\n")

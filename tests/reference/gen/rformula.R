# What R means by a fixed-effects formula: model.matrix column names and values, poly() and its
# stored coefficients, and lme4 fits using those formulas (tests/test_rformula.py).
#
# Usage (from the repository root):
#   Rscript tests/reference/gen/rformula.R tests/reference/rformula
# Writes sim.csv (a simulated data set with factors, odd column names and grouping factors),
# model_matrix.json, poly.json and lmer_fits.json into that directory.
# Made with R 4.2.2, lme4 1.1-31 (Debian bookworm packages).
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
outdir <- if (length(args)) args[1] else "tests/reference/rformula"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
write_out <- function(x, name)
  write_json(x, file.path(outdir, name), auto_unbox = TRUE, digits = NA, pretty = TRUE)

# -- simulated data: numeric x, z, t; factors f (3 levels), h (2), k (3); logical b; grouping g,
# `school id` and école with real group effects; columns named like R/Python keywords and builtins
set.seed(20261201)
n <- 120
sim <- data.frame(
  x = round(rnorm(n), 4), z = round(runif(n, 1, 3), 4), t = round(rnorm(n, 2), 4),
  f = sample(c("lo", "hi", "mid"), n, TRUE), h = sample(c("a", "b"), n, TRUE),
  k = sample(c("p", "q", "r"), n, TRUE), b = sample(c(TRUE, FALSE), n, TRUE),
  ostr = sample(c("low", "medium", "high"), n, TRUE),
  g = rep(sprintf("g%02d", 1:8), length.out = n),
  `school id` = rep(sprintf("s%d", 1:6), each = n / 6),
  `école` = sample(c("nord", "sud", "est", "ouest"), n, TRUE),
  test.score = round(rnorm(n, 50, 10), 2), lambda = round(rnorm(n), 4), class = round(rnorm(n), 4),
  id = round(rnorm(n), 4), type = round(rnorm(n), 4), sum = round(rnorm(n), 4),
  check.names = FALSE, stringsAsFactors = FALSE)
ge <- rnorm(8, 0, 1)[as.integer(factor(sim$g))]
se <- rnorm(6, 0, 0.7)[as.integer(factor(sim$`school id`))]
ee <- rnorm(4, 0, 0.5)[as.integer(factor(sim$`école`))]
sim$y <- round(1 + 0.5 * sim$x - 0.3 * sim$x^2 + 0.8 * (sim$f == "lo") + 0.4 * (sim$h == "b") * sim$x +
                 0.02 * sim$test.score + ge + se + ee + rnorm(n, 0, 0.6), 4)
write.csv(sim, file.path(outdir, "sim.csv"), row.names = FALSE, fileEncoding = "UTF-8")
d <- sim
for (v in c("f", "h", "k", "g", "school id", "école")) d[[v]] <- factor(d[[v]])
d$o <- factor(d$ostr, levels = c("low", "medium", "high"), ordered = TRUE)

mm_formulas <- c(
  "y ~ x + I(x^2)", "y ~ I(x^2) + log(z^2) + exp(-x) + sqrt(z) + I(x/1e3) + I(2.5 * x)",
  "y ~ (x + z + t)^2", "y ~ (x + z + t)^3 - x:z:t", "y ~ (x + f + h)^2", "y ~ x*z", "y ~ x*z - x",
  "y ~ 0 + x + f", "y ~ x - 1 + f", "y ~ -1 + f:h", "y ~ f + t + t:f", "y ~ t + f + t:f", "y ~ f:x",
  "y ~ x:f", "y ~ f*h", "y ~ f*k", "y ~ f*k*h", "y ~ f:k", "y ~ h + f:h", "y ~ f + f:h", "y ~ f:h + x",
  "y ~ x + x:f:h", "y ~ f/x", "y ~ f/h", "y ~ x %in% f", "y ~ h/(x + z)", "y ~ f*x + h*z",
  "y ~ x:z:f", "y ~ poly(x, 2)", "y ~ poly(x, 3) + poly(z, 2, raw = TRUE)", "y ~ poly(x, degree = 2):h",
  "y ~ h:poly(x, 2)", "y ~ b + x:b", "y ~ o", "y ~ o*x", "y ~ 0 + o", "y ~ scale(x) + scale(z):f",
  "y ~ factor(h) + relevel(f, ref = \"mid\")", "y ~ test.score + `school id`", "y ~ `école` * x",
  "y ~ lambda + class + id + type + sum", "y ~ I(x > 0) + I(z %% 1) + I((x + 1)^2)",
  "y ~ log(abs(x) + 1, 2) + pmax(x, 0)", "y ~ x + z + f + x:z + z:f + x:f")
mm <- lapply(mm_formulas, function(fo) {
  X <- model.matrix(as.formula(fo), d)
  list(formula = fo, names = colnames(X), X = unname(X))
})
# '.' expands over the data's columns except the response's variables
dd <- d[, c("y", "x", "f", "z")]
for (fo in c("y ~ .", "y ~ .^2", "y ~ . - z", "log(z) ~ .", "y ~ . + I(x^2)")) {
  X <- model.matrix(as.formula(fo), dd)
  mm[[length(mm) + 1]] <- list(formula = fo, names = colnames(X), X = unname(X), data_columns = names(dd))
}
labels <- lapply(c("y ~ b:a + a + c %in% a", "y ~ c + b:a + a:c:b", "y ~ (a + b)^2 + c/a"), function(fo) {
  tt <- terms(as.formula(fo))
  list(formula = fo, term_labels = attr(tt, "term.labels"), intercept = attr(tt, "intercept"))
})
double_verts <- lapply(c("y ~ x + (x*z || g)", "y ~ (0 + x + f || g)", "y ~ (x + I(x^2) || g)"), function(fo)
  list(formula = fo, expanded = paste(deparse(lme4:::expandDoubleVerts(as.formula(fo))), collapse = "")))
write_out(list(cases = mm, term_labels = labels, double_verts = double_verts), "model_matrix.json")

# -- poly(): columns, stored coefficients and predict() on new values
px <- poly(d$x, 3)
newx <- c(-3, -0.5, 0, 0.25, 1.7, 4)
write_out(list(x = d$x, degree = 3, values = unname(unclass(px)[, 1:3]),
               alpha = attr(px, "coefs")$alpha, norm2 = attr(px, "coefs")$norm2,
               newx = newx, predict = unname(unclass(predict(px, newx))[, 1:3]),
               contr_poly_4 = unname(contr.poly(4)), contr_poly_5 = unname(contr.poly(5))), "poly.json")

# -- lmer fits with those formulas
ss <- read.csv("mixedpy/datasets/data/sleepstudy.csv", stringsAsFactors = TRUE)
ss_new <- data.frame(Days = c(0, 2.5, 9, 12), Subject = "308")
fit_case <- function(name, formula, data, dataname, newdata = NULL) {
  m <- lmer(as.formula(formula), data = data, REML = TRUE)
  out <- list(name = name, formula = formula, data = dataname, fixef = as.list(fixef(m)),
              se_fixef = unname(sqrt(diag(as.matrix(vcov(m))))), sigma = sigma(m),
              REMLcrit = REMLcrit(m), ranef_names = names(ranef(m)),
              theta_names = names(getME(m, "theta")))
  if (!is.null(newdata)) {
    out$newdata <- newdata
    out$predict_fixed <- unname(predict(m, newdata = newdata, re.form = NA))
    out$predict_full <- unname(predict(m, newdata = newdata, allow.new.levels = TRUE))
  }
  out
}
sim_new <- d[c(3, 17, 40, 77, 101), ]
fits <- list(
  fit_case("sleep_I_square", "Reaction ~ Days + I(Days^2) + (Days | Subject)", ss, "sleepstudy", ss_new),
  fit_case("sleep_poly2", "Reaction ~ poly(Days, 2) + (Days | Subject)", ss, "sleepstudy", ss_new),
  fit_case("sleep_poly2_raw", "Reaction ~ poly(Days, 2, raw = TRUE) + (1 | Subject)", ss, "sleepstudy", ss_new),
  fit_case("sleep_log_square", "Reaction ~ log(Days^2 + 1) + (1 | Subject)", ss, "sleepstudy", ss_new),
  fit_case("sim_cross2", "y ~ (x + f + h)^2 + (1 | g)", d, "sim", sim_new[, c("x", "f", "h", "g")]),
  fit_case("sim_first_appearance", "y ~ f + t + t:f + (1 | g)", d, "sim", sim_new[, c("t", "f", "g")]),
  fit_case("sim_no_main_effect", "y ~ h + f:h + x + (1 | g)", d, "sim", sim_new[, c("x", "f", "h", "g")]),
  fit_case("sim_names", "y ~ test.score + poly(x, 2) + (1 | `school id`) + (1 | `école`) + (0 + lambda | g)",
           d, "sim", sim_new[, c("test.score", "x", "school id", "école", "lambda", "g")]),
  fit_case("sim_builtin_names", "y ~ id + type + sum + class + (1 | g)", d, "sim"),
  fit_case("sim_dot", "y ~ . + (1 | g)", d[, c("y", "x", "z", "f", "g")], "sim"),
  fit_case("sim_random_factor", "y ~ x + (0 + h | g)", d, "sim"))
write_out(fits, "lmer_fits.json")
cat("rformula references written to", outdir, "\n")

# Extra helpers on top of refgen.R (sourced after it): fits whose call needs
# weights / offset, and captured messages/warnings.  Same JSON field layout as
# refgen.R's fit_lmer()/fit_glmer().

# Run expr, collecting messages and warnings (text) without printing them.
with_msgs <- function(expr) {
  msgs <- character(0)
  val <- withCallingHandlers(expr,
    message = function(c) { msgs <<- c(msgs, trimws(conditionMessage(c))); invokeRestart("muffleMessage") },
    warning = function(c) { msgs <<- c(msgs, trimws(conditionMessage(c))); invokeRestart("muffleWarning") })
  list(value = val, messages = msgs)
}

# Fit an lmer/glmer given a quoted call that uses `data` (and optional `family`,
# `nAGQ`, column names for weights/offset), then record it like refgen.R.
finish_fit <- function(name, call, data, dataname, formula, newdata = NULL, sim = TRUE,
                       family = NULL, nAGQ = 1, extra = list(), post = NULL) {
  save_csv(data, dataname)
  env <- environment()
  t0 <- proc.time()[["elapsed"]]
  r <- with_msgs(eval(call, env))
  t <- proc.time()[["elapsed"]] - t0
  m <- r$value
  d <- common(m, name, dataname, formula, t)
  if (isGLMM(m)) { d$family <- family$family; d$link <- family$link; d$nAGQ <- nAGQ }
  d$call <- paste(deparse(call, width.cutoff = 500L), collapse = " ")
  d$messages <- r$messages
  for (k in names(extra)) d[[k]] <- extra[[k]]
  if (sim) d <- add_sim(d, m)
  if (!is.null(newdata)) {
    p <- with_msgs(add_predict(d, m, newdata))
    d <- p$value
    if (length(p$messages)) d$predict$messages <- p$messages
  }
  if (!is.null(post)) d <- post(d, m)
  write_ref(d); cat(name, "ok", t, "\n")
  invisible(m)
}

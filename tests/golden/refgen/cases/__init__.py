"""One module per reference case (or family of cases); each exposes generate(ctx[, case])."""

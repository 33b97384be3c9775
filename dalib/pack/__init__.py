"""Packed runs: many runs of one method (seeds, hyperparameter configurations) trained side by
side as one batched model. :mod:`~dalib.pack.modules` holds the packed layers,
:mod:`~dalib.pack.optim` the per-run optimizer, :mod:`~dalib.pack.runs` makes a pack's lead
method, :mod:`~dalib.pack.train` the step loops and :mod:`~dalib.pack.plan` which runs pack
together."""

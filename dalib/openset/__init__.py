"""Open-set and universal domain adaptation: the target holds classes the source lacks
(``open_set = true`` on a transfer scenario). Every method predicts ``unknown`` through
:func:`~dalib.openset.base.open_scores`: its own rule where it has one (OSBP's unknown output,
OVANet's one-vs-all heads), else the entropy rule of DANCE."""

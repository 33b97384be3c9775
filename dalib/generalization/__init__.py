"""Domain generalization: methods that train on several labelled source domains, each
sample's environment known (``Batch.env``), and are tested on a domain never seen: one
family per module (invariance, robust optimisation, mixing)."""

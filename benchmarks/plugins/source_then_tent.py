"""A two-phase user method, written as a user would write one: source training for the first
half of the budget, then Tent (Wang et al., "Tent: Fully Test-Time Adaptation by Entropy
Minimization", ICLR 2021) on the unlabelled target alone: the entropy of the target
predictions minimised through the batch-norm affine parameters only, batch-norm statistics
taken from the target batches. It does not restrict selection to its second phase (no
``selectable``), as a first plugin would not: the validator study measures what each
criterion picks then."""

import torch

import dalib


@dalib.register_method("source-then-tent")
class SourceThenTent(dalib.Method):
    """Source cross-entropy, then Tent on the target (BN affine parameters only)."""

    needs = ("source", "target")

    def update(self, batch):
        if self.progress < 0.5:
            loss = self.classification_loss(batch["source"])
            trained = None
        else:
            probs = self.model(batch["target"].x).softmax(-1)
            loss = -(probs * probs.clamp_min(1e-8).log()).sum(-1).mean()
            trained = {id(p) for m in self.model.modules()
                       if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                       for p in m.parameters()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if trained is not None:
            for p in self.model.parameters():
                if id(p) not in trained:
                    p.grad = None
        self.schedule_lr(self.optimizer)
        self.optimizer.step()
        self.updates += 1
        return {"loss": loss.detach()}

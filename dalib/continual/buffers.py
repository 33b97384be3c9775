"""Replay buffers held on the device as tensors."""

from __future__ import annotations

import torch


class Buffer:
    """A fixed-size memory of ``(x, y, task[, logits])`` rows on the device.

    ``policy="reservoir"``: every sample seen has the same chance ``size / seen`` of being
    stored (Vitter 1985; the buffer of Chaudhry et al. 2019 and Buzzega et al. 2020).
    ``policy="class-balanced"``: class-balancing reservoir sampling (see :meth:`_slot`), so
    classes end up with equal shares and a class seen again keeps being sampled.
    ``policy="greedy"``: GDumb's greedy class-balanced sampler (the same, without the
    reservoir within a class: a sample of a largest class is not stored).
    """

    def __init__(self, size: int, policy: str = "reservoir",
                 generator: torch.Generator | None = None) -> None:
        if policy not in ("reservoir", "class-balanced", "greedy"):
            raise ValueError(f"policy is {policy!r}, expected 'reservoir', 'class-balanced' "
                             "or 'greedy'")
        self.size, self.policy, self.generator = size, policy, generator
        self.seen = 0
        self.x: torch.Tensor | None = None
        self.y = self.task = self.logits = None
        self.count = 0
        self.class_seen: dict[int, int] = {}

    def __len__(self) -> int:
        return self.count

    def _allocate(self, x, y, task, logits) -> None:
        def empty(t):
            return None if t is None else t.new_zeros((self.size, *t.shape[1:]))

        self.x, self.y, self.task, self.logits = empty(x), empty(y), empty(task), empty(logits)

    def _rand(self, high: int) -> int:
        return int(torch.randint(0, high, (1,), generator=self.generator))

    def _slot(self, label: int) -> int | None:
        """Class-balanced policy, class-balancing reservoir sampling (CBRS, Chrysakis &
        Moens, ICML 2020): a free slot; when full, a random slot of the largest class if this
        sample's class is not among the largest; else, with probability (its class's slots)
        / (its class's samples seen), a random slot of its own class (a reservoir within
        the class, so repeated classes keep being refreshed); else None."""
        self.class_seen[label] = self.class_seen.get(label, 0) + 1
        if self.count < self.size:
            self.count += 1
            return self.count - 1
        counts = torch.bincount(self.y[:self.count].cpu())
        own = int(counts[label]) if label < len(counts) else 0
        if own < int(counts.max()):
            biggest = torch.nonzero(counts == counts.max()).flatten()
            cls = int(biggest[self._rand(len(biggest))])
        elif self.policy != "greedy" and self._rand(self.class_seen[label]) < own:
            cls = label
        else:
            return None
        idx = torch.nonzero(self.y[:self.count] == cls).flatten()
        return int(idx[self._rand(len(idx))])

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor,
            logits: torch.Tensor | None = None) -> None:
        """Offer a batch to the buffer. Reservoir slots are drawn for the whole batch at once
        (a later sample wins a slot drawn twice, as in sequential reservoir sampling); the
        class-balanced policy decides sample by sample on the host."""
        if self.x is None:
            self._allocate(x, y, task, logits)
        n = len(y)
        if self.policy == "reservoir":
            fill = min(max(self.size - self.count, 0), n)
            seen = torch.arange(self.seen + fill + 1, self.seen + n + 1, dtype=torch.float64)
            j = (torch.rand(n - fill, generator=self.generator, dtype=torch.float64)
                 * seen).long()
            keep = j < self.size
            slots = torch.cat([torch.arange(self.count, self.count + fill), j[keep]])
            src = torch.cat([torch.arange(fill), torch.arange(fill, n)[keep]])
            owner = torch.full((self.size,), -1, dtype=torch.long).scatter_reduce(
                0, slots, src, reduce="amax")
            self.count += fill
            self.seen += n
            dest = torch.nonzero(owner >= 0).flatten()
            self._write(dest.to(x.device), owner[dest].to(x.device), x, y, task, logits)
            return
        for i, label in enumerate(y.tolist()):
            self.seen += 1
            slot = self._slot(label)
            if slot is not None:
                self._write(torch.tensor([slot], device=x.device),
                            torch.tensor([i], device=x.device), x, y, task, logits)

    def _write(self, dest, src, x, y, task, logits) -> None:
        self.x[dest], self.y[dest], self.task[dest] = x[src], y[src], task[src]
        if logits is not None:
            self.logits[dest] = logits[src]

    def distinct(self, n: int) -> torch.Tensor:
        """The slots of ``min(n, len(self))`` rows drawn without replacement."""
        return torch.randperm(self.count, generator=self.generator)[:n].to(self.x.device)

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        """``n`` rows drawn uniformly with replacement: (x, y, task[, logits])."""
        idx = torch.randint(0, self.count, (n,), generator=self.generator).to(self.x.device)
        out = (self.x[idx], self.y[idx], self.task[idx])
        return out if self.logits is None else (*out, self.logits[idx])


class Buffers:
    """The buffers of a pack's runs as one: each run offers its own part of a packed batch
    ``(S, B, ...)`` to its own buffer and draws from it with its own generator."""

    def __init__(self, buffers: list[Buffer]) -> None:
        self.buffers = buffers

    def __len__(self) -> int:
        return len(self.buffers[0])  # every run has seen as many samples

    def add(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor,
            logits: torch.Tensor | None = None) -> None:
        for s, buffer in enumerate(self.buffers):
            buffer.add(x[s], y[s], task[s], None if logits is None else logits[s])

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        draws = [buffer.sample(n) for buffer in self.buffers]
        return tuple(torch.stack(parts) for parts in zip(*draws, strict=True))

"""Stochastic beam search under the catalogue trie (ReRe option `strategy_kw.stochastic`).

Kool, van Hoof, Welling, ICML 2019, "Stochastic Beams and Where to Find Them" (docs/rere.md
"Stochastic beams", docs/algorithms.md §9). Deterministic beam search returns the top K beams,
which are not samples of the policy; the Gumbel-top-k trick applied top-down on the trie samples
K distinct items WITHOUT replacement instead:

- every node y (a response prefix) has a log-probability phi(y) and a perturbed value G(y); the
  root has phi = 0 and G ~ Gumbel(0);
- a node's children c draw G~(c) = phi(c) + Gumbel(0, 1), Z = max_c G~(c), and get the Gumbel
  conditioned on their maximum being the parent's G (the paper's eq. 23, stable form of its
  appendix B):  G(c) = -log(exp(-G(parent)) - exp(-Z) + exp(-G~(c)));
- at every step the K + 1 nodes with the largest G survive (finished items keep their G); the
  top K leaves by G are then exactly a sample without replacement of size K, and the (K + 1)-th
  largest G is the threshold kappa of the inclusion-probability estimate
  q(y) = P(Gumbel(phi(y)) > kappa) = 1 - exp(-exp(phi(y) - kappa))  (the paper's §4.2, priority
  sampling); with fewer than K + 1 items kappa = -inf and q = 1 (every item is in the sample).

The distribution sampled: phi uses the per-step log-probabilities RENORMALISED over the trie's
allowed tokens, phi(y) = sum_t [log p(y_t | y_<t) - logsumexp_{v allowed} log p(v | y_<t)], i.e.
the policy with a trie logits mask, sampled ancestrally (what sampling under the constraint would
draw).  This is forced: the conditional construction only sees sibling differences, so whatever
the normalisation, the leaves are Gumbel(log q_trie(y)); q must use the same phi to be the
inclusion probability of this sampler. (Items outside the trie have probability 0.) Beam scores
and the behaviour log-probs stay the FULL-vocabulary ones, as for deterministic beams
(length_penalty 0 is implied: sequences compete by G only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rlkit.methods.rere.beam_search import BeamSearch, Constraint


def conditional_gumbel(parent_g: float, perturbed: np.ndarray) -> np.ndarray:
    """G(c) = -log(exp(-T) - exp(-Z) + exp(-G~(c))) with T = parent_g, Z = max G~, computed as
    T - softplus(v), v = T - G~ + log(1 - exp(G~ - Z)) (Kool et al. 2019, appendix B)."""
    z = perturbed.max()
    a = perturbed - z  # <= 0
    with np.errstate(divide="ignore"):
        log1mexp = np.where(a > -0.6931, np.log(-np.expm1(a)), np.log1p(-np.exp(a)))
    v = parent_g - perturbed + log1mexp
    return parent_g - np.maximum(v, 0.0) - np.log1p(np.exp(-np.abs(v)))


class StochasticBeamSearch(BeamSearch):
    """Gumbel-top-k stochastic beam search for ONE prompt (module docstring), driven like
    `BeamSearch` (`requests` / `advance`, `run_beam_searches`). It keeps num_beams + 1 nodes
    per step (the extra one gives the threshold kappa); `results()` returns the num_beams
    sampled items in order of G, `inclusion_probs()` their q estimates."""

    def __init__(
        self,
        prompt: Sequence[int],
        num_beams: int,
        max_tokens: int,
        eos_token_ids: Sequence[int],
        constraint: Constraint,
        seed: int | None = None,
    ) -> None:
        super().__init__(prompt, num_beams + 1, max_tokens, eos_token_ids, constraint)
        self.sample_size = num_beams
        self.k = num_beams + 1  # engine top-k for unconstrained steps
        self.rng = np.random.default_rng(seed)
        root = self.running[0].tokens
        self.phi: dict[tuple[int, ...], float] = {root: 0.0}
        self.g: dict[tuple[int, ...], float] = {root: float(self.rng.gumbel())}

    def advance(self, logprobs: Sequence[Mapping[int, float]]) -> None:
        """One step: expand every running node, keep the K + 1 largest G (finished included)."""
        last = self.steps + 1 >= self.max_tokens
        pool = [(self.g[h.tokens], True, h) for h in self.finished]
        for slot, (hyp, lp) in enumerate(zip(self.running, logprobs, strict=True)):
            allowed = self._allowed[slot]
            ids = sorted(lp) if allowed is None else allowed
            ids = [t for t in ids if np.isfinite(lp[t])]
            if not ids:
                continue  # a dead end (no finite continuation): nothing to sample below it
            vals = np.array([lp[t] for t in ids], dtype=np.float64)
            phi = self.phi[hyp.tokens] + vals - np.logaddexp.reduce(vals)
            g = conditional_gumbel(self.g[hyp.tokens], phi + self.rng.gumbel(size=len(ids)))
            for tok, val, ph, gc in zip(ids, vals, phi, g):
                score = float(np.float32(hyp.score) + np.float32(val))  # as BeamSearch
                child = self._extend(slot, tok, score)
                self.phi[child.tokens], self.g[child.tokens] = float(ph), float(gc)
                pool.append((float(gc), tok in self.eos or last, child))
        pool.sort(key=lambda x: -x[0])  # G is continuous: ties have probability 0
        keep = pool[: self.num_beams]
        self.finished = [h for _, done, h in keep if done]
        self.running = [h for _, done, h in keep if not done]
        self.steps += 1
        self.done = last or not self.running

    def results(self) -> list[tuple[list[int], float]]:
        """The sampled items (response ids, full-vocab score), largest G first, <= num_beams."""
        return [(list(h.tokens), h.score) for h in self._ranked()[: self.sample_size]]

    def inclusion_probs(self) -> list[float]:
        """q(y) = 1 - exp(-exp(phi(y) - kappa)) per returned item (same order as `results`),
        kappa = the (K + 1)-th largest G; 1.0 for all when fewer than K + 1 items exist."""
        ranked = self._ranked()
        if len(ranked) <= self.sample_size:
            return [1.0] * len(ranked)
        kappa = self.g[ranked[self.sample_size].tokens]
        return [
            float(-np.expm1(-np.exp(self.phi[h.tokens] - kappa)))
            for h in ranked[: self.sample_size]
        ]

    def _ranked(self) -> list:
        return sorted(self.finished, key=lambda h: -self.g[h.tokens])

"""ReRe (arXiv 2510.12211): RL for generative recommendation with constrained beam rollouts.

Everything ReRe needs, in one folder (docs/rere.md, docs/architecture.md "Methods"):

- `item_trie`: the catalogue as a token trie of every `response_prefix + '"Title"\\n' + EOS`.
- `beam_search`: the one constrained beam search (equal to transformers' beam search with a
  prefix constraint), driven by any engine's `next_token_logprobs`.
- `stochastic_beams`: Gumbel-top-k stochastic beam search under the same trie (Kool et al.
  2019), the option `strategy_kw.stochastic`, with inclusion-probability estimates.
- `strategy`: the rollout strategy `constrained_beam` (one beam job per group; the G beams are
  the group) and its request type.
- `beam_jobs`: the worker request kind `constrained_beam` that serves those jobs.
- `rewards`: the rule and ranking rewards (`rere_rule`, `rere_rank`, ...).
- `ranker`: the recommendation ranker of `rlkit eval --suite rec`.

The modules register themselves through the public registries a user plug-in uses;
`rlkit.plugins.load_builtins` imports every module of every method package.  Nothing outside
this folder names them.
"""

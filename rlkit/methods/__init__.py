"""Method packages: one folder per composite method, holding all of that method's code.

A composite method is more than one registered function: GRPO-VPS is an advantage estimator plus
the credit stage that probes the policy for its beliefs; AsyPPO an estimator, a critic split and
a mask stage; attention credit a trainer token hook with its signals and weights.  Each lives in
`rlkit/methods/<name>/` and registers itself through the same public registries a user's plug-in
uses (`register_advantage`, `register_credit_stage`, `register_token_hook`, ...); its modules are
found on disk by `rlkit.plugins.load_builtins` (every module of every package here), which the
registries call on their first miss.  The runtime and engines never name a method: they read
what the registered pieces declare (`credit_stages`, `needs_critic`, `critic_split`, ...).
Adding a method = one new folder here plus a recipe (docs/extending.md).
"""

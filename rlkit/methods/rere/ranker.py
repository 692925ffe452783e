"""ReRe's evaluation glue: rankings for `rlkit eval --suite rec` by constrained beam search.

Registered as the recommendation ranker `constrained_beam` (rlkit.eval.rec_eval): the trie is
built once from the catalogue and passed as the allowed sequences; one engine call per
decoding step for a batch of rows (rlkit.methods.rere.beam_search).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlkit.eval.generation import EvalSettings, encode_prompts, run_batched
from rlkit.eval.rec_eval import register_rec_ranker
from rlkit.eval.suites import rec_prompt_text
from rlkit.methods.rere.beam_search import beam_search
from rlkit.methods.rere.item_trie import ItemTrie


@register_rec_ranker("constrained_beam")
def beam_rankings(
    rows: Sequence[dict[str, Any]],
    catalogue: Sequence[str],
    engine: Any,
    tokenizer: Any,
    settings: EvalSettings,
) -> list[dict[str, Any]]:
    """Per row {"items": [title | None, ...], "scores": [...]} from constrained beam search."""
    trie = ItemTrie.from_tokenizer(tokenizer, catalogue, response_prefix=settings.response_prefix)
    prompts = encode_prompts(
        tokenizer, [rec_prompt_text(r["history"]) for r in rows], settings.chat_template
    )
    max_tokens = settings.tokens_for("rec")

    def call(chunk: Sequence[list[int]]) -> list:
        return beam_search(
            engine, list(chunk), settings.num_beams, max_tokens, allowed_sequences=trie
        )

    beams = run_batched(
        prompts, call, size=settings.batch_size, desc="rec beam search", progress=settings.progress
    )
    return [
        {
            "items": [trie.decode_item(b.token_ids) for b in row_beams],
            "scores": [b.score for b in row_beams],
        }
        for row_beams in beams
    ]

"""A value model: an LM backbone with a scalar head, V(s_t) for every token state.

Values are aligned with the trainer's targets (rlkit.engines.train_batch): position p holds the
value of the state that generates token p + 1, so V and log π share the response mask.
"""

from __future__ import annotations

from typing import Any


def build_value_model(model_path: str, dtype: Any = None, head_init_std: float = 0.0):
    """Backbone from `model_path` (the policy's initial weights, or a smaller model sharing its
    tokenizer: AsyPPO's mini-critics) + a scalar head.

    By default the head starts at 0 so that early advantages are the plain returns, not noise;
    `head_init_std > 0` draws its weight from N(0, std²) (bias 0) from torch's current RNG, so
    critics built one after the other start different (AsyPPO's σ is then > 0 from step 0)."""
    import torch
    from torch import nn
    from transformers import AutoModel

    class ValueModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = AutoModel.from_pretrained(model_path, dtype=dtype or torch.float32)
            self.value_head = nn.Linear(self.backbone.config.hidden_size, 1)
            if head_init_std > 0:
                nn.init.normal_(self.value_head.weight, std=head_init_std)
            else:
                nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            return self.value_head(hidden.last_hidden_state[:, :-1]).squeeze(-1).float()

    return ValueModel()

"""The ReRe item trie: allowed next tokens and decoding, on a toy and on a real HF tokenizer."""

from __future__ import annotations

import pytest

from rlkit.methods.rere.item_trie import ItemTrie, format_item

EOS = 99


def toy_trie() -> ItemTrie:
    # items already tokenised (EOS appended by the trie when missing)
    return ItemTrie({"ab": [1, 2], "ac": [1, 3, EOS], "d": [4], "dup-of-ab": [1, 2]}, EOS)


def test_allowed_sets_follow_the_prefixes():
    t = toy_trie()
    assert t.allowed([]) == [1, 4]
    assert t.allowed([1]) == [2, 3]
    assert t.allowed([1, 2]) == [EOS]
    assert t.allowed([4]) == [EOS]
    assert t.allowed([1, 2, EOS]) == []  # complete: only EOS (Protocol convention)
    assert t.allowed([7]) == []  # left the trie
    assert t.make_allowed_fn()([1]) == [2, 3]


def test_decode_and_duplicates():
    t = toy_trie()
    assert len(t) == 3  # "dup-of-ab" has the same tokens as "ab": first title kept
    assert t.titles == ["ab", "ac", "d"]
    assert t.decode_item([1, 2, EOS]) == "ab"
    assert t.decode_item([1, 3]) == "ac"
    assert t.decode_item([1]) is None
    assert t.decode_item([1, 2, 5]) is None


def test_from_tokenizer_formats_items_with_quotes_newline_and_eos():
    pytest.importorskip("transformers")
    from rlkit.data.tiny_model import build_char_tokenizer

    tok = build_char_tokenizer()
    titles = ["Toy Story", "Toy Soldiers", "Heat", "Heat"]
    trie = ItemTrie.from_tokenizer(tok, titles, response_prefix="> ")
    assert len(trie) == 3
    for title in set(titles):
        ids = tok.encode(format_item(title, "> "), add_special_tokens=False)
        assert tok.decode(ids) == f'> "{title}"\n'
        # walking the item's own tokens is always allowed, then EOS, then nothing
        for j in range(len(ids)):
            assert ids[j] in trie.allowed(ids[:j])
        assert trie.allowed(ids) == [tok.eos_token_id]
        assert trie.decode_item([*ids, tok.eos_token_id]) == title
    # after the shared prefix '> "Toy S' both 't' (Story) and 'o' (Soldiers) are allowed
    prefix = tok.encode('> "Toy S', add_special_tokens=False)
    assert sorted(trie.allowed(prefix)) == sorted(tok.convert_tokens_to_ids(["t", "o"]))

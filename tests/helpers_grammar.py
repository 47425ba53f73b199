"""Test helpers for grammars: token names to ids, and whether a grammar's masks admit a whole sequence."""

from __future__ import annotations

import numpy as np

from composer.tokenizer import Grammar, Tokenizer


def ids_of(tok: Tokenizer, tokens: list[str]) -> np.ndarray:
    """Token names -> ids."""
    return np.array([tok.vocab.id(t) for t in tokens], dtype=np.int64)


def accepts(g: Grammar, ids: np.ndarray | list[int]) -> bool:
    """Whether a whole sequence (BOS ... EOS) is one the masks allow, token by token."""
    ids = list(np.asarray(ids).tolist())
    if not ids or ids[0] != g.bos_id:
        return False
    st = g.start(1)
    for t in ids[1:]:
        if st.finished[0] or not st.mask()[0, t]:
            return False
        g.advance(st, np.array([t]))
    return bool(st.finished[0])

"""Shape and dtype mistakes are caught at the call with the argument named (METASLOT_TYPECHECK=1)."""

from __future__ import annotations

import pytest
import torch
from beartype.roar import BeartypeCallHintViolation
from jaxtyping import TypeCheckError

import metaslot
from metaslot.ops import masked_slot_attention, prune_duplicates, quantize

CHECK_ERRORS = (TypeCheckError, BeartypeCallHintViolation)


def test_the_import_hook_is_active_in_tests():
    assert metaslot.typechecking_enabled()


def test_keys_with_a_different_width_are_rejected_naming_keys():
    with pytest.raises(CHECK_ERRORS, match="keys"):
        masked_slot_attention(torch.randn(2, 3, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 4))


def test_keep_with_a_different_slot_count_is_rejected_naming_keep():
    with pytest.raises(CHECK_ERRORS, match="keep"):
        masked_slot_attention(
            torch.randn(2, 3, 4),
            torch.randn(2, 5, 4),
            torch.randn(2, 5, 4),
            torch.ones(2, 4, dtype=torch.bool),
        )


def test_float_codes_are_rejected_naming_codes():
    with pytest.raises(CHECK_ERRORS, match="codes"):
        prune_duplicates(torch.tensor([[0.0, 1.0]]))


def test_codebook_of_another_width_is_rejected_naming_codebook():
    with pytest.raises(CHECK_ERRORS, match="codebook"):
        quantize(torch.randn(1, 2, 3), torch.randn(4, 5))

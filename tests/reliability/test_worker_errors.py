"""Errors from loader workers print as their own one line (issue 28, item 5).

PyTorch re-raises a worker's exception in the main process with the worker's whole traceback as its
message, so a bad record in a run with loader workers (every paper preset uses 4) printed a 2 KB
flattened traceback. The command line now prints the worker's own message.
"""

from __future__ import annotations

import pytest
import torch.utils.data

from metaslot.cli._errors import user_errors
from metaslot.errors import CorruptDataError


class BadRecord(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        raise CorruptDataError(
            f"record {index} of /data/voc/train.lmdb is damaged; convert the dataset again"
        )


def test_a_worker_error_is_its_own_one_line(capsys) -> None:
    loader = torch.utils.data.DataLoader(BadRecord(), batch_size=2, num_workers=2)
    with pytest.raises(SystemExit) as stopped, user_errors("train"):
        next(iter(loader))
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("train: error: record ") and "is damaged; convert the dataset again" in error
    assert "Traceback" not in error and "File " not in error and len(error) < 200
    assert "worker" in error  # where it happened

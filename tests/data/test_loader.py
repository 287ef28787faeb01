"""The in-memory batch iterator: seeded shuffle, every sample once, drop-last, transforms."""

import torch

from babysit.data.loader import batches, num_batches


def _epoch(n=103, batch_size=10, **kw):
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    y = torch.arange(n)
    return list(batches(x, y, batch_size, **kw))


def test_every_sample_once_per_epoch_in_a_seeded_order():
    a = _epoch(generator=torch.Generator().manual_seed(1))
    b = _epoch(generator=torch.Generator().manual_seed(1))
    c = _epoch(generator=torch.Generator().manual_seed(2))
    order = torch.cat([yb for _, yb in a])
    assert sorted(order.tolist()) == list(range(103))
    assert torch.equal(order, torch.cat([yb for _, yb in b]))
    assert not torch.equal(order, torch.cat([yb for _, yb in c]))
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in a)  # inputs stay paired with their labels
    assert [len(yb) for _, yb in a] == [10] * 10 + [3] and len(a) == num_batches(103, 10)


def test_drop_last_and_unshuffled_order():
    dropped = _epoch(drop_last=True, generator=torch.Generator().manual_seed(0))
    assert [len(yb) for _, yb in dropped] == [10] * 10 and len(dropped) == num_batches(103, 10, drop_last=True)
    plain = _epoch(shuffle=False)
    assert torch.equal(torch.cat([yb for _, yb in plain]), torch.arange(103))


def test_transform_is_applied_to_inputs_only():
    out = _epoch(shuffle=False, transform=lambda xb: -xb)
    assert all(torch.equal(-xb[:, 0].long(), yb) for xb, yb in out)

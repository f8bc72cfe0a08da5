import torch

from featx.pooling import pool

# Two rows, four positions, dim 2. Row 0 has 3 real tokens, row 1 has 2; pad states are
# huge so any leak into a pooling is obvious.
HIDDEN = torch.tensor([
    [[1.0, 2.0], [3.0, -4.0], [5.0, 0.0], [1e6, 1e6]],
    [[-1.0, 1.0], [2.0, 7.0], [1e6, 1e6], [1e6, -1e6]],
])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_poolings_match_hand_computation_and_ignore_pads():
    out = pool(HIDDEN, MASK, ("mean", "cls", "max", "last"))
    torch.testing.assert_close(out["mean"], torch.tensor([[3.0, -2 / 3], [0.5, 4.0]]))
    torch.testing.assert_close(out["cls"], torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    torch.testing.assert_close(out["max"], torch.tensor([[5.0, 2.0], [2.0, 7.0]]))
    torch.testing.assert_close(out["last"], torch.tensor([[5.0, 0.0], [2.0, 7.0]]))


def test_left_padding_gives_the_same_vectors():
    left_hidden = torch.stack([HIDDEN[0].roll(1, 0), HIDDEN[1].roll(2, 0)])
    left_mask = torch.stack([MASK[0].roll(1, 0), MASK[1].roll(2, 0)])
    right = pool(HIDDEN, MASK, ("mean", "cls", "max", "last"))
    left = pool(left_hidden, left_mask, ("mean", "cls", "max", "last"))
    for name in right:
        torch.testing.assert_close(left[name], right[name])


def test_normalize_gives_unit_vectors_in_float32():
    out = pool(HIDDEN.to(torch.bfloat16), MASK, ("mean", "max"), normalize=True)
    for values in out.values():
        assert values.dtype == torch.float32
        torch.testing.assert_close(values.norm(dim=-1), torch.ones(2))

"""Vectorised redundant-mask suppression matches a plain double loop; segment painting rules."""

import pytest
import torch

from langfield.features.masks import paint_segments, suppress_redundant_masks


def loop_reference(masks, scores, iou_thresh, min_score, inside, outside):
    """The rule written the obvious way: per pair, Python loops, boolean ops."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    for rank_j, j in enumerate(order):
        a_j = int(masks[j].sum())
        ok = a_j > 0 and float(scores[j]) > min_score
        for i in order[:rank_j]:
            a_i = int(masks[i].sum())
            inter = int((masks[i] & masks[j]).sum())
            union = a_i + a_j - inter
            iou = inter / max(union, 1)
            f_i = inter / max(a_i, 1)  # part of i covered by j
            f_j = inter / max(a_j, 1)
            nested = (f_i >= inside and f_j < outside) or (f_i < outside and f_j >= inside)
            if iou > iou_thresh or nested:
                ok = False
        if ok:
            keep.append(j)
    return keep


def random_masks(gen, m, h, w):
    """Rectangles and noisy blobs, with some deliberate duplicates and nested pairs."""
    masks = torch.zeros(m, h, w, dtype=torch.bool)
    for k in range(m):
        kind = int(torch.randint(0, 4, (1,), generator=gen))
        if kind == 3 and k > 0:  # near-duplicate or nested copy of an earlier mask
            src = masks[int(torch.randint(0, k, (1,), generator=gen))].clone()
            if bool(torch.rand(1, generator=gen) < 0.5):
                src &= torch.rand(h, w, generator=gen) < 0.95
            else:
                ys, xs = torch.nonzero(src, as_tuple=True)
                if len(ys):
                    src = torch.zeros_like(src)
                    src[ys.min() : ys.min() + 3, xs.min() : xs.min() + 3] = True
            masks[k] = src
        elif kind == 2:
            masks[k] = torch.rand(h, w, generator=gen) < 0.3
        else:
            y0, x0 = torch.randint(0, h - 2, (1,), generator=gen), torch.randint(0, w - 2, (1,), generator=gen)
            y1 = y0 + torch.randint(1, h - int(y0), (1,), generator=gen)
            x1 = x0 + torch.randint(1, w - int(x0), (1,), generator=gen)
            masks[k, y0:y1, x0:x1] = True
    return masks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("params", [(0.7, 0.1, 0.85, 0.5), (0.5, 0.3, 0.7, 0.4)])
def test_vectorised_suppression_matches_loop(seed, params):
    gen = torch.Generator().manual_seed(seed)
    masks = random_masks(gen, 24, 20, 26)
    masks[5] = False  # an empty mask must always go
    scores = torch.rand(24, generator=gen)
    scores[3] = scores[7]  # a tie: both implementations rank by (score, index)
    got = suppress_redundant_masks(masks, scores, *params).tolist()
    want = loop_reference(masks, scores, *params)
    assert got == want
    assert 5 not in got
    assert 0 < len(got) < 24  # the data exercises both outcomes


def test_suppression_drops_duplicate_and_nested_but_keeps_disjoint():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[0, :5, :5] = True  # best
    masks[1, :5, :5] = True  # duplicate of 0 -> dropped
    masks[1, 0, 5] = True
    masks[2, 6:, 6:] = True  # disjoint -> kept
    masks[3, 0:1, 0:2] = True  # tiny, nested inside 0 -> dropped
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert suppress_redundant_masks(masks, scores).tolist() == [0, 2]


def test_paint_segments_smaller_mask_wins_and_hidden_masks_vanish():
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0] = True  # whole image
    masks[1, :2, :2] = True  # small, on top
    masks[2, :2, :2] = True  # same size as 1, later -> hidden behind it (stable order)
    seg, used = paint_segments(masks)
    assert used.tolist() == [0, 1]
    assert seg.dtype == torch.int32
    assert (seg[:2, :2] == 1).all()  # renumbered id of mask 1
    assert (seg[2:, :] == 0).all() and (seg[:2, 2:] == 0).all()
    empty, used_none = paint_segments(torch.zeros(0, 4, 5, dtype=torch.bool))
    assert empty.shape == (4, 5) and (empty == -1).all() and used_none.numel() == 0

"""Packing token ids into BERT inputs, as keras-hub's `MultiSegmentPacker` does."""

import numpy as np


class BertPacker:
    """Packs one or two token-id lists as `[CLS] a [SEP] (b [SEP])`, like keras-hub.

    Truncation is keras-hub's `round_robin`: one token per segment in turn
    until the sequence is full.

    Example:

    >>> BertPacker(cls_id=101, sep_id=102, pad_id=0, sequence_length=6).pack([[7, 8, 9, 10]])
    (array([101,   7,   8,   9,  10, 102], dtype=int32), array([0, 0, 0, 0, 0, 0], dtype=int32), array([1, 1, 1, 1, 1, 1], dtype=int32))
    """

    def __init__(self, cls_id, sep_id, pad_id, sequence_length):
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.sequence_length = sequence_length

    def pack(self, segments):
        budget = self.sequence_length - 1 - len(segments)
        if budget < 0:
            raise ValueError(f"sequence_length {self.sequence_length} cannot hold {len(segments)} segments.")
        keep = [0] * len(segments)
        while budget > 0 and any(keep[i] < len(s) for i, s in enumerate(segments)):
            for i, segment in enumerate(segments):
                if budget > 0 and keep[i] < len(segment):
                    keep[i] += 1
                    budget -= 1
        ids, types = [self.cls_id], [0]
        for i, segment in enumerate(segments):
            part = list(segment[: keep[i]]) + [self.sep_id]
            ids += part
            types += [i] * len(part)
        mask = [1] * len(ids)
        pad = self.sequence_length - len(ids)
        ids += [self.pad_id] * pad
        types += [0] * pad
        mask += [0] * pad
        return (np.asarray(ids, np.int32), np.asarray(types, np.int32), np.asarray(mask, np.int32))

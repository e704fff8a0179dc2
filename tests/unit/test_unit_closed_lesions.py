"""A dark piece of the sacrum that opens into the soft tissue is not a lytic lesion (parts.closed_lesions)."""

from __future__ import annotations

import numpy as np

from segmentation.parts import closed_lesions

SPACING = np.array([1.0, 1.0, 1.0])


def block() -> tuple[np.ndarray, np.ndarray]:
    """(CT, bone): soft tissue (40 HU) around a block of bone (250 HU), 40 x 40 x 40 mm in 60 mm."""
    ct = np.full((60, 60, 60), 40.0)
    bone = np.zeros(ct.shape, bool)
    bone[10:50, 10:50, 10:50] = True
    ct[bone] = 250.0
    return ct, bone


def test_a_lesion_walled_in_by_bone_stays_and_one_that_opens_outside_goes():
    ct, bone = block()
    walled = np.zeros(ct.shape, bool)
    lytic = np.zeros(ct.shape, bool)
    lytic[20:26, 20:26, 20:26] = True                  # 0.2 ml, 6 mm inside the bone
    lytic[34:40, 34:40, 42:48] = True                  # the same, with a 2 mm channel to the soft tissue
    ct[lytic] = 40.0
    channel = (slice(36, 38), slice(36, 38), slice(48, 50))
    ct[channel] = 40.0
    kept, dropped_ml = closed_lesions(lytic, ct, bone, walled, SPACING, dark_hu=125.0)
    assert kept[22, 22, 22] and not kept[36, 36, 44]
    assert dropped_ml == 0.216
    # the same channel, where it is a lumen or SI joint found, does not open the piece
    walled[channel] = True
    kept, dropped_ml = closed_lesions(lytic, ct, bone, walled, SPACING, dark_hu=125.0)
    assert kept[36, 36, 44] and dropped_ml == 0.0

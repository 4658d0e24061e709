"""Lead geometry: the cardiac dipole projected onto the leads, and electrodes combined into leads.

The Dower transform and its inverse are cited in the package docstring; III, aVR,
aVL and aVF are computed from I and II as an electrocardiograph does.
"""

from __future__ import annotations

import numpy as np

LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

# Dower transform (Dower et al. 1980): Frank (X, Y, Z) -> leads I, II, V1..V6.
# Frank axes: X to the patient's left, Y towards the feet, Z towards the back.
DOWER = np.array(
    [
        # X       Y       Z
        [0.632, -0.235, 0.059],  # I
        [0.235, 1.066, -0.132],  # II
        [-0.515, 0.157, -0.917],  # V1
        [0.044, 0.164, -1.387],  # V2
        [0.882, 0.098, -1.277],  # V3
        [1.213, 0.127, -0.601],  # V4
        [1.125, 0.127, -0.086],  # V5
        [0.831, 0.076, 0.230],  # V6
    ]
)

# Inverse Dower matrix (Edenbrandt & Pahlm 1988): leads V1..V6, I, II -> X, Y, Z.
# Not needed for synthesis; published for reference (INVERSE_DOWER @ DOWER[[2..7,0,1]] ~ I).
INVERSE_DOWER = np.array(
    [
        # V1      V2      V3     V4     V5     V6     I       II
        [-0.172, -0.074, 0.122, 0.231, 0.239, 0.194, 0.156, -0.010],  # X
        [0.057, -0.019, -0.106, -0.022, 0.041, 0.048, -0.227, 0.887],  # Y
        [-0.229, -0.310, -0.246, -0.063, 0.055, 0.108, 0.022, 0.102],  # Z
    ]
)

# 8 recorded channels (I, II, V1..V6) -> 12 leads, as an electrocardiograph derives them.
_CH8_TO_12 = np.zeros((12, 8))
_CH8_TO_12[0, 0] = 1.0  # I
_CH8_TO_12[1, 1] = 1.0  # II
_CH8_TO_12[2] = [-1, 1, 0, 0, 0, 0, 0, 0]  # III = II - I
_CH8_TO_12[3] = [-0.5, -0.5, 0, 0, 0, 0, 0, 0]  # aVR = -(I + II)/2
_CH8_TO_12[4] = [1, -0.5, 0, 0, 0, 0, 0, 0]  # aVL = I - II/2
_CH8_TO_12[5] = [-0.5, 1, 0, 0, 0, 0, 0, 0]  # aVF = II - I/2
_CH8_TO_12[6:, 2:] = np.eye(6)  # V1..V6
_DOWER12 = _CH8_TO_12 @ DOWER  # (12, 3): dipole -> 12 leads

# Electrodes RA, LA, LL, V1..V6 -> the 8 recorded channels (used for noise).
_ELEC_TO_CH8 = np.zeros((8, 9))
_ELEC_TO_CH8[0, [0, 1]] = [-1, 1]  # I = LA - RA
_ELEC_TO_CH8[1, [0, 2]] = [-1, 1]  # II = LL - RA
for _k in range(6):  # Vk = Ek - Wilson central terminal
    _ELEC_TO_CH8[2 + _k, 3 + _k] = 1.0
    _ELEC_TO_CH8[2 + _k, :3] = -1.0 / 3.0


def _max_lead_gain(vec: np.ndarray) -> float:
    """Largest absolute 12-lead projection of a dipole vector (for amplitude targets)."""
    return float(np.max(np.abs(_DOWER12 @ vec)))


def _signed_extreme(vec: np.ndarray) -> float:
    proj = _DOWER12 @ vec
    return float(proj[np.argmax(np.abs(proj))])


def _frontal_axis_deg(vec: np.ndarray) -> float:
    lead = _DOWER12 @ vec
    return float(np.degrees(np.arctan2(lead[5], lead[0])))  # atan2(aVF, I)


def _derive_12(ch8: np.ndarray) -> np.ndarray:
    """Leads I, II, III, aVR, aVL, aVF, V1..V6 from the recorded I, II, V1..V6."""
    i, ii = ch8[:, 0], ch8[:, 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    return np.concatenate([limb, ch8[:, 2:]], axis=1)

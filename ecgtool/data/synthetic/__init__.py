"""Synthetic 12-lead ECG with CPSC2018-style pathology labels.

The generator lets a whole pipeline (prepare -> train -> evaluate) run offline.
It writes a PhysioNet/CinC-2020-style WFDB directory that a generic WFDB reader
loads like a real dataset (``SYN00001.hea/.dat``, ``RECORDS``, ``labels.csv``,
``classes.csv``, ``dataset.json``).

Physiological model
-------------------
* **Beat morphology** - a sum of Gaussian waves, as in the dynamical ECG model of
  McSharry, Clifford, Tarassenko & Smith, "A dynamical model for generating
  synthetic electrocardiogram signals", IEEE TBME 50(3):289-294, 2003 (ECGSYN).
  Instead of integrating the ODE on a limit cycle we place the Gaussians directly
  in time (equivalent output, fully vectorised).
* **Multichannel extension** - every wave carries a 3-D amplitude vector in Frank
  (X, Y, Z) coordinates, i.e. the beat is a moving cardiac dipole, following
  Sameni, Clifford, Jutten & Shamsollahi, "Multichannel ECG and noise modeling:
  application to maternal and fetal ECG signals", EURASIP J. Adv. Signal Process.
  2007:043407.  Heart orientation (electrical axis, rotation about the long axis)
  is a rotation of all dipole vectors.
* **Lead projection** - the vectorcardiogram is projected onto the eight
  independent leads (I, II, V1-V6) with the Dower transform (Dower, Machado &
  Osborne, "On deriving the electrocardiogram from vectorcardiographic leads",
  Clin. Cardiol. 3:87-95, 1980).  Its (pseudo-)inverse, the "inverse Dower"
  matrix of Edenbrandt & Pahlm ("Vectorcardiogram synthesized from a 12-lead
  ECG: superiority of the inverse Dower matrix", J. Electrocardiol. 21:361-367,
  1988), is published here too (``INVERSE_DOWER``).  III, aVR, aVL and aVF are
  *computed* from I and II exactly as an electrocardiograph does, so the
  Einthoven/Goldberger identities hold exactly, with and without noise.
* **Intervals** - PR (P onset -> QRS onset) and QRS duration are sampled and the
  waves are placed so that the Gaussians' +-2.5 sigma extents match them exactly
  (``info`` reports the ground truth).  Repolarisation (ST segment, T, U) scales
  with the preceding RR interval through Bazett's QTc.
* **Rhythm** - sinus RR series with LF (~0.1 Hz, Mayer waves) and HF
  (respiratory sinus arrhythmia) modulation plus jitter; the respiration
  frequency is shared with baseline wander and QRS amplitude modulation.
* **Classes** follow the CPSC2018 challenge: Liu et al., "An open access database
  for evaluating the algorithms of electrocardiogram rhythm and morphology
  abnormality detection", J. Med. Imaging Health Inform. 8(7):1368-1373, 2018.
  SNOMED-CT codes are those of the PhysioNet/CinC Challenge 2020.
* **Noise** - baseline wander (respiration + slow drift), powerline interference
  and bursty EMG are generated per *electrode* (RA, LA, LL, V1-V6) and then
  combined into leads like a real recording, plus per-channel amplifier noise on
  the eight recorded channels; the total is scaled to a per-record SNR.
  About 20 % of records also carry electrode-motion artefacts (a half-cell
  potential step with slow recovery, which band-pass filtering turns into a
  sharp, beat-like transient), and ~6 % are very noisy (SNR 10-20 dB below
  the median).

Difficulty (why a model has to look closely)
--------------------------------------------
Labels follow the ground-truth measurements exactly (no label noise), but
effect sizes are spread down to the clinical cut-offs and normals carry the
usual mimics, so a classifier has to measure rather than spot a caricature:

* **I-AVB** - PR of blocked patients is 201-300 ms with its mode at the 200 ms
  cut-off; normal PRs (120-200 ms) are skewed towards 200 ms.
* **LBBB/RBBB** - QRS 120-170 / 120-160 ms with the mode near 120 ms.
  Confounders: incomplete RBBB (15 % of patients; the same R' pattern and
  secondary T change, weaker, QRS 98-119.5 ms skewed towards 120) and incomplete LBBB (LBBB-like activation with QRS < 120 ms,
  mostly > 50 years).
* **PAC** - usually a single beat; in 30 % the ectopic focus is close to the
  sinus node (P vector rotated by only 12-40 degrees), coupling 62-80 % of RR,
  and young patients may have marked respiratory sinus arrhythmia.
* **PVC** - usually a single beat, QRS 120-185 ms, amplitude 0.55-1.1 of the
  patient's ectopic focus.
* **STD/STE** - depression 0.04-0.25 mV and elevation 0.10-0.35 mV, both
  skewed to the cut-off.  Confounders: benign early repolarisation (J elevation
  up to 0.09 mV, anterior or inferolateral, commoner in young men) and
  non-specific sub-threshold ST depression (< 0.035 mV) in 20 % of non-STD records.
* **AF** - rate-controlled AF down to an RR coefficient of variation of 0.08
  and fine f-waves (0.01-0.12 mV); sinus records may have small P waves.
* **Global** - left (10 %) and right (6 %) axis deviation, low voltage (8 %),
  wide T-amplitude range.

Simplifications (deliberate)
----------------------------
* Fixed Gaussian wave shapes; no ODE, no beat-to-beat morphological chaos beyond
  respiratory amplitude modulation.  Dipole model = single fixed-location dipole
  and a linear, homogeneous torso (the Dower matrix); no electrode-placement
  physics beyond small per-record precordial gain changes.
* Pathologies are phenomenological: BBB/PVC patterns are hand-made dipole
  sequences, not propagation simulations; ST shifts are an injury-current vector
  applied as a plateau between J point and T peak.
* AF f-waves are a frequency/amplitude-modulated quasi-periodic signal on one
  fixed atrial dipole direction; AF RR intervals are i.i.d. log-normal.
* The sinus P wave hidden inside a PVC is omitted; PACs never conduct
  aberrantly and are never blocked.  Early repolarisation has no J notch.
* Label combinations are sampled from a hand-set table that approximates the
  CPSC2018 marginals (LBBB and STE raised to ~6 % to be learnable).

Determinism: the record plan comes from ``default_rng([seed, ...])`` streams and
each record's parameters and signal come only from ``(seed, record index)`` (plus
a per-patient morphology seed stored in its spec), so records can be generated
in any order or in parallel with identical results.

Modules: ``labels`` (classes and label combinations), ``leads`` (Dower projection,
derived leads), ``plan`` (configuration, per-record specs), ``morphology`` (beat
templates), ``rhythm`` (beat times), ``noise``, ``render`` (one record) and
``writer`` (the WFDB dataset).
"""

from ecgtool.data.synthetic.labels import CLASS_DESCRIPTIONS, CLASSES, SNOMED
from ecgtool.data.synthetic.leads import DOWER, INVERSE_DOWER, LEADS_12
from ecgtool.data.synthetic.plan import RecordSpec, SyntheticConfig, sample_patients_and_labels
from ecgtool.data.synthetic.render import generate_record
# the private writers too: the tests compare their bytes
from ecgtool.data.synthetic.writer import _write_record, _write_record_wfdb, write_dataset  # noqa: F401

__all__ = [
    "CLASSES",
    "CLASS_DESCRIPTIONS",
    "SNOMED",
    "LEADS_12",
    "DOWER",
    "INVERSE_DOWER",
    "SyntheticConfig",
    "RecordSpec",
    "sample_patients_and_labels",
    "generate_record",
    "write_dataset",
]

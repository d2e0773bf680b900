# The shipped entropy model (docs/DEVICE.md "The shipped model"): written by
# `becomingone model train --from-dataset ... --write-default`, do not edit by hand.
# threat = sigmoid(bias + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms)
#   level, kurt, crest: log2 of the RMS (g), kurtosis and crest factor of the first
#   difference of the samples over the ~1 s window; anoms: a count (shared/vibration.py)
# trained 2026-12-07T04:30:49Z by `becomingone model train --from-dataset cwru --channel DE --features level,kurt`
# on the firmware's own TELEMETRY features (micropython runtime): 31 recordings (1 healthy) of cwru
# plus 30 synthetic healthy machines (host/model/from_dataset.py FLEET); 21796 rows, 10884 faulty
# logistic regression, L2 0.001 on standardised weights (chosen by held-out log-loss), classes balanced
# AUC 0.9874 on the training rows, 0.9789 leave-one-recording-out (recordings alone: 1.0, 1.0 held out)
# leave-one-load-out AUC (fitted without one load's recordings, its faults scored against the healthy rows): 0 hp 1.0, 1 hp 1.0
MODEL = (3.1913, 3.1623, 2.8262, 0.0000, 0.00000)   # bias, w_level, w_kurt, w_crest, w_anoms

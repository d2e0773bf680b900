# The shipped entropy model (docs/DEVICE.md "The shipped model"): written by
# `becomingone model train ... --write-default`, do not edit by hand.
# threat = sigmoid(bias + w_level*level + w_kurt*kurt + w_crest*crest + w_anoms*anoms)
MODEL = (14.05, 5.83, 1.78, 0.0, 0.0)   # bias, w_level, w_kurt, w_crest, w_anoms

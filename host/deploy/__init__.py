"""Putting the firmware on a board (`becomingone flash`): where its sources are (sources.py), the
plan and build (plan.py), provisioning (provision.py), the copy over mpremote
(mpremote_copy.py), the Pi Zero bundle (pizero.py)."""

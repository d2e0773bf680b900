"""Packages of the wheel (the rest of the metadata is in pyproject.toml): the coordinator's folder
is host/ (the repository layout is fixed) and its import name is `becomingone`; device/, shared/
and boards/ keep their own names, as they sit on a board. tools/ and tests/ are not installed."""
from setuptools import find_packages, setup

HOST = find_packages(include=["host", "host.*"])
setup(package_dir={"becomingone": "host"},
      packages=["becomingone" + p[len("host"):] for p in HOST]
      + find_packages(include=["shared", "shared.*", "device", "device.*", "boards", "boards.*"]))

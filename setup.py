"""Packaging: every package of the two top-level ones found, plus resources/ as echoquality_resources."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["echoquality_core", "echoquality_core.*", "echoquality_gui",
                                      "echoquality_gui.*"]) + ["echoquality_resources"])

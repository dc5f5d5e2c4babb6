# Ryu 4.34 needs setuptools<58, which cannot install a project from setup.cfg alone.
from setuptools import setup

setup()

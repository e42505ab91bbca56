"""Run a script with gradserve's random generator seeded, so its output is reproducible: seeded.py SCRIPT."""

import runpy
import sys

import gradserve

gradserve.manual_seed(0)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")

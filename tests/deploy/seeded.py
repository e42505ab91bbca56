"""Run a script or module with gradserve's random generator seeded, so its output is reproducible:
`seeded.py SCRIPT` or `seeded.py -m MODULE`."""

import runpy
import sys

import gradserve

gradserve.manual_seed(0)
if sys.argv[1] == "-m":
    sys.argv = sys.argv[2:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")

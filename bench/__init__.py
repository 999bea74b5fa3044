"""nvfuse's benchmark suite: `python -m bench` (see bench/__main__.py).

bench/cases.py is the case table, bench/timing.py the timing method (CUDA events, median, input
rotation past L2, copy bandwidth), bench/report.py the JSON/Markdown/PNG writers.  Results land
in bench/results/<date>-<gpu>.{json,md,png}.
"""

"""Everything that measures: verification matrix, benchmarks, real-data workload and report.

Run it as ``python -m bench <command>``; ``python -m bench --help`` lists the commands.
"""
